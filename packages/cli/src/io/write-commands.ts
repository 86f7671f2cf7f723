/**
 * qemu-io's write, writev, aio_write and discard. `-z` asks the image for
 * zeroes (`Image.writeZeroes`: no buffer; with `-u` the range may be left
 * deallocated where it then reads as zeros; with `-n` it fails with
 * "Operation not supported" rather than write a buffer of zeros, QEMU's
 * BDRV_REQ_NO_FALLBACK), and `-f` asks for Force Unit Access (the request's
 * `fua` flag: the image's own FUA or a flush after the write), as qemu-io does.
 */
import { getoptOrUsage, patternFlag, vectorRange, vectorRequest, type CmdInfo, type Flags } from './command.js';
import { strerror } from './errno.js';
import type { IoSession } from './session.js';
import { elapsed, printReport } from './report.js';
import { readPatternInto, writeFilled } from './bounded.js';

/** write -s: the buffer repeats the file's contents (qemu_io_alloc_from_file), read no further than it needs. */
function fillFromFile(ctx: IoSession, buf: Uint8Array, file: string): boolean {
  let length: number;
  try {
    length = readPatternInto(file, buf);
  } catch (err) {
    ctx.error(`Failed to open file ${file}: ${strerror(err)}`);
    return false;
  }
  if (length === 0) {
    ctx.error(`Failed to read pattern file ${file}: it is empty`);
    return false;
  }
  for (let i = length; i < buf.length; i += length) buf.copyWithin(i, 0, Math.min(length, buf.length - i));
  return true;
}

/**
 * What a write request puts there: a buffer (`-s`), one byte value (`-P`, the
 * default 0xcd: written from a bounded buffer, see `writeFilled`), or zeroes
 * (`-z`, `-u` allowing deallocation).
 */
type Payload =
  | { data: Uint8Array }
  | { fill: number; length: number }
  | { zeroes: number; unmap: boolean; noFallback?: boolean };

function payloadLength(p: Payload): number {
  return 'data' in p ? p.data.length : 'fill' in p ? p.length : p.zeroes;
}

/** Performs one write request, with FUA for -f (else the flush the cache mode asks for). */
async function performWrite(ctx: IoSession, offset: number, p: Payload, fua: boolean, compress = false): Promise<void> {
  const image = ctx.image;
  const flags = fua ? { fua: true } : {};
  if (compress && !('zeroes' in p)) {
    // write -c: whole clusters stored compressed where the format can (else ENOTSUP, as qemu-io).
    if ('data' in p) await image.write(offset, p.data, { ...flags, compress: true });
    else await writeFilled(image, offset, p.length, p.fill, { ...flags, compress: true });
    await ctx.afterWrite();
    return;
  }
  if ('data' in p) await image.write(offset, p.data, flags);
  else if ('fill' in p) await writeFilled(image, offset, p.length, p.fill, flags);
  else
    await image.writeZeroes(offset, p.zeroes, {
      ...flags,
      mayUnmap: p.unmap && ctx.unmap,
      noFallback: p.noFallback === true,
    });
  if (!fua) await ctx.afterWrite();
}

/** write/writev: performs the write and prints qemu-io's `wrote` report unless -q. */
async function writeAndReport(
  ctx: IoSession,
  what: string,
  flags: Flags,
  offset: number,
  p: Payload,
): Promise<boolean> {
  const secs = await ctx.timed(what, () => performWrite(ctx, offset, p, flags.has('f'), flags.has('c')));
  if (secs === false) return false;
  const n = payloadLength(p);
  if (!flags.has('q')) ctx.out(printReport('wrote', secs, offset, n, n, 1, flags.has('C')));
  return true;
}

