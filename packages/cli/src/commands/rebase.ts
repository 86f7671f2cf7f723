/**
 * blk rebase: qemu-img rebase. Safe mode copies into the overlay every run
 * it does not hold whose contents differ between the old backing chain and
 * the new backing file, then rewrites the reference; -u only rewrites it.
 * Interrupted, safe mode leaves an overlay that still reads the same over
 * its old backing file (it only gained copies of old data): re-run it.
 */
import * as fs from 'node:fs';
import type { BackingSpec, Image } from '@blk/core';
import { CHUNK, mtimeSec, openCli, resolveBackingArg, yieldToEventLoop } from '../common.js';
import { createProgress } from '../progress.js';

export interface RebaseOpts {
  format?: string;
  backing: string;
  backingFormat?: string;
  unsafe?: boolean;
  progress?: boolean;
  quiet?: boolean;
  backingProbe?: boolean;
}

export async function rebase(file: string, opts: RebaseOpts): Promise<number> {
  const newPath = opts.backing === '' ? undefined : resolveBackingArg(file, opts.backing);
  if (newPath !== undefined && !fs.existsSync(newPath)) {
    throw new Error(`${file}: new backing file ${newPath} not found`);
  }
  const top = await openCli(file, {
    format: opts.format,
    readOnly: false,
    backingProbe: opts.backingProbe,
    backingMode: opts.unsafe ? 'ignore' : 'open',
  });
  let fresh: Image | undefined;
  try {
    if (newPath !== undefined) {
      fresh = await openCli(newPath, { format: opts.backingFormat ?? 'raw', readOnly: true, backingProbe: opts.backingProbe });
    }
    if (!opts.unsafe) await copyDifferences(top, fresh, Boolean(opts.progress) && !opts.quiet);
    let spec: BackingSpec | undefined;
    if (newPath !== undefined && fresh) {
      spec = { path: newPath, size: fresh.size, mtimeSec: mtimeSec(newPath) ?? 0 };
      if (opts.backingFormat !== undefined) spec.format = opts.backingFormat;
    }
    await top.flush();
    await top.setBackingReference(spec);
    await top.flush();
  } finally {
    await fresh?.close().catch(() => undefined);
    await top.close();
  }
  return 0;
}

/** Copies old-chain data into `top` wherever it does not hold the data and `fresh` reads differently. */
async function copyDifferences(top: Image, fresh: Image | undefined, showProgress: boolean): Promise<void> {
  const granule = Math.max(512, top.sectorSize);
  const progress = createProgress(showProgress, top.size);
  const oldBuf = new Uint8Array(CHUNK);
  const newBuf = new Uint8Array(CHUNK);
  let done = 0;
  for await (const run of top.map()) {
    const end = run.start + run.length;
    if (run.depth === 0) {
      done += run.length;
      progress.update(done);
      continue;
    }
    for (let pos = run.start; pos < end;) {
      const n = Math.min(CHUNK - (pos % CHUNK), end - pos);
      const oldData = oldBuf.subarray(0, n);
      if (run.depth === undefined) oldData.fill(0);
      else await top.readInto(pos, oldData);
      const newData = newBuf.subarray(0, n);
      const inside = fresh ? Math.max(0, Math.min(n, fresh.size - pos)) : 0;
      if (inside < n) newData.fill(0, inside);
      if (fresh && inside > 0) await fresh.readInto(pos, newData.subarray(0, inside));
      let pending = -1;
      for (let g = pos; g < pos + n;) {
        const gEnd = Math.min(g - (g % granule) + granule, pos + n);
        const same = Buffer.from(oldData.buffer, oldData.byteOffset + (g - pos), gEnd - g)
          .equals(newData.subarray(g - pos, gEnd - pos));
        if (!same) {
          if (pending < 0) pending = g;
        } else if (pending >= 0) {
          await top.write(pending, oldData.subarray(pending - pos, g - pos));
          pending = -1;
        }
        g = gEnd;
      }
      if (pending >= 0) await top.write(pending, oldData.subarray(pending - pos));
      pos += n;
      done += n;
      progress.update(done);
      await yieldToEventLoop();
    }
  }
  progress.done();
}
