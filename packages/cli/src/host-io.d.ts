/**
 * The host Vfs the copy commands (convert, commit) run their jobs on: the
 * host file system with OS locks (`hostVfs()`), where large reads and writes
 * go to libuv's thread pool on the storage's own descriptor, so that the job's
 * pipeline really overlaps reading one chunk with writing another (the default
 * synchronous I/O runs every call on the main thread, one after the other).
 * Small requests (driver metadata) stay synchronous: a thread-pool round trip
 * costs tens of µs. Everything else (flush, size, locks, close) is the inner
 * storage's.
 */
import type { FileAttributes, Storage, Vfs, VfsOpenOptions } from '@blk/core';
/** A Vfs whose storages send large reads and writes to the thread pool (when they can: NodeFileStorage). */
export declare class ThreadedIoVfs implements Vfs {
    private readonly inner;
    private readonly min;
    /** `min`: requests at least this long go to the thread pool (0: every read and write). */
    constructor(inner: Vfs, min?: number);
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
    stat(path: string): Promise<import("@blk/core").FileStat>;
    lstat(path: string): Promise<import("@blk/core").FileStat>;
    realpath(path: string): Promise<string>;
    resolve(base: string, path: string): string;
    dirname(path: string): string;
    cwd(): string;
    exists(path: string): Promise<boolean>;
    remove(path: string): Promise<void>;
    rename(from: string, to: string): Promise<void>;
    setAttributes(path: string, attributes: FileAttributes): Promise<void>;
}
/** hostVfs() with threaded large I/O: what blk convert and blk commit run on. */
export declare function hostJobVfs(): Vfs;
/**
 * hostVfs() with every read and write on the thread pool, small ones too:
 * what blk bench runs on, so that its requests are in flight together as
 * qemu-img's aio=threads requests are (not run one by one on the main thread).
 */
export declare function hostPoolVfs(): Vfs;