export const write: CmdInfo = {
  name: 'write',
  altname: 'w',
  argmin: 2,
  argmax: -1,
  write: true,
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
    const req = ctx.request(o.operands, { given: o.flags.has('n') });
    if (!req) return false;
    const { offset, count } = req;
    if (o.flags.has('b')) {
      ctx.out('write failed: Operation not supported\n');
      return false;
    }
    if (o.flags.has('c') && !z) {
      // qemu-io: compressed writes take whole sectors.
      for (const [what, value] of [
        ['offset', offset],
        ['count', count],
      ] as const) {
        if (value % 512 !== 0) {
          ctx.out(`${value} is not a sector-aligned value for '${what}'\n`);
          return false;
        }
      }
    }
    if (z)
      return writeAndReport(ctx, 'write', o.flags, offset, {
        zeroes: count,
        unmap: o.flags.has('u'),
        noFallback: o.flags.has('n'),
      });
    if (!ctx.fits('write', offset, count)) return false;
    if (typeof source !== 'string')
      return writeAndReport(ctx, 'write', o.flags, offset, { fill: pattern ?? 0xcd, length: count });
    const buf = new Uint8Array(count);
    if (!fillFromFile(ctx, buf, source)) return false;
    return writeAndReport(ctx, 'write', o.flags, offset, { data: buf });
  },
};

export const writev: CmdInfo = {
  name: 'writev',
  argmin: 2,
  argmax: -1,
  write: true,
  args: '[-Cfq] [-P pattern] off len [len..]',
  oneline: 'writes a number of bytes at a specified offset',
  async run(ctx, argv) {
    const req = vectorRequest(ctx, this, argv, 'CfqP:');
    if (!req) return false;
    const { o, pattern, offset, count } = req;
    if (!ctx.fits('writev', offset, count)) return false;
    return writeAndReport(ctx, 'writev', o.flags, offset, { fill: pattern ?? 0xcd, length: count });
  },
};

export const aioWrite: CmdInfo = {
  name: 'aio_write',
  argmin: 2,
  argmax: -1,
  write: true,
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
    // Failed as the request would, without allocating for it.
    if (!z && !ctx.fits('aio_write', offset, count)) return true;
    const payload: Payload = z ? { zeroes: count, unmap: o.flags.has('u') } : { fill: pattern ?? 0xcd, length: count };
    const t1 = process.hrtime.bigint();
    ctx.track(
      performWrite(ctx, offset, payload, o.flags.has('f')).then(
        () => {
          const secs = elapsed(t1);
          if (o.flags.has('q')) return;
          ctx.out(printReport('wrote', secs, offset, count, count, 1, o.flags.has('C')));
        },
        (err: unknown) => {
          ctx.failed('aio_write', err);
        },
      ),
    );
    return true;
  },
};

export const discard: CmdInfo = {
  name: 'discard',
  altname: 'd',
  argmin: 2,
  argmax: -1,
  write: true,
  args: '[-Cq] off len',
  oneline: 'discards a number of bytes at a specified offset',
  async run(ctx, argv) {
    const o = getoptOrUsage(ctx, this, argv, 'Cq');
    if (!o) return false;
    if (o.operands.length !== 2) return ctx.usage(this);
    const req = ctx.request(o.operands);
    if (!req) return false;
    const { offset, count } = req;
    // -d ignore: QEMU accepts the request and does nothing (BDRV_O_UNMAP unset). Nor does a discard
    // that would let the backing file's data show through (a qcow2 v2 overlay, which has no zero
    // flag): qcow2_co_pdiscard answers ENOTSUP there, which bdrv_co_pdiscard takes as done.
    const secs = await ctx.timed('discard', async () => {
      const image = ctx.image;
      if (!ctx.unmap || (image.capabilities.discard === 'backing' && image.backing !== undefined)) return;
      await image.discard(offset, count);
      await ctx.afterWrite();
    });
    if (secs === false) return false;
    if (!o.flags.has('q')) ctx.out(printReport('discard', secs, offset, count, count, 1, o.flags.has('C')));
    return true;
  },
};
