import { ForwardingVfs, type Storage, type VfsOpenOptions } from '@blk/core';
export type LockMode = 'exclusive' | 'shared';
/** Whether OS locks can be taken here, and if not, why. */
export declare function lockingAvailable(): {
    available: boolean;
    reason?: string;
};
/** What a lock attempt did: 'ofd' or 'posix' lock taken, or 'none' (locking unavailable or off). */
export type LockKind = 'ofd' | 'posix' | 'none';
/**
 * Takes a whole-file lock on `fd` (exclusive for writers, shared for
 * readers), without waiting. Throws BlockError `locked` when another holder
 * conflicts (naming its pid when it holds a classic POSIX lock, as UML does).
 */
export declare function lockFd(fd: number, mode: LockMode, path: string): LockKind;
/**
 * Another holder of QEMU's write-permission byte on `fd`'s file (a QEMU
 * process writing it), or undefined. QEMU locks its permission bytes one by
 * one (the kernel may merge neighbours: 100-103 for a writer); a lock that
 * reaches outside QEMU's permission bytes 100-199 is someone else's (UML's
 * whole-file read lock on a backing file, a blk reader's), not a writer's.
 */
export declare function qemuWriter(fd: number): {
    pid: number;
} | undefined;
/** Drops the lock on `fd` (closing the descriptor drops it too). */
export declare function unlockFd(fd: number): void;
/** Who would conflict with a lock of `mode` on `fd`: undefined if nobody. */
export declare function lockHolder(fd: number, mode?: LockMode): {
    type: 'read' | 'write';
    pid: number;
} | undefined;
/**
 * Locks a storage opened from the host file system: uses its descriptor
 * when it exposes one as `fd` (NodeFileStorage), else opens a descriptor of
 * its own that lives until the storage is closed. Returns the storage, whose
 * `close()` also releases the lock. Read-only storages get a shared lock.
 */
export declare function lockStorage(storage: Storage, options?: {
    mode?: LockMode;
}): Storage;
/**
 * A Vfs that locks every file it opens (exclusive for writable opens,
 * shared for read-only ones) before handing the storage out. Wrap NodeVfs
 * with it, or let NodeVfs call `lockStorage` itself.
 */
export declare class LockingVfs extends ForwardingVfs {
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
}
