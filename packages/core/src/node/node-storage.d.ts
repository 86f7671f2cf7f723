import * as fs from 'node:fs';
import { BlockError } from '../errors.js';
import { type FileType, type Storage, type StorageExtent } from '../storage/storage.js';
/**
 * How a NodeFileStorage talks to the kernel.
 * - `sync`: positional reads and writes done synchronously behind the
 *   Promise API (`syscalls` when given, else `fs.readSync`/`writeSync`). On
 *   a file in the page cache a 4 KiB read costs about 1.5 µs this way,
 *   against 30-50 µs for an awaited read on libuv's thread pool (a round
 *   trip through it). The price: while the call runs, the event loop waits,
 *   which is what you want for local disks and not for slow network file
 *   systems.
 * - `async`: every call goes to libuv's thread pool (`fs.read` and friends
 *   with callbacks on the descriptor); the event loop stays free during
 *   every call, and many requests in flight overlap.
 */
export type NodeIoMode = 'sync' | 'async';
/**
 * Positional system calls that can stand in for `fs.readSync`/`fs.writeSync`
 * in `io: 'sync'` mode. Node's calls validate their arguments in JavaScript
 * and wrap each call in a request object: about 0.25 µs of a 1.5 µs 4 KiB
 * read from the page cache (bench/experiments/pread-cost.mjs). A native binding (`nativeSyscalls()` of
 * @blk/native, which @blk/images' host file system uses) skips that.
 * Arguments arrive validated (an open descriptor, an integer position with
 * position + length below 2^53).
 */
export interface PositionalSyscalls {
    /** pread(2) of `into.length` bytes: bytes read (0 at end of file), or -errno. */
    pread(fd: number, into: Uint8Array, position: number): number;
    /** pwrite(2) of all of `data`: bytes written, or -errno. */
    pwrite(fd: number, data: Uint8Array, position: number): number;
    /**
     * lseek(2) with SEEK_DATA: the first data byte at or after `position`, or
     * -errno (-ENXIO when only a hole follows up to the end of the file).
     * With `seekHole`, lets the storage report holes (`Storage.extentAt`).
     */
    seekData?(fd: number, position: number): number;
    /** lseek(2) with SEEK_HOLE: the first hole at or after `position` (the end of the file counts as one), or -errno. */
    seekHole?(fd: number, position: number): number;
    /**
     * posix_fallocate(3) of [offset, offset+length): 0, or -errno (-EOPNOTSUPP
     * where the file system cannot). Lets the storage offer `Storage.allocate`.
     */
    allocate?(fd: number, offset: number, length: number): number;
    /**
     * fallocate(2) keeping the size: punch true deallocates [position,
     * position + length) (PUNCH_HOLE), false zeroes it (ZERO_RANGE); 0 or
     * -errno. Lets the storage offer `Storage.zeroRange`.
     */
    zeroRange?(fd: number, position: number, length: number, punch: boolean): number;
    /**
     * lseek(2) with SEEK_END, offset 0: the size of a block device (fstat says
     * 0 for them), or -errno. Without it, storages ask /sys/dev/block (Linux).
     */
    seekEnd?(fd: number): number;
}
export interface NodeFileStorageOptions {
    readOnly?: boolean;
    /** Accept a block device (default: regular files only; see VfsOpenOptions.blockDevices). */
    blockDevices?: boolean;
    io?: NodeIoMode;
    /** `io: 'sync'` only: system calls to use instead of Node's fs ones. */
    syscalls?: PositionalSyscalls;
}
/**
 * A block device's size from /sys/dev/block/MAJOR:MINOR/size (Linux; in
 * 512-byte sectors whatever the device's sector size), without opening it.
 */
