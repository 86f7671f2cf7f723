/** A run of a storage that is stored data or a hole (`Storage.extentAt`). */
export interface StorageExtent {
    data: boolean;
    length: number;
}
/**
 * The storage layer under every format driver (QEMU's "protocol" layer,
 * SQLite's VFS file). Drivers see only this: byte-addressed, positional,
 * stateless I/O on Uint8Array. The same driver then runs on a local file, in
 * memory, over HTTP or under a fault-injecting wrapper in tests.
 */
export interface Storage {
    /** A name for messages: the file path for files, a label otherwise. */
    readonly path: string;
    readonly readOnly: boolean;
    /**
     * Fills `into` from `offset`. Returns the number of bytes read, which is
     * less than `into.length` only when the end of the storage was reached;
     * the bytes past that are left untouched.
     */
    read(offset: number, into: Uint8Array): Promise<number>;
    /**
     * Optional synchronous `read`, with the same contract (returns the bytes
     * read, fewer only at the end of the storage; throws as `read` would).
     * Present only on storages whose reads really are synchronous (a
     * `NodeFileStorage` in `io: 'sync'` mode, `MemoryStorage`); the core's
     * synchronous read path (`DriverImage.readSync`) is taken only over such
     * storages. Wrappers that add behaviour to `read` must not forward it
     * unless they add the same behaviour here.
     */
    readSync?(offset: number, into: Uint8Array): number;
    /**
     * Optional: what the storage knows of where its data is (on files,
     * lseek SEEK_DATA/SEEK_HOLE; QEMU's protocol-level block status). Returns
     * the extent starting at `offset`, cut at `length`: `data: false` is a hole
     * that reads as zeros, `data: true` bytes that are stored (which may be
     * zeros too). `length` is at least 1. Past the end of the storage
     * everything is a hole. Undefined (or no method) when the storage cannot
     * tell: then every byte counts as data. Like `readSync`, wrappers that
     * change what reads return must not forward it.
     */
    extentAt?(offset: number, length: number): Promise<StorageExtent | undefined>;
    /**
     * Optional: reserves space for [offset, offset+length) without changing
     * what it reads (posix_fallocate), growing the storage if the range
     * reaches past its end. Throws `not-supported` where the file system
     * cannot; `preallocate` then writes zeros instead.
     */
    allocate?(offset: number, length: number): Promise<void>;
    /**
     * Optional: makes [offset, offset + length) read as zeros without writing a
     * buffer (on files, fallocate(2)): `punch` true deallocates the range (a
     * hole, QEMU's write_zeroes with MAY_UNMAP), false zeroes it in place. The
     * storage's length never changes. Resolves false, having changed nothing,
     * when this storage cannot do it here (the file system lacks it): the
     * caller then writes zeros.
     */
    zeroRange?(offset: number, length: number, punch: boolean): Promise<boolean>;
    /** Writes all of `data` at `offset`, growing the storage if needed. */
    write(offset: number, data: Uint8Array): Promise<void>;
    /** Current length in bytes. */
    size(): Promise<number>;
    /** Sets the length; growing leaves a hole that reads as zeros. */
    truncate(size: number): Promise<void>;
    /** Makes every completed write durable. */
    flush(): Promise<void>;
    close(): Promise<void>;
}
/** What the framework needs to know about a file that is not its content. */
export interface FileStat {
    size: number;
    /** Whole seconds of the modification time (floor), as UML and QEMU store it. */
    mtimeSec: number;
    isFile: boolean;
    isDirectory: boolean;
    isSymbolicLink: boolean;
    /** What kind of node this is, when the Vfs can tell (devices, FIFOs and sockets are never images' files). */
    type?: FileType;
    /**
     * Identity of the file (on hosts, device and inode): two paths with the same
     * `id` are one file, whatever links lead to them. Undefined when unknown.
     */
    id?: string;
    /** Number of hard links (a file with several cannot be replaced by a rename without splitting them). */
    nlink?: number;
    /** Permission bits (mode & 0o7777), owner and group, when the Vfs has them. */
    mode?: number;
    uid?: number;
    gid?: number;
}
export type FileType = 'file' | 'directory' | 'symlink' | 'block-device' | 'char-device' | 'fifo' | 'socket';
/** `a FIFO (named pipe)`, `a block device`, ...: a node type for messages. */
export declare function fileTypeName(type: FileType | undefined): string;
/** Permission bits and owner to give a file (see `Vfs.setAttributes`). */
export interface FileAttributes {
    mode: number;
    uid: number;
    gid: number;
}
export interface VfsOpenOptions {
    readOnly?: boolean;
    /** Create the file; with `exclusive`, fail with `exists` if it is there already. */
    create?: boolean;
    exclusive?: boolean;
    /**
     * Truncate to zero length on open (only with `create`). Done only once the
     * file is known to be a regular file (and, on a locking Vfs, locked): a
     * refused open changes nothing.
     */
    truncate?: boolean;
    /**
     * May the path be a block device (default false: only regular files)? A
     * device opens in place, with its size; `truncate` leaves it as it is.
     * FIFOs, sockets, character devices and directories are always refused
     * (BlockError `special-file`), and opening never blocks on them.
     */
    blockDevices?: boolean;
    /**
     * Read-only opens only: share the file with a writer (qemu-img's `-U`,
     * force-share=on). A locking Vfs takes no lock that would conflict with a
     * writer's, and reports through `onWarning` when a writer holds the file.
     */
    forceShare?: boolean;
    /** Where a Vfs reports what the caller should know but that is no error (e.g. a writer seen by `forceShare`). */
    onWarning?: (message: string) => void;
}
/**
 * A name space of files: opens storages and answers questions about paths.
 * Paths are POSIX-style strings; `NodeVfs` maps them to the host, `MemoryVfs`
 * keeps everything in memory.
 */
