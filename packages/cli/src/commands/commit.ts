/**
 * blk commit: qemu-img commit / uml_moo -d. Copies every sector the overlay
 * holds into its backing file, then empties the overlay (unless -d).
 *
 * Crash safety. The order is:
 *  1. mark the overlay "commit in progress" by recording backing mtime 0
 *     (formats that record the backing file's mtime; the overlay then
 *     refuses to open normally, which is right: its backing file is about
 *     to change under it);
 *  2. copy the overlay's allocated runs into the backing file (MiB chunks),
 *     flush it;
 *  3. record the backing file's new size and mtime in the overlay, flush;
 *  4. discard the overlay's data (unless -d), flush.
 * Killed anywhere, a re-run redoes the copy (the same bytes land in the
 * same places), so it is idempotent: re-running is the recovery. A backing
 * file whose mtime differs from a real recorded one (it was modified after
 * the overlay was made) is refused unless --force.
 */
import * as fs from 'node:fs';
import { isBlockError, type BackingSpec, type Image } from '@blk/core';
import { CHUNK, backingPolicy, mtimeSec, openCli, yieldToEventLoop } from '../common.js';
import { warn } from '../errors.js';
import { openImage } from '../images.js';
import { createProgress } from '../progress.js';

export interface CommitOpts {
  format?: string;
  keep?: boolean;
  progress?: boolean;
  quiet?: boolean;
  force?: boolean;
  backingProbe?: boolean;
}

/** The mtime recorded while a commit is under way. */
const COMMIT_IN_PROGRESS_MTIME = 0;

export async function commit(file: string, opts: CommitOpts): Promise<number> {
  // The overlay alone: commit reads only the sectors it holds.
  const top = await openCli(file, { format: opts.format, readOnly: false, backingMode: 'ignore' });
  let base: Image | undefined;
  try {
    const ref = top.backingReference;
    const backingPath = top.info().backing?.resolved;
    if (!ref || backingPath === undefined) {
      throw new Error(`${file}: the image has no backing file to commit into`);
    }
    if (!fs.existsSync(backingPath)) throw new Error(`${file}: backing file ${backingPath} not found`);

    const expect = ref.expect;
    const recorded = expect?.mtimeSec;
    const now = mtimeSec(backingPath);
    const resuming = recorded === COMMIT_IN_PROGRESS_MTIME;
    if (recorded !== undefined && !resuming && now !== undefined && recorded !== now % 2 ** 32) {
      const msg = `${file}: backing file ${backingPath} was modified after the overlay was made `
        + `(mtime ${now}, recorded ${recorded}); committing would mix old and new data`;
      if (!opts.force) throw new Error(`${msg} (use --force to commit anyway)`);
      warn(`${msg}; committing anyway (--force)`);
    }

    const baseFormat = ref.format ?? (opts.backingProbe ? undefined : 'raw');
    const baseOptions: Parameters<typeof openImage>[1] = {
      readOnly: false,
      backing: backingPolicy({ backingProbe: opts.backingProbe }),
    };
    if (baseFormat !== undefined) baseOptions.format = baseFormat;
    base = await openImage(backingPath, baseOptions);

    // Survey what to copy; refuse before writing anything if it cannot all fit.
    const runs: Array<{ start: number; length: number }> = [];
    let total = 0;
    for await (const run of top.map()) {
      if (run.depth !== 0) continue;
      if (run.start + run.length > base.size) {
        throw new Error(`${file}: the image holds data up to offset ${run.start + run.length}, past the end of `
          + `its backing file ${backingPath} (${base.size} bytes); blk cannot grow the backing file`);
      }
      runs.push({ start: run.start, length: run.length });
      total += run.length;
    }

    const baseSize = base.size;
    const spec = (mtime: number): BackingSpec => {
      const s: BackingSpec = { path: ref.path, size: baseSize, mtimeSec: mtime };
      if (ref.format !== undefined) s.format = ref.format;
      return s;
    };
    if (recorded !== undefined && !resuming && runs.length > 0) {
      await top.setBackingReference(spec(COMMIT_IN_PROGRESS_MTIME));
      await top.flush();
    }

    const progress = createProgress(Boolean(opts.progress) && !opts.quiet, total);
    const buf = new Uint8Array(CHUNK);
    let done = 0;
    for (const run of runs) {
      const end = run.start + run.length;
      for (let pos = run.start; pos < end;) {
        const n = Math.min(CHUNK - (pos % CHUNK), end - pos);
        const data = buf.subarray(0, n);
        await top.readInto(pos, data);
        await base.write(pos, data);
        pos += n;
        done += n;
        progress.update(done);
        await yieldToEventLoop();
      }
    }
    await base.flush();
    await base.close();
    base = undefined;

    // The backing file changed: record its new mtime so that the overlay still opens.
    if (recorded !== undefined) {
      const after = mtimeSec(backingPath);
      if (after !== undefined && (resuming || runs.length > 0)) {
        await top.setBackingReference(spec(after));
        await top.flush();
      }
    }

    if (!opts.keep && runs.length > 0) {
      try {
        await top.discard(0, top.size);
        await top.flush();
      } catch (err) {
        if (!isBlockError(err, 'not-supported')) throw err;
        warn(`${file}: committed, but format ${top.format} cannot be emptied; its data stays (identical to the backing file)`);
      }
    }
    progress.done();
    if (!opts.quiet) process.stdout.write('Image committed.\n');
  } finally {
    await base?.close().catch(() => undefined);
    await top.close();
  }
  return 0;
}
