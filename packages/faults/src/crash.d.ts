import { ForwardingVfs, MemoryVfs, type MemoryStorage, type Storage, type VfsOpenOptions } from '@blk/core';
import type { Rng } from './rng.js';
/**
 * The unit of atomicity of the crash model: a storage write reaches the disk
 * one 512-byte sector (of the file, aligned to file offsets) at a time. A
 * sector that lands carries the whole sector as the page cache held it right
 * after that write (as an OS writes back whole pages), so "some sectors of a
 * write landed" is possible but "half a sector landed" is not.
 */
export declare const CRASH_SECTOR = 512;
/** One sector of a write as it would reach the disk. */
export interface SectorPiece {
    /** File offset, a multiple of CRASH_SECTOR. */
    offset: number;
    /** The sector's content (shorter than a sector only at the end of the file). */
    bytes: Uint8Array;
}
/**
 * The write log of a `CrashSimVfs`. Namespace changes (create, remove,
 * rename, truncate-on-open) are durable at once, as on a journaling file
 * system; content changes (`write`, `truncate`) are volatile until a `flush`
 * of the same file.
 */
export type CrashEvent = {
    type: 'create';
    path: string;
    inode: number;
} | {
    type: 'reset';
    inode: number;
    content: Uint8Array;
    mtimeSec: number;
} | {
    type: 'write';
    inode: number;
    offset: number;
    length: number;
    pieces: SectorPiece[];
    mtimeSec: number;
} | {
    type: 'truncate';
    inode: number;
    size: number;
    mtimeSec: number;
} | {
    type: 'flush';
    inode: number;
} | {
    type: 'sync-all';
} | {
    type: 'remove';
    path: string;
} | {
    type: 'rename';
    from: string;
    to: string;
}
/** A note from the test (API-level events such as "write started", "flush done"). */
 | {
    type: 'mark';
    label: string;
    data?: unknown;
};
/** A volatile change that a power loss may or may not keep. */
export type PendingPiece = {
    kind: 'write';
    inode: number;
    offset: number;
    bytes: Uint8Array;
    event: number;
} | {
    kind: 'truncate';
    inode: number;
    size: number;
    event: number;
};
/**
 * Which volatile pieces survive a power loss: none, all, or a choice by
 * index into `pending()` (a set, a boolean array or a predicate).
 */
export type KeepSpec = 'none' | 'all' | ReadonlySet<number> | readonly boolean[] | ((index: number, piece: PendingPiece) => boolean);
export type CrashOptions = {
    mode: 'kill';
} | {
    mode: 'power-loss';
    keep?: KeepSpec;
};
/**
 * The operating system as the crash model sees it: per file, the durable
 * bytes, plus a global ordered list of volatile pieces. Fed with `CrashEvent`s
 * (live by `CrashSimVfs`, or replayed from a log by `CrashReplay`).
 */
export declare class CrashModel {
    readonly names: Map<string, number>;
    private readonly files;
    private pendingList;
    /** Number of events applied. */
    position: number;
    apply(event: CrashEvent): void;
    /** The volatile pieces, oldest first (the indices a `KeepSpec` refers to). */
    pending(): readonly PendingPiece[];
    /** The files as they would be found after a crash. */
    crash(options: CrashOptions, cwd?: string): MemoryVfs;
    /** The durable bytes of a file (for tests of the model itself). */
    durable(path: string): Uint8Array | undefined;
    private settle;
    private file;
}
/** Replays a recorded log event by event, so that a test can crash after any of them. */
export declare class CrashReplay {
    readonly log: readonly CrashEvent[];
    readonly model: CrashModel;
    constructor(log: readonly CrashEvent[]);
    /** Applies the next event and returns it (undefined at the end of the log). */
    step(): CrashEvent | undefined;
    /** Applies events until `position` events have been applied. */
    seek(position: number): void;
    get position(): number;
}
/** True for events after which the on-disk state may differ (the "write points"). */
export declare function isWritePoint(event: CrashEvent): boolean;
export interface CrashState {
    /** How the state was chosen: 'kill', 'none', 'subset', 'prefix', 'all-but-one', 'only-one', 'exhaustive'. */
    label: string;
    /** Which pending pieces were kept. */
    kept: boolean[];
    vfs: MemoryVfs;
}
/**
 * Up to `count` distinct post-crash states of the model's current position,
 * chosen deterministically from `rng`: the kill state (everything written
 * survives), the bare durable state, then, when there are few enough volatile
 * pieces, every subset; otherwise random subsets, in-order prefixes (a disk
 * that writes in order), "all but one" and "only one".
 */
export declare function crashStates(model: CrashModel, rng: Rng, count: number, cwd?: string): Generator<CrashState>;
/**
 * A `Vfs` that models the operating system's page cache: every write lands in
 * a volatile cache (visible to readers at once), `flush()` of a storage makes
 * that file's writes durable, and `crash()` produces the files as a power loss
 * (durable + any subset of volatile sectors) or a killed process (everything
 * written) would leave them. Every change is logged, so that a test can replay
 * the log and crash after each write point (`CrashReplay`).
 */
export declare class CrashSimVfs extends ForwardingVfs {
    readonly inner: MemoryVfs;
    readonly model: CrashModel;
    readonly log: CrashEvent[];
    /** Called after every logged event (awaited inside the storage call that caused it). */
    onEvent: ((event: CrashEvent, index: number) => void | Promise<void>) | undefined;
    private readonly inodes;
    private nextInode;
    constructor(options?: {
        cwd?: string;
    });
    /** Puts a file in place, durable at once (test set-up). */
    put(path: string, content?: Uint8Array): void;
    /** Logs a note from the test (kept in order with the storage events). */
    mark(label: string, data?: unknown): void;
    /** Makes everything durable (as `sync`), e.g. at the end of a test's set-up. */
    syncAll(): void;
    /** The files as a crash now would leave them. */
    crash(options: CrashOptions): MemoryVfs;
    /** Number of write points (writes, truncates, flushes) logged so far. */
    get writePoints(): number;
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
    remove(path: string): Promise<void>;
    rename(from: string, to: string): Promise<void>;
    /** @internal */
    emit(event: CrashEvent): void | Promise<void>;
    private inodeOf;
    private abs;
}
/** A storage of a `CrashSimVfs`: forwards to memory and logs every change. */
export declare class CrashStorage implements Storage {
    private readonly vfs;
    private readonly storage;
    readonly inode: number;
    constructor(vfs: CrashSimVfs, storage: MemoryStorage, inode: number);
    get path(): string;
    get readOnly(): boolean;
    read(offset: number, into: Uint8Array): Promise<number>;
    write(offset: number, data: Uint8Array): Promise<void>;
    size(): Promise<number>;
    truncate(size: number): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
}
