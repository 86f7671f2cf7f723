import { ForwardingVfs, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core';
export type StorageCall = 'read' | 'write' | 'flush' | 'truncate' | 'size' | 'close';
export interface StorageHooks {
    /** Awaited before every storage call (e.g. `() => scheduler.schedule(Promise.resolve())`). */
    before?: (call: StorageCall, path: string, offset: number | undefined, length: number | undefined) => Promise<void> | void;
    /** Called after every storage call that succeeded. */
    after?: (call: StorageCall, path: string, offset: number | undefined, length: number | undefined) => void;
}
/**
 * A Vfs whose storages call hooks around every call: to let fast-check's
 * scheduler interleave I/O, to hold a call until another one starts, or to
 * trace the order in which a driver touches its file.
 */
export declare class HookedVfs extends ForwardingVfs {
    readonly hooks: StorageHooks;
    /** When false, hooks are skipped (e.g. while opening). */
    enabled: boolean;
    constructor(inner: Vfs, hooks: StorageHooks);
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
}
