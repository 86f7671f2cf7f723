/** blk convert: qemu-img convert (one source), sparse, written under a temporary name. */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Image } from '@blk/core';
import {
  CHUNK, isZero, onInterrupt, openCli, resolveBackingArg, yieldToEventLoop,
} from '../common.js';
import { UsageError } from '../errors.js';
import { createImage, openImage, registry } from '../images.js';
import { formatOptionHelp, parseCreateOptions } from '../options.js';
import { createProgress } from '../progress.js';
import { parseSize } from '../size.js';

export interface ConvertOpts {
  format?: string;
  outputFormat: string;
  options: string[];
  backing?: string;
  backingFormat?: string;
  sparseSize: string;
  progress?: boolean;
  quiet?: boolean;
  backingProbe?: boolean;
}

export async function convert(src: string, dst: string, opts: ConvertOpts): Promise<number> {
  const outFormat = opts.outputFormat;
  if (!registry.require(outFormat, dst).create) throw new Error(`${dst}: format ${outFormat} cannot create images`);
  const o = parseCreateOptions(outFormat, opts.options);
  if (o.help) {
    process.stdout.write(formatOptionHelp(outFormat));
    return 0;
  }
  const sparse = parseSize(opts.sparseSize, 'sparse size');
  if (sparse % 512 !== 0 || sparse > 16 * 1024 * 1024) {
    throw new UsageError(`invalid sparse size ${opts.sparseSize}: use a multiple of 512 up to 16M (0 writes every byte)`);
  }
  if (o.size !== undefined) throw new UsageError('convert takes the size from the source; -o size= is not allowed');
  const backingArg = opts.backing ?? o.backingFile;
  const backingFormat = opts.backingFormat ?? o.backingFormat;
  if (backingFormat !== undefined && backingArg === undefined) throw new UsageError('-F (backing format) needs -B (backing file)');

  const source = await openCli(src, { format: opts.format, readOnly: true, backingProbe: opts.backingProbe });
  let backing: Image | undefined;
  let out: Image | undefined;
  const tmp = `${dst}.tmp-${randomBytes(4).toString('hex')}`;
  let created = false;
  const removeTmp = () => {
    if (created) {
      try {
        fs.unlinkSync(tmp);
      } catch {
        // Already gone.
      }
    }
  };
  const offInterrupt = onInterrupt(removeTmp);
  try {
    let backingPath: string | undefined;
    if (backingArg !== undefined) {
      backingPath = resolveBackingArg(dst, backingArg);
      backing = await openCli(backingPath, { format: backingFormat ?? 'raw', readOnly: true, backingProbe: opts.backingProbe });
    }
    const createOptions: Parameters<typeof createImage>[1] = { format: outFormat, size: source.size };
    if (backingPath !== undefined) {
      createOptions.backing = backingFormat !== undefined ? { path: backingPath, format: backingFormat } : backingPath;
    }
    if (Object.keys(o.driverOptions).length > 0) createOptions.driverOptions = o.driverOptions;
    created = true;
    await createImage(tmp, createOptions);
    out = await openImage(tmp, {
      format: outFormat,
      backing: backingFormat !== undefined ? { format: backingFormat } : {},
    });

    const granule = sparse > 0 ? sparse : 512;
    const writeAll = sparse === 0 && backing === undefined;
    const progress = createProgress(Boolean(opts.progress) && !opts.quiet, source.size);
    const buf = new Uint8Array(CHUNK);
    const bbuf = backing ? new Uint8Array(CHUNK) : undefined;
    let done = 0;
    for await (const run of source.map()) {
      const runEnd = run.start + run.length;
      const zeroRun = run.depth === undefined || run.zero;
      if (zeroRun && !backing && !writeAll) {
        // Reads as zeros in the new image already: leave a hole.
        done += run.length;
        progress.update(done);
        continue;
      }
      for (let pos = run.start; pos < runEnd;) {
        const n = Math.min(CHUNK - (pos % CHUNK), runEnd - pos);
        const data = buf.subarray(0, n);
        if (zeroRun) data.fill(0);
        else await source.readInto(pos, data);
        let base: Uint8Array | undefined;
        if (backing && bbuf) {
          base = bbuf.subarray(0, n);
          const inside = Math.max(0, Math.min(n, backing.size - pos));
          if (inside < n) base.fill(0, inside);
          if (inside > 0) await backing.readInto(pos, base.subarray(0, inside));
        }
        await writeChanged(out, pos, data, base, granule, writeAll);
        pos += n;
        done += n;
        progress.update(done);
        await yieldToEventLoop();
      }
    }
    await out.flush();
    await out.close();
    out = undefined;
    fs.renameSync(tmp, dst);
    created = false;
    syncDirectory(nodePath.dirname(nodePath.resolve(dst)));
    progress.done();
  } catch (err) {
    await out?.close().catch(() => undefined);
    removeTmp();
    throw err;
  } finally {
    offInterrupt();
    await backing?.close().catch(() => undefined);
    await source.close().catch(() => undefined);
  }
  return 0;
}

/**
 * Writes the granules of `data` (at image offset `pos`) that are not zero
 * (or, over a backing file, that differ from `base`), coalescing neighbours
 * into one write. Granules are aligned to absolute multiples of `granule`.
 */
async function writeChanged(out: Image, pos: number, data: Uint8Array, base: Uint8Array | undefined,
  granule: number, writeAll: boolean): Promise<void> {
  if (writeAll) {
    await out.write(pos, data);
    return;
  }
  const end = pos + data.length;
  let pending = -1;
  for (let g = pos; g < end;) {
    const gEnd = Math.min(g - (g % granule) + granule, end);
    const slice = data.subarray(g - pos, gEnd - pos);
    const skip = base
      ? Buffer.from(slice.buffer, slice.byteOffset, slice.length).equals(base.subarray(g - pos, gEnd - pos))
      : isZero(slice);
    if (!skip) {
      if (pending < 0) pending = g;
    } else if (pending >= 0) {
      await out.write(pending, data.subarray(pending - pos, g - pos));
      pending = -1;
    }
    g = gEnd;
  }
  if (pending >= 0) await out.write(pending, data.subarray(pending - pos));
}

function syncDirectory(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Not every file system lets a directory be synced; the rename stands.
  }
}
