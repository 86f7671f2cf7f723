import { BlockError, type FileStat, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core';
import { Rng } from './rng.js';
/** The calls a `FaultyVfs` counts and can fail. */
export type CallKind = 'open' | 'read' | 'write' | 'flush' | 'truncate' | 'size' | 'close' | 'stat' | 'lstat' | 'realpath' | 'exists' | 'remove' | 'rename';
export declare const STORAGE_CALLS: readonly CallKind[];
export declare const ALL_CALLS: readonly CallKind[];
/**
 * How a call fails:
 * - `EIO`, `ENOSPC`: the call does nothing and throws a BlockError `io` with that code
 *   (`close` still releases the handle, as close(2) does).
 * - `short-read`: `read` returns fewer bytes than asked, as at an end of file
 *   (the rest of the buffer is left untouched); other calls fail with EIO.
 * - `short-write`: `write` stores a prefix of the data (possibly empty, ending on a
 *   512-byte boundary of the file), then throws
 *   `io` with code ENOSPC, as a disk that fills up mid-write; other calls fail with EIO.
 */
export type FaultKind = 'EIO' | 'ENOSPC' | 'short-read' | 'short-write';
export declare const FAULT_KINDS: readonly FaultKind[];
export interface FaultRule {
    /** Which calls the rule counts ('any' = every kind). */
    call: CallKind | readonly CallKind[] | 'any';
    /** 1-based index, among the calls this rule counts, of the first failing call (default 1). */
    nth?: number;
    /** How many matching calls fail from `nth` on (default 1; Infinity = sticky, as a full disk). */
    times?: number;
    fault: FaultKind;
    /** Only calls on this path (storage path or Vfs argument). */
    path?: string | RegExp | ((path: string) => boolean);
}
export interface InjectedFault {
    call: CallKind;
    fault: FaultKind;
    path: string;
    /** Global call number (1-based) of the failed call. */
    callNumber: number;
    offset?: number;
}
/**
 * A `Vfs` (and its storages) that fails chosen calls: "fail the 7th write
 * with ENOSPC", "every flush from the 3rd on fails", ... Counts every call by
 * kind, logs every injected fault and tracks open handles, so that a test can
 * check that a failure reached the caller as a typed error and that no handle
 * leaked.
 */
export declare class FaultyVfs implements Vfs {
    readonly inner: Vfs;
    /** Calls seen, by kind (faulted ones included). */
    readonly counts: Record<CallKind, number>;
    /** Every injected fault, in order. */
    readonly injected: InjectedFault[];
    /** Storages opened through this vfs and not yet closed. */
    readonly handles: Set<FaultyStorage>;
    private rules;
    private calls;
    readonly rng: Rng;
    constructor(inner: Vfs, rules?: readonly FaultRule[], options?: {
        seed?: number;
    });
    addRule(rule: FaultRule): this;
    /** Removes every rule (the device is healthy again); counts are kept. */
    disarm(): this;
    /** Total calls seen. */
    get totalCalls(): number;
    /** Number of storages opened and not closed. */
    get openHandles(): number;
    /** @internal Counts the call; returns the fault to inject, if any. */
    tick(call: CallKind, path: string): FaultKind | undefined;
    /** @internal */
    record(call: CallKind, fault: FaultKind, path: string, offset?: number): void;
    private fail;
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
    stat(path: string): Promise<FileStat>;
    lstat(path: string): Promise<FileStat>;
    realpath(path: string): Promise<string>;
    exists(path: string): Promise<boolean>;
    remove(path: string): Promise<void>;
    rename(from: string, to: string): Promise<void>;
    resolve(base: string, path: string): string;
    dirname(path: string): string;
    cwd(): string;
}
/** A storage of a `FaultyVfs` (or stand-alone over any storage with `FaultyVfs.wrap`). */
export declare class FaultyStorage implements Storage {
    private readonly owner;
    readonly inner: Storage;
    private closed;
    constructor(owner: FaultyVfs, inner: Storage);
    get path(): string;
    get readOnly(): boolean;
    read(offset: number, into: Uint8Array): Promise<number>;
    write(offset: number, data: Uint8Array): Promise<void>;
    size(): Promise<number>;
    truncate(size: number): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
    private simple;
}
/** An injected failure, shaped as NodeFileStorage reports a system error. */
export declare function faultError(code: 'EIO' | 'ENOSPC', op: string, path: string, offset?: number, detail?: string): BlockError;
/** True for errors `faultError` made (directly or as a cause). */
export declare function isInjected(err: unknown): boolean;