export declare function sysfsDeviceSize(rdev: bigint): number;
/** A node's type from fs.Stats. */
export declare function typeOfStats(st: fs.Stats | fs.BigIntStats): FileType;
/** The `special-file` error for a path that is no image file. */
export declare function specialFile(path: string, type: FileType | undefined, devicesAllowed: boolean, cause?: unknown): BlockError;
/** A local file through Node's fs module. */
export declare class NodeFileStorage implements Storage {
    readonly path: string;
    readonly readOnly: boolean;
    /** The file descriptor (for OS advisory locks taken by @blk/native). */
    readonly fd: number;
    /** io: 'async': every call goes to libuv's thread pool (fs callbacks on the descriptor). */
    private readonly async;
    /**
     * Thread-pool calls on the descriptor not finished yet (every call in
     * io: 'async', readOnPool/writeOnPool in either mode). close() waits for
     * them before closing it: a call still running on a closed descriptor
     * number could read or write whatever file is opened next under that
     * number. (FileHandle, which this mode used before, did the same.)
     */
    private inFlight;
    private onIdle;
    private closed;
    readonly io: NodeIoMode;
    /**
     * Synchronous read (see `Storage.readSync`): present in `io: 'sync'` mode
     * only, undefined in `io: 'async'` mode so that nothing blocks the event loop there.
     */
    readonly readSync: ((offset: number, into: Uint8Array) => number) | undefined;
    /**
     * Where data and holes are (see `Storage.extentAt`): present when the
     * `syscalls` given can seek for data and holes, else undefined.
     */
    readonly extentAt: ((offset: number, length: number) => Promise<StorageExtent | undefined>) | undefined;
    /** Zeroing without a buffer (see `Storage.zeroRange`): present when the `syscalls` given can zero ranges. */
    readonly zeroRange: ((offset: number, length: number, punch: boolean) => Promise<boolean>) | undefined;
    /** Space reservation (see `Storage.allocate`): present when the `syscalls` given can fallocate. */
    readonly allocate: ((offset: number, length: number) => Promise<void>) | undefined;
    /** The system calls in use instead of Node's fs ones (`io: 'sync'` with `syscalls` given), else undefined. */
    readonly syscalls: PositionalSyscalls | undefined;
    /** The storage is a block device: its size comes from the device, and it cannot grow or shrink. */
    readonly blockDevice: boolean;
    /** A block device's rdev (for the /sys/dev/block fallback of its size). */
    private readonly rdev;
    private constructor();
    /**
     * Opens a regular file (or, with `blockDevices`, a block device); anything
     * else is refused with `special-file`, and the open never blocks. `flags`:
     * 'r', 'r+', 'wx+' (create, fail if it exists), 'rc+' (create if missing),
     * 'w+' (create or truncate: the truncation happens once the file is known
     * to be a regular file; a block device is left as it is).
     */
    static open(path: string, options?: NodeFileStorageOptions & {
        flags?: string;
    }): Promise<NodeFileStorage>;
    read(offset: number, into: Uint8Array): Promise<number>;
    /**
     * A read on libuv's thread pool whatever the io mode: what io: 'async'
     * does for every read, and what a copy job asks for its large reads, so
     * that reading one piece overlaps writing another. close() waits for it.
     */
    readOnPool(offset: number, into: Uint8Array): Promise<number>;
    /** `readSync` of `io: 'sync'` mode (called as a method of this storage). */
    private readNow;
    /** One positional read in `io: 'sync'` mode (the caller loops over short counts). */
    private preadNow;
    private pwriteNow;
    /** `extentAt` over lseek SEEK_DATA/SEEK_HOLE (as QEMU's file-posix find_allocation). */
    private findExtent;
    /** `allocate` through the syscalls' posix_fallocate. */
    private fallocate;
    /** `zeroRange` over fallocate(2); false where the file system cannot (the caller writes zeros). */
    private zeroRangeNow;
    /** A seek's position; 'none' for ENXIO; undefined where the file system cannot tell. */
    private seekResult;
    write(offset: number, data: Uint8Array): Promise<void>;
    /** `readOnPool`'s counterpart for writes. */
    writeOnPool(offset: number, data: Uint8Array): Promise<void>;
    private checkWriteRange;
    /** Writes all of `data` synchronously (io: 'sync'). */
    private writeNow;
    /**
     * fs.read / fs.write calls on the thread pool until `buf` is
     * done (a short count continues where it stopped; a read stops at the end
     * of the file), as one promise of the bytes done.
     */
    private transfer;
    /** One fs callback call on the descriptor (io: 'async'), counted in `inFlight` until it settles. */
    private call;
    private settled;
    size(): Promise<number>;
    /**
     * A block device's size, as QEMU and UML find it (fstat says 0): lseek
     * SEEK_END through the addon, else /sys/dev/block/MAJOR:MINOR/size (in
     * 512-byte sectors whatever the device's sector size).
     */
    private deviceSize;
    /**
     * Sets the length. A block device cannot change its size: shrinking is a
     * no-op (the tail keeps what it holds) and growing fails, as with QEMU's
     * host_device ("Cannot grow device files").
     */
    truncate(size: number): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
    private checkOpen;
    private checkWritable;
}
