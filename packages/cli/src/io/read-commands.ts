/** qemu-io's read, readv and aio_read. */
import { getoptOrUsage, parsePattern, patternFails, vectorRequest, type CmdInfo, type Flags } from './command.js';
import type { IoSession } from './session.js';
import { elapsed, printReport } from './report.js';
import { readInPieces } from './bounded.js';

export const read: CmdInfo = {
  name: 'read',
  altname: 'r',
  argmin: 2,
  argmax: -1,
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
    const req = ctx.request(o.operands);
    if (!req) return false;
    const { offset, count } = req;
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
    if (!ctx.fits('read', offset, count)) return false;
    // Kept whole only to be dumped (-v); otherwise checked a piece at a time.
    const buf = o.flags.has('v') && !o.flags.has('q') ? new Uint8Array(count).fill(0xab) : undefined;
    let mismatch = false;
    const check = (piece: Uint8Array, at: number) => {
      if (pattern === undefined) return;
      const from = Math.max(at, patternOffset);
      const to = Math.min(at + piece.length, patternOffset + patternCount);
      if (from < to && patternFails(piece.subarray(from - at, to - at), pattern)) mismatch = true;
    };
    const secs = await ctx.timed('read', async () => {
      if (buf === undefined) return readInPieces(ctx.image, offset, count, check);
      await ctx.image.readInto(offset, buf);
      check(buf, 0);
    });
    if (secs === false) return false;
    let ok = true;
    if (mismatch) {
      ctx.out(`Pattern verification failed at offset ${offset + patternOffset}, ${patternCount} bytes\n`);
      ok = false;
    }
    if (o.flags.has('q')) return ok;
    if (buf !== undefined) await ctx.dump(buf, offset);
    ctx.out(printReport('read', secs, offset, count, count, 1, o.flags.has('C')));
    return ok;
  },
};

export const readv: CmdInfo = {
  name: 'readv',
  argmin: 2,
  argmax: -1,
  args: '[-Cqv] [-P pattern] off len [len..]',
  oneline: 'reads a number of bytes at a specified offset',
  async run(ctx, argv) {
    const req = vectorRequest(ctx, this, argv, 'CP:qv');
    if (!req) return false;
    const { o, pattern, offset, count } = req;
    if (!ctx.fits('readv', offset, count)) return false;
    // Kept whole only to be dumped (-v); otherwise checked a piece at a time.
    const buf = o.flags.has('v') && !o.flags.has('q') ? new Uint8Array(count).fill(0xab) : undefined;
    let mismatch = false;
    const check = (piece: Uint8Array) => {
      if (pattern !== undefined && patternFails(piece, pattern)) mismatch = true;
    };
    const secs = await ctx.timed('readv', async () => {
      if (buf === undefined) return readInPieces(ctx.image, offset, count, check);
      await ctx.image.readInto(offset, buf);
      check(buf);
    });
    return secs !== false && (await reportVectorRead(ctx, o.flags, offset, count, mismatch, secs, buf));
  },
};

/** What readv and aio_read print once their data is in: the -P verdict, the -v dump (when kept), the report line. */
async function reportVectorRead(
  ctx: IoSession,
  flags: Flags,
  offset: number,
  count: number,
  mismatch: boolean,
  secs: number,
  buf: Uint8Array | undefined,
): Promise<boolean> {
  if (mismatch) ctx.out(`Pattern verification failed at offset ${offset}, ${count} bytes\n`);
  if (flags.has('q')) return !mismatch;
  if (flags.has('v') && buf !== undefined) await ctx.dump(buf, offset);
  ctx.out(printReport('read', secs, offset, count, count, 1, flags.has('C')));
  return !mismatch;
}

export const aioRead: CmdInfo = {
  name: 'aio_read',
  argmin: 2,
  argmax: -1,
  args: '[-Ciqv] [-P pattern] off len [len..]',
  oneline: 'asynchronously reads a number of bytes',
  async run(ctx, argv) {
    const req = vectorRequest(ctx, this, argv, 'CP:i:qv');
    if (!req) return false;
    const { o, pattern, offset, count } = req;
    // Failed as the request would, without allocating for it.
    if (!ctx.fits('readv', offset, count)) return true;
    const buf = new Uint8Array(count).fill(0xab);
    const t1 = process.hrtime.bigint();
    ctx.track(
      ctx.image.readInto(offset, buf).then(
        async () => {
          const mismatch = pattern !== undefined && patternFails(buf, pattern);
          await reportVectorRead(ctx, o.flags, offset, count, mismatch, elapsed(t1), buf);
        },
        (err: unknown) => {
          ctx.failed('readv', err);
        },
      ),
    );
    return true;
  },
};
