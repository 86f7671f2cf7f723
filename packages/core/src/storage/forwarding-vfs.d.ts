import type { FileAttributes, FileStat, Storage, Vfs, VfsOpenOptions } from './storage.js';
/**
 * A Vfs that passes every call to another. Wrappers (locking, fault
 * injection, crash simulation, tracing) extend it and override only what
 * they change, usually `open`.
 */
export declare class ForwardingVfs implements Vfs {
    readonly inner: Vfs;
    constructor(inner: Vfs);
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
    stat(path: string): Promise<FileStat>;
    lstat(path: string): Promise<FileStat>;
    realpath(path: string): Promise<string>;
    resolve(base: string, path: string): string;
    dirname(path: string): string;
    cwd(): string;
    exists(path: string): Promise<boolean>;
    remove(path: string): Promise<void>;
    rename(from: string, to: string): Promise<void>;
    /** Present when the inner Vfs has it (see Vfs.setAttributes). */
    get setAttributes(): ((path: string, attributes: FileAttributes) => Promise<void>) | undefined;
}
