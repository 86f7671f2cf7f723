import { ForwardingVfs, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core';
/** Thrown (and recorded) when a driver breaks a `GuardedStorage` rule. Deliberately not a BlockError. */
export declare class GuardViolation extends Error {
    constructor(message: string);
}
export interface GuardOptions {
    /** Largest single read or write allowed (default 16 MiB). */
    maxTransfer?: number;
    /**
     * Refuse reads that start at or past the end of the file (default true):
     * a driver that validated its header never needs them.
     */
    forbidReadPastEnd?: boolean;
    /** Refuse every write (default true: probe and open of a read-only image must not write). */
    forbidWrites?: boolean;
}
export interface GuardStats {
    reads: number;
    bytesRead: number;
    largestRead: number;
    violations: string[];
}
/**
 * A storage wrapper for fuzzing: checks that every access stays inside the
 * file and below a size bound, and counts what was read.
 */
export declare class GuardedStorage implements Storage {
    readonly inner: Storage;
    private readonly options;
    readonly stats: GuardStats;
    constructor(inner: Storage, options?: GuardOptions, stats?: GuardStats);
    get path(): string;
    get readOnly(): boolean;
    read(offset: number, into: Uint8Array): Promise<number>;
    write(offset: number, data: Uint8Array): Promise<void>;
    size(): Promise<number>;
    truncate(size: number): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
    private violate;
}
/** A Vfs whose storages are all `GuardedStorage`s sharing one stats record. */
export declare class GuardedVfs extends ForwardingVfs {
    private readonly options;
    readonly stats: GuardStats;
    constructor(inner: Vfs, options?: GuardOptions);
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
}
