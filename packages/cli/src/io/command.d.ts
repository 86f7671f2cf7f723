import type { IoSession } from './session.js';
/** BDRV_REQUEST_MAX_BYTES. */
export declare const MAX_REQUEST = 2147483136;
export interface CmdInfo {
    name: string;
    altname?: string;
    argmin: number;
    /** -1: no maximum. */
    argmax: number;
    /** Shown in help and usage lines; absent for commands that take none. */
    args?: string;
    oneline: string;
    /** Needs a writable image. */
    write?: boolean;
    /** Runs without an open file (open, help, quit, sleep). */
    noFile?: boolean;
    run(ctx: IoSession, argv: string[]): Promise<boolean>;
}
export type Flags = Map<string, string | true>;
/** getopt() over a command's arguments; on a bad option prints getopt's message and the usage line. */
export declare function getoptOrUsage(ctx: IoSession, ct: CmdInfo, argv: string[], optstring: string): {
    ok: true;
    flags: Map<string, string | true>;
    operands: string[];
} | undefined;
/** strtol(arg, &end, 0) for a pattern byte: decimal, 0x hex or 0 octal, 0..255. */
export declare function parsePattern(arg: string): number | undefined;
/** -P: undefined when absent, null when invalid (message printed). */
export declare function patternFlag(ctx: IoSession, flags: Flags): number | undefined | null;
export declare function patternFails(buf: Uint8Array, pattern: number): boolean;
/**
 * The `off len [len..]` operands of readv/writev/aio_read/aio_write: the
 * offset and the total length, or false once a message was printed.
 */
export declare function vectorRange(ctx: IoSession, ct: CmdInfo, operands: string[], exactly?: number): {
    offset: number;
    count: number;
} | false;
/** Options, -P pattern and `off len [len..]` of readv/writev/aio_read; false once a message was printed. */
export declare function vectorRequest(ctx: IoSession, ct: CmdInfo, argv: string[], optstring: string): false | {
    offset: number;
    count: number;
    o: {
        ok: true;
        flags: Map<string, string | true>;
        operands: string[];
    };
    pattern: number | undefined;
};