export interface Vfs {
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
    /** Follows symlinks. Throws BlockError `backing-missing`-neutral `io` with code ENOENT when absent. */
    stat(path: string): Promise<FileStat>;
    /** Does not follow a final symlink. */
    lstat(path: string): Promise<FileStat>;
    /** Canonical absolute path with every symlink resolved. */
    realpath(path: string): Promise<string>;
    /** Absolute form of `path`, resolved against `base` (a directory) when relative. */
    resolve(base: string, path: string): string;
    dirname(path: string): string;
    /** Current directory, for paths given by the user (never for paths read from images). */
    cwd(): string;
    exists(path: string): Promise<boolean>;
    remove(path: string): Promise<void>;
    rename(from: string, to: string): Promise<void>;
    /**
     * Optional: gives `path` these permission bits and owner (convert copies
     * them from the file it replaces). Vfses without owners leave it out.
     */
    setAttributes?(path: string, attributes: FileAttributes): Promise<void>;
}
/**
 * Reserves [offset, offset+length) of `storage` as preallocation `mode` asks:
 * `falloc` through `Storage.allocate` where the storage and its file system
 * can (else zeros are written, as glibc's posix_fallocate does), `full` by
 * writing zeros. Only for ranges that read as zeros already (new space): the
 * fallback overwrites. `full` reserves the range first where it can, so that
 * a size the file system cannot hold fails at once with ENOSPC instead of
 * after filling the disk with zeros (every other process on it too).
 */
export declare function preallocate(storage: Storage, offset: number, length: number, mode: 'falloc' | 'full'): Promise<void>;
/**
 * Reads exactly `into.length` bytes or zero-fills what lies past the end. Returns bytes really read.
 * A short read that stops before the end of the file is an I/O error, not a hole: zero-filling
 * it would show (and a read-modify-write would store) zeros nobody wrote.
 */
export declare function readZeroFilled(storage: Storage, offset: number, into: Uint8Array): Promise<number>;
/** Throws `io` (EIO) when a read of `wanted` bytes at `offset` returned `got` < wanted before the end of the file. */
export declare function checkShortRead(storage: Storage, offset: number, got: number, wanted: number): Promise<void>;
