/**
 * One qemu-io session: the file open (if any), the aio requests in flight,
 * and how commands print. qemu-io's own report lines go to `out`; blk's
 * error lines (`blk: FILE: ...`) go to `err` and name the file.
 */
import type { Image } from '@blk/core';
import { type CmdInfo } from './command.js';
import { type IoOpenOptions } from './open-options.js';
import type { BackingRules } from '../jobs/common.js';
export interface Output {
    out(text: string): void;
    err(text: string): void;
    /** Resolves once `out` has room again (a slow reader of a pipe); absent when output never waits. */
    drain?(): Promise<void>;
}
export declare class IoSession {
    readonly io: Output;
    readonly backingProbe: boolean;
    readonly rules?: BackingRules | undefined;
    private readonly inflight;
    private file;
    quit: boolean;
    /**
     * `backingProbe`: --backing-probe of the command line, and `rules` its backing rules
     * (--backing-dir, --forbid-backing, the default rule), for every file this session opens.
     */
    constructor(io: Output, backingProbe?: boolean, rules?: BackingRules | undefined);
    get isOpen(): boolean;
    /** The open image (commands run only while one is open, unless they are `noFile`). */
    get image(): Image;
    /** The file's name as the user gave it. */
    get fileName(): string;
    /** -d ignore: discards and `write -z -u` leave allocation alone. */
    get unmap(): boolean;
    /** Opens `name`; false after printing why not (`blk: NAME: ...`). */
    open(name: string, options: IoOpenOptions): Promise<boolean>;
    /** Completes the aio requests in flight, then closes the file (flushing it); false after printing a failure. */
    close(): Promise<boolean>;
    /** After a completed write request: with a writethrough cache mode, make it durable now. */
    afterWrite(): Promise<void>;
    /** Waits for every aio request in flight. */
    drain(): Promise<void>;
    track(p: Promise<void>): void;
    out(text: string): void;
    /** Waits while the output's reader is behind (see `Output.drain`). */
    outputDrained(): Promise<void>;
    /** Fails the request `what` before its buffer is allocated when it does not fit the image. */
    fits(what: string, offset: number, count: number): boolean;
    /** The -v dump of `buf`, a piece at a time, waiting for a slow reader between pieces. */
    dump(buf: Uint8Array, offset: number): Promise<void>;
    /** `blk: FILE: message` on stderr, naming the open file. */
    error(message: string): void;
    /** An error thrown by the library, as one line naming `name` (BlockErrors lead with their file already). */
    report(err: unknown, name?: string): void;
    /** qemu-io's `what failed: strerror` line for a failed request. */
    failed(what: string, err: unknown): false;
    private debug;
    /** Runs one request and returns how long it took in seconds, or false after printing `what failed: ...`. */
    timed(what: string, op: () => Promise<unknown>): Promise<number | false>;
    usage(ct: CmdInfo): false;
    /**
     * The `off len` operands of read, write and discard (qemu-io's checks and
     * messages); undefined after printing what is wrong. `nFlag`: the command
     * has write's -n, which lifts the length limit (and qemu-io's message says so).
     */
    request(operands: readonly string[], nFlag?: {
        given: boolean;
    }): {
        offset: number;
        count: number;
    } | undefined;
    /** cvtnum(): a size/offset with qemu's suffixes, or undefined after printing the error. */
    num(arg: string): number | undefined;
}
