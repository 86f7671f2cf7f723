/**
 * qemu-io's command language over a blk Image: the same commands, options,
 * output lines and error messages (qemu-io-cmds.c of QEMU 7.2), so that
 * qemu-iotests recipes run unchanged.
 */
import * as fs from 'node:fs';
import { isBlockError, type Image } from '@blk/core';
import { debugEnabled } from '../errors.js';
import { cvtstr } from '../format.js';
import { parseSizeResult } from '../size.js';
import { qdictOrder, type QValue } from '../qjson.js';
import { toQValue } from '../describe.js';
import { getopt } from './getopt.js';
import { cvtnumError, dumpBuffer, elapsed, printReport } from './report.js';

/** BDRV_REQUEST_MAX_BYTES. */
const MAX_REQUEST = 2147483136;

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

interface CmdInfo {
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
  run(ctx: IoSession, argv: string[]): Promise<boolean>;
}

/** errno text for a failed request, as strerror() would print it. */
function strerror(err: unknown): string {
  if (isBlockError(err)) {
    switch (err.kind) {
      case 'out-of-range': return 'Input/output error';
      case 'invalid-argument': return 'Invalid argument';
      case 'not-supported': return 'Operation not supported';
      case 'read-only': return 'Permission denied';
      case 'probe-guard': return 'Operation not permitted';
      case 'closed': return 'Bad file descriptor';
      default: return errnoText(err.code);
    }
  }
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
  return errnoText(code);
}

const ERRNO: Record<string, string> = {
  EIO: 'Input/output error',
  ENOSPC: 'No space left on device',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EROFS: 'Read-only file system',
  ENOENT: 'No such file or directory',
  EINVAL: 'Invalid argument',
  EFBIG: 'File too large',
  EDQUOT: 'Disk quota exceeded',
  EBADF: 'Bad file descriptor',
  ENOMEM: 'Cannot allocate memory',
};

function errnoText(code: string | undefined): string {
  return (code !== undefined && ERRNO[code]) || 'Input/output error';
}

