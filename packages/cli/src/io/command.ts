/**
 * What every qemu-io command shares: its table entry (`CmdInfo`), option
 * parsing with the usage line on error, and the operand parsers (pattern
 * bytes, `off len [len..]`) with qemu-io's messages.
 */
import { getopt } from './getopt.js';
import type { IoSession } from './session.js';

/** BDRV_REQUEST_MAX_BYTES. */
export const MAX_REQUEST = 2147483136;

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
export function getoptOrUsage(ctx: IoSession, ct: CmdInfo, argv: string[], optstring: string) {
  const r = getopt(argv.slice(1), optstring, argv[0]!);
  if (!r.ok) {
    ctx.io.err(`${r.message}\n`);
    ctx.usage(ct);
    return undefined;
  }
  return r;
}

/** strtol(arg, &end, 0) for a pattern byte: decimal, 0x hex or 0 octal, 0..255. */
export function parsePattern(arg: string): number | undefined {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(arg);
  if (!m) return undefined;
  const digits = m[2]!;
  let v: number;
  if (/^0[xX]/.test(digits)) v = parseInt(digits.slice(2), 16);
  else if (digits.length > 1 && digits[0] === '0') v = parseInt(digits.slice(1), 8);
  else v = parseInt(digits, 10);
  if (m[1] === '-') v = -v;
  return v >= 0 && v <= 255 ? v : undefined;
}

/** -P: undefined when absent, null when invalid (message printed). */
export function patternFlag(ctx: IoSession, flags: Flags): number | undefined | null {
  const P = flags.get('P');
  if (typeof P !== 'string') return undefined;
  const v = parsePattern(P);
  if (v === undefined) {
    ctx.out(`${P} is not a valid pattern byte\n`);
    return null;
  }
  return v;
}

export function patternFails(buf: Uint8Array, pattern: number): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== pattern) return true;
  return false;
}

/** Parses `len [len..]` into one total length (create_iovec). */
function iovecLengths(ctx: IoSession, args: string[]): number | undefined {
  let count = 0;
  for (const arg of args) {
    const len = ctx.num(arg);
    if (len === undefined) return undefined;
    if (len > MAX_REQUEST) {
      ctx.out(`Argument '${arg}' exceeds maximum size ${MAX_REQUEST}\n`);
      return undefined;
    }
    if (count > MAX_REQUEST - len) {
      ctx.out(`The total number of bytes exceed the maximum size ${MAX_REQUEST}\n`);
      return undefined;
    }
    count += len;
  }
  return count;
}

/**
 * The `off len [len..]` operands of readv/writev/aio_read/aio_write: the
 * offset and the total length, or false once a message was printed.
 */
export function vectorRange(
  ctx: IoSession,
  ct: CmdInfo,
  operands: string[],
  exactly?: number,
): { offset: number; count: number } | false {
  if (operands.length < 2 || (exactly !== undefined && operands.length !== exactly)) return ctx.usage(ct);
  const offset = ctx.num(operands[0]!);
  if (offset === undefined) return false;
  const count = iovecLengths(ctx, operands.slice(1));
  if (count === undefined) return false;
  return { offset, count };
}

/** Options, -P pattern and `off len [len..]` of readv/writev/aio_read; false once a message was printed. */
export function vectorRequest(ctx: IoSession, ct: CmdInfo, argv: string[], optstring: string) {
  const o = getoptOrUsage(ctx, ct, argv, optstring);
  if (!o) return false;
  const pattern = patternFlag(ctx, o.flags);
  if (pattern === null) return false;
  const range = vectorRange(ctx, ct, o.operands);
  if (!range) return false;
  return { o, pattern, ...range };
}