/** strtol(arg, &end, 0) for a pattern byte: decimal, 0x hex or 0 octal, 0..255. */
function parsePattern(arg: string): number | undefined {
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

export class IoSession {
  private readonly inflight = new Set<Promise<void>>();
  quit = false;

  constructor(readonly image: Image, readonly io: Output) {}

  /** Runs one command line; false when it failed (qemu-io then exits 1). */
  async execute(line: string): Promise<boolean> {
    const argv = line.split(/[ \t\n\r]+/).filter((s) => s !== '');
    if (argv.length === 0) return true;
    const name = argv[0]!;
    const ct = COMMANDS.find((c) => c.name === name || c.altname === name);
    if (!ct) {
      this.io.err(`command "${name}" not found\n`);
      return false;
    }
    const n = argv.length - 1;
    if (n < ct.argmin || (ct.argmax !== -1 && n > ct.argmax)) {
      if (ct.argmax === -1) {
        this.io.err(`bad argument count ${n} to ${name}, expected at least ${ct.argmin} arguments\n`);
      } else if (ct.argmin === ct.argmax) {
        this.io.err(`bad argument count ${n} to ${name}, expected ${ct.argmin} arguments\n`);
      } else {
        this.io.err(`bad argument count ${n} to ${name}, expected between ${ct.argmin} and ${ct.argmax} arguments\n`);
      }
      return false;
    }
    if (ct.write && this.image.readOnly) {
      this.io.err('blk: Block node is read-only\n');
      return false;
    }
    return ct.run(this, argv);
  }

  /** Waits for every aio request in flight. */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }

  track(p: Promise<void>): void {
    const wrapped = p.finally(() => this.inflight.delete(wrapped));
    this.inflight.add(wrapped);
  }

  out(text: string): void {
    this.io.out(text);
  }

  failed(what: string, err: unknown): false {
    this.io.out(`${what} failed: ${strerror(err)}\n`);
    if (debugEnabled()) this.io.err(`blk: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    return false;
  }

  /** Runs one request and returns how long it took in seconds, or false after printing `what failed: ...`. */
  async timed(what: string, op: () => Promise<unknown>): Promise<number | false> {
    const t1 = process.hrtime.bigint();
    try {
      await op();
    } catch (err) {
      return this.failed(what, err);
    }
    return elapsed(t1);
  }

  usage(ct: CmdInfo): false {
    this.io.out(`${ct.name} ${ct.args ?? ''} -- ${ct.oneline}\n`);
    return false;
  }

  /** cvtnum(): a size/offset with qemu's suffixes, or undefined after printing the error. */
  num(arg: string): number | undefined {
    const r = parseSizeResult(arg);
    if (r.ok) return r.value;
    this.io.out(cvtnumError(r.error, arg));
    return undefined;
  }
}

function getoptOrUsage(ctx: IoSession, ct: CmdInfo, argv: string[], optstring: string) {
  const r = getopt(argv.slice(1), optstring, argv[0]!);
  if (!r.ok) {
    ctx.io.err(`${r.message}\n`);
    ctx.usage(ct);
    return undefined;
  }
  return r;
}

/** Parses `len [len..]` into one buffer (create_iovec). */
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

/** write -s: the buffer repeats the file's contents (qemu_io_alloc_from_file). */
function fillFromFile(ctx: IoSession, buf: Uint8Array, file: string): boolean {
  let data: Uint8Array;
  try {
    data = fs.readFileSync(file);
  } catch (err) {
    ctx.io.err(`blk: Failed to open file ${file}: ${strerror(err)}\n`);
    return false;
  }
  if (data.length === 0) {
    ctx.io.err(`blk: Failed to read pattern file ${file}: it is empty\n`);
    return false;
  }
  for (let i = 0; i < buf.length; i += data.length) buf.set(data.subarray(0, Math.min(data.length, buf.length - i)), i);
  return true;
}

function patternFails(buf: Uint8Array, pattern: number): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== pattern) return true;
  return false;
}

const read: CmdInfo = {
  name: 'read', altname: 'r', argmin: 2, argmax: -1,
  args: '[-abCqv] [-P pattern [-s off] [-l len]] off len',
  oneline: 'reads a number of bytes at a specified offset',
  async run(ctx, argv) {
    const o = getoptOrUsage(ctx, this, argv, 'bCl:pP:qs:v');
    if (!o) return false;
    let pattern: number | undefined;
    let patternOffset = 0;
    let patternCount = 0;
    const P = o.flags.get('P');
    if (typeof P === 'string') {
      pattern = parsePattern(P);
      if (pattern === undefined) {
        ctx.out(`${P} is not a valid pattern byte\n`);
        return false;
      }
    }
    const l = o.flags.get('l');
    if (typeof l === 'string') {
      const v = ctx.num(l);
      if (v === undefined) return false;
      patternCount = v;
    }
    const s = o.flags.get('s');
    if (typeof s === 'string') {
      const v = ctx.num(s);
      if (v === undefined) return false;
      patternOffset = v;
    }
    if (o.operands.length !== 2) return ctx.usage(this);
    const offset = ctx.num(o.operands[0]!);
    if (offset === undefined) return false;
    const count = ctx.num(o.operands[1]!);
    if (count === undefined) return false;
    if (count > MAX_REQUEST) {
      ctx.out(`length cannot exceed ${MAX_REQUEST}, given ${o.operands[1]}\n`);
      return false;
    }
    if (pattern === undefined && (o.flags.has('l') || o.flags.has('s'))) return ctx.usage(this);
    if (!o.flags.has('l')) patternCount = count - patternOffset;
    if (patternCount < 0 || patternCount + patternOffset > count) {
      ctx.out('pattern verification range exceeds end of read data\n');
      return false;
    }
    if (o.flags.has('b')) {
      ctx.out('read failed: Operation not supported\n');
      return false;
    }
    const buf = new Uint8Array(count).fill(0xab);
    const secs = await ctx.timed('read', () => ctx.image.readInto(offset, buf));
    if (secs === false) return false;
    let ok = true;
    if (pattern !== undefined && patternFails(buf.subarray(patternOffset, patternOffset + patternCount), pattern)) {
      ctx.out(`Pattern verification failed at offset ${offset + patternOffset}, ${patternCount} bytes\n`);
      ok = false;
    }
    if (o.flags.has('q')) return ok;
    if (o.flags.has('v')) ctx.out(dumpBuffer(buf, offset));
    ctx.out(printReport('read', secs, offset, count, count, 1, o.flags.has('C')));
    return ok;
  },
};

const readv: CmdInfo = {
  name: 'readv', argmin: 2, argmax: -1,
  args: '[-Cqv] [-P pattern] off len [len..]',
  oneline: 'reads a number of bytes at a specified offset',
  async run(ctx, argv) {
    const req = vectorRequest(ctx, this, argv, 'CP:qv');
    if (!req) return false;
    const { o, pattern, offset, count } = req;
    const buf = new Uint8Array(count).fill(0xab);
    const secs = await ctx.timed('readv', () => ctx.image.readInto(offset, buf));
    return secs !== false && reportVectorRead(ctx, o.flags, buf, offset, pattern, secs);
  },
};

/**
 * The `off len [len..]` operands of readv/writev/aio_read/aio_write: the
 * offset and the total length, or false once a message was printed.
 */
function vectorRange(ctx: IoSession, ct: CmdInfo, operands: string[], exactly?: number): { offset: number; count: number } | false {
  if (operands.length < 2 || (exactly !== undefined && operands.length !== exactly)) return ctx.usage(ct);
  const offset = ctx.num(operands[0]!);
  if (offset === undefined) return false;
  const count = iovecLengths(ctx, operands.slice(1));
  if (count === undefined) return false;
  return { offset, count };
}

/** Options, -P pattern and `off len [len..]` of readv/writev/aio_read; false once a message was printed. */
function vectorRequest(ctx: IoSession, ct: CmdInfo, argv: string[], optstring: string) {
  const o = getoptOrUsage(ctx, ct, argv, optstring);
  if (!o) return false;
  const pattern = patternFlag(ctx, o.flags);
  if (pattern === null) return false;
  const range = vectorRange(ctx, ct, o.operands);
  if (!range) return false;
  return { o, pattern, ...range };
}

/** What readv and aio_read print once their data is in: the -P check, the -v dump, the report line. */
function reportVectorRead(ctx: IoSession, flags: Map<string, string | true>, buf: Uint8Array, offset: number,
  pattern: number | undefined, secs: number): boolean {
  let ok = true;
  if (pattern !== undefined && patternFails(buf, pattern)) {
    ctx.out(`Pattern verification failed at offset ${offset}, ${buf.length} bytes\n`);
    ok = false;
  }
  if (flags.has('q')) return ok;
  if (flags.has('v')) ctx.out(dumpBuffer(buf, offset));
  ctx.out(printReport('read', secs, offset, buf.length, buf.length, 1, flags.has('C')));
  return ok;
}

/** -P: undefined when absent, null when invalid (message printed). */
function patternFlag(ctx: IoSession, flags: Map<string, string | true>): number | undefined | null {
  const P = flags.get('P');
  if (typeof P !== 'string') return undefined;
  const v = parsePattern(P);
  if (v === undefined) {
    ctx.out(`${P} is not a valid pattern byte\n`);
    return null;
  }
  return v;
}

const write: CmdInfo = {
  name: 'write', altname: 'w', argmin: 2, argmax: -1, write: true,
  args: '[-bcCfnquz] [-P pattern | -s source_file] off len',
  oneline: 'writes a number of bytes at a specified offset',
  async run(ctx, argv) {
    const o = getoptOrUsage(ctx, this, argv, 'bcCfnpP:qs:uz');
    if (!o) return false;
    const pattern = patternFlag(ctx, o.flags);
    if (pattern === null) return false;
    if (o.operands.length !== 2) return ctx.usage(this);
    const z = o.flags.has('z');
    const source = o.flags.get('s');
    if (o.flags.has('b') && z) {
      ctx.out('-b and -z cannot be specified at the same time\n');
      return false;
    }
    if (o.flags.has('f') && (o.flags.has('b') || o.flags.has('c'))) {
      ctx.out('-f and -b or -c cannot be specified at the same time\n');
      return false;
    }
    if (o.flags.has('n') && !z) {
      ctx.out('-n requires -z to be specified\n');
      return false;
    }
    if (o.flags.has('u') && !z) {
      ctx.out('-u requires -z to be specified\n');
      return false;
    }
    if (Number(z) + Number(pattern !== undefined) + Number(source !== undefined) > 1) {
      ctx.out('Only one of -z, -P, and -s can be specified at the same time\n');
      return false;
    }
    const offset = ctx.num(o.operands[0]!);
    if (offset === undefined) return false;
    const count = ctx.num(o.operands[1]!);
    if (count === undefined) return false;
    if (count > MAX_REQUEST && !o.flags.has('n')) {
      ctx.out(`length cannot exceed ${MAX_REQUEST}, given ${o.operands[1]}\n`);
      return false;
    }
    if (o.flags.has('b') || o.flags.has('c')) {
      ctx.out('write failed: Operation not supported\n');
      return false;
    }
    const buf = new Uint8Array(count).fill(z ? 0 : pattern ?? 0xcd);
    if (typeof source === 'string' && !fillFromFile(ctx, buf, source)) return false;
    return writeAndReport(ctx, 'write', o.flags, offset, buf);
  },
};

/** write/writev: writes `buf` at `offset` (then flushes with -f) and prints qemu-io's `wrote` report unless -q. */
async function writeAndReport(ctx: IoSession, what: string, flags: Map<string, string | true>, offset: number,
  buf: Uint8Array): Promise<boolean> {
  const secs = await ctx.timed(what, async () => {
    await ctx.image.write(offset, buf);
    if (flags.has('f')) await ctx.image.flush();
  });
  if (secs === false) return false;
  if (!flags.has('q')) ctx.out(printReport('wrote', secs, offset, buf.length, buf.length, 1, flags.has('C')));
  return true;
}

const writev: CmdInfo = {
  name: 'writev', argmin: 2, argmax: -1, write: true,
  args: '[-Cfq] [-P pattern] off len [len..]',
  oneline: 'writes a number of bytes at a specified offset',
  async run(ctx, argv) {
    const req = vectorRequest(ctx, this, argv, 'CfqP:');
    if (!req) return false;
    const { o, pattern, offset, count } = req;
    const buf = new Uint8Array(count).fill(pattern ?? 0xcd);
    return writeAndReport(ctx, 'writev', o.flags, offset, buf);
  },
};

const aioRead: CmdInfo = {
  name: 'aio_read', argmin: 2, argmax: -1,
  args: '[-Ciqv] [-P pattern] off len [len..]',
  oneline: 'asynchronously reads a number of bytes',
  async run(ctx, argv) {
    const req = vectorRequest(ctx, this, argv, 'CP:i:qv');
    if (!req) return false;
    const { o, pattern, offset, count } = req;
    const buf = new Uint8Array(count).fill(0xab);
    const t1 = process.hrtime.bigint();
    ctx.track(ctx.image.readInto(offset, buf).then(() => {
      reportVectorRead(ctx, o.flags, buf, offset, pattern, elapsed(t1));
    }, (err: unknown) => {
      ctx.failed('readv', err);
    }));
    return true;
  },
};

const aioWrite: CmdInfo = {
  name: 'aio_write', argmin: 2, argmax: -1, write: true,
  args: '[-Cfiquz] [-P pattern] off len [len..]',
  oneline: 'asynchronously writes a number of bytes',
  async run(ctx, argv) {
    const o = getoptOrUsage(ctx, this, argv, 'CfiqP:uz');
    if (!o) return false;
    const pattern = patternFlag(ctx, o.flags);
    if (pattern === null) return false;
    const z = o.flags.has('z');
    if (z && pattern !== undefined) {
      ctx.out('-z and -P cannot be specified at the same time\n');
      return false;
    }
    if (o.flags.has('u') && !z) {
      ctx.out('-u requires -z to be specified\n');
      return false;
    }
    const range = vectorRange(ctx, this, o.operands, z ? 2 : undefined);
    if (!range) return false;
    const { offset, count } = range;
    const buf = new Uint8Array(count).fill(z ? 0 : pattern ?? 0xcd);
    const t1 = process.hrtime.bigint();
    const fua = o.flags.has('f');
    ctx.track(ctx.image.write(offset, buf).then(() => (fua ? ctx.image.flush() : undefined)).then(() => {
      const secs = elapsed(t1);
      if (o.flags.has('q')) return;
      ctx.out(printReport('wrote', secs, offset, count, count, 1, o.flags.has('C')));
    }, (err: unknown) => {
      ctx.failed('aio_write', err);
    }));
    return true;
  },
};

const aioFlush: CmdInfo = {
  name: 'aio_flush', argmin: 0, argmax: 0,
  oneline: 'completes all outstanding aio requests',
  async run(ctx) {
    await ctx.drain();
    return true;
  },
};

const flush: CmdInfo = {
  name: 'flush', altname: 'f', argmin: 0, argmax: 0,
  oneline: 'flush all in-core file state to disk',
  async run(ctx) {
    try {
      await ctx.image.flush();
      return true;
    } catch (err) {
      if (debugEnabled()) ctx.io.err(`blk: ${String(err)}\n`);
      return false;
    }
  },
};

const discard: CmdInfo = {
  name: 'discard', altname: 'd', argmin: 2, argmax: -1, write: true,
  args: '[-Cq] off len',
  oneline: 'discards a number of bytes at a specified offset',
  async run(ctx, argv) {
    const o = getoptOrUsage(ctx, this, argv, 'Cq');
    if (!o) return false;
    if (o.operands.length !== 2) return ctx.usage(this);
    const offset = ctx.num(o.operands[0]!);
    if (offset === undefined) return false;
    const count = ctx.num(o.operands[1]!);
    if (count === undefined) return false;
    if (count > MAX_REQUEST) {
      ctx.out(`length cannot exceed ${MAX_REQUEST}, given ${o.operands[1]}\n`);
      return false;
    }
    const secs = await ctx.timed('discard', () => ctx.image.discard(offset, count));
    if (secs === false) return false;
    if (!o.flags.has('q')) ctx.out(printReport('discard', secs, offset, count, count, 1, o.flags.has('C')));
    return true;
  },
};

const alloc: CmdInfo = {
  name: 'alloc', argmin: 1, argmax: 2, args: 'offset [count]',
  oneline: 'checks if offset is allocated in the file',
  async run(ctx, argv) {
    const start = ctx.num(argv[1]!);
    if (start === undefined) return false;
    let count = 512;
    if (argv.length === 3) {
      const c = ctx.num(argv[2]!);
      if (c === undefined) return false;
      count = c;
    }
    const image = ctx.image;
    let offset = start;
    let remaining = count;
    let sum = 0;
    try {
      while (remaining > 0) {
        if (offset >= image.size) {
          count -= remaining;
          break;
        }
        const st = await image.status(offset, Math.min(remaining, image.size - offset));
        if (st.allocated) sum += st.length;
        offset += st.length;
        remaining -= st.length;
      }
    } catch (err) {
      return ctx.failed('is_allocated', err);
    }
    ctx.out(`${sum}/${count} bytes allocated at offset ${cvtstr(start)}\n`);
    return true;
  },
};

const mapCmd: CmdInfo = {
  name: 'map', argmin: 0, argmax: 0, args: '',
  oneline: 'prints the allocated areas of a file',
  async run(ctx) {
    const image = ctx.image;
    let offset = 0;
    try {
      while (offset < image.size) {
        const first = await image.status(offset, image.size - offset);
        let num = first.length;
        while (offset + num < image.size) {
          const next = await image.status(offset + num, image.size - offset - num);
          if (next.allocated !== first.allocated) break;
          num += next.length;
        }
        const what = first.allocated ? '    allocated' : 'not allocated';
        ctx.out(`${cvtstr(num)} (0x${num.toString(16)}) bytes ${what} at offset ${cvtstr(offset)} (0x${offset.toString(16)})\n`);
        offset += num;
      }
    } catch (err) {
      ctx.io.err(`blk: Failed to get allocation status: ${strerror(err)}\n`);
      return false;
    }
    return true;
  },
};

const length: CmdInfo = {
  name: 'length', altname: 'l', argmin: 0, argmax: 0,
  oneline: 'gets the length of the current file',
  async run(ctx) {
    ctx.out(`${cvtstr(ctx.image.size)}\n`);
    return true;
  },
};

const info: CmdInfo = {
  name: 'info', altname: 'i', argmin: 0, argmax: 0,
  oneline: 'prints information about the current file',
  async run(ctx) {
    const image = ctx.image;
    ctx.out(`format name: ${image.format}\n`);
    ctx.out(`cluster size: ${cvtstr(image.format === 'raw' ? 0 : image.sectorSize)}\n`);
    ctx.out('vm state offset: 0 bytes\n');
    const spec = toQValue(image.info().formatSpecific);
    if (spec && typeof spec === 'object' && !Array.isArray(spec) && Object.keys(spec).length > 0) {
      ctx.out('Format specific information:\n');
      ctx.out(dumpDict(spec, 1));
    }
    return true;
  },
};

function dumpDict(d: { [k: string]: QValue | undefined }, indent: number): string {
  let out = '';
  for (const key of qdictOrder(d)) {
    const v = d[key]!;
    const name = key.replace(/-/g, ' ');
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      out += `${'    '.repeat(indent)}${name}:\n${dumpDict(v, indent + 1)}`;
    } else {
      out += `${'    '.repeat(indent)}${name}: ${Array.isArray(v) ? JSON.stringify(v) : String(v)}\n`;
    }
  }
  return out;
}

const sleep: CmdInfo = {
  name: 'sleep', argmin: 1, argmax: 1,
  oneline: 'waits for the given value in milliseconds',
  async run(ctx, argv) {
    const ms = Number(argv[1]);
    if (!Number.isInteger(ms) || ms < 0) {
      ctx.out(`Invalid value '${argv[1]}' for milliseconds\n`);
      return false;
    }
    await new Promise((r) => setTimeout(r, ms));
    return true;
  },
};

const quit: CmdInfo = {
  name: 'quit', altname: 'q', argmin: 0, argmax: 0,
  oneline: 'exit the program',
  async run(ctx) {
    ctx.quit = true;
    return true;
  },
};

const help: CmdInfo = {
  name: 'help', altname: '?', argmin: 0, argmax: 1, args: '[command]',
  oneline: 'help for one or all commands',
  async run(ctx, argv) {
    const line = (c: CmdInfo) => `${c.name} ${c.args !== undefined ? `${c.args} ` : ''}-- ${c.oneline}\n`;
    if (argv.length === 2) {
      const c = COMMANDS.find((x) => x.name === argv[1] || x.altname === argv[1]);
      if (!c) {
        ctx.out(`command ${argv[1]} not found\n`);
        return false;
      }
      ctx.out(line(c));
      return true;
    }
    for (const c of COMMANDS) ctx.out(line(c));
    ctx.out('\nUse \'help commandname\' for extended help.\n');
    return true;
  },
};

/** Sorted by name, as qemu-io keeps its command table. */
const COMMANDS: CmdInfo[] = [
  aioFlush, aioRead, aioWrite, alloc, discard, flush, help, info, length, mapCmd, quit, read, readv, sleep, write, writev,
].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
