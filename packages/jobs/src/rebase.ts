/**
 * The rebase job (blk rebase, qemu-img rebase). Safe mode copies into the
 * overlay every run it does not hold whose contents differ between the old
 * backing chain and the new backing file, flushes, then rewrites the
 * reference; `unsafe` (-u) only rewrites it.
 *
 * Interrupted, safe mode leaves an overlay that still reads the same over its
 * old backing file (it only gained copies of old data): re-run it. A header
 * rewrite is atomic only while the backing paths end inside the header's
 * first sector; with longer paths a power loss can tear the new path from the
 * old one. The overlay is then refused (never misread), and a re-run of the
 * same rebase recognises the torn rewrite (its driver's checkBackingFacts
 * matches the new file: setBacking's ordering guarantee writes the recorded
 * facts first) and finishes it.
 *
 * The copy walks the overlay's chain once (its map) and reads every run it
 * does not hold from the layer that holds it, as the copy engine does (never
 * again through the top); runs no layer holds are zeros and are not read.
 * Where the old chain reads zeros, the new backing file is read only where
 * its own map says it holds data. Differences are found in granules of the
 * overlay's allocation unit (its cluster size) and written as data, zeros
 * too: a write-zeroes could leave the overlay reading its backing file, which
 * is about to change.
 *
 * `signal` stops the copy between chunks (BlockError `aborted`): the overlay
 * still reads the same over its old backing file; a re-run finishes.
 *
 * Every file-system action goes through the job's Vfs (portable: the
 * registry and the Vfs are the caller's).
 */
import {
  BlockError,
  gatherBackingFacts,
  isBlockError,
  type BackingFacts,
  type BackingSpec,
  type Image,
} from '@blk/core/portable';
import {
  cacheVfs,
  checkAborted,
  EventLoopYielder,
  fileId,
  jobChunk,
  openNamedBacking,
  openOn,
  progressOf,
  resolveBackingArg,
  sameBytes,
  type JobContext,
  type JobOptions,
} from './common.js';
import { targetGranule } from './copy.js';

export interface RebaseOptions extends JobOptions {
  /** The overlay's format (probed when absent). */
  format?: string;
  /**
   * The new backing file (a relative name is relative to the overlay's
   * directory, as qemu-img resolves it); '' removes the backing reference.
   */
  backing: string;
  /** The new backing file's format (default raw); recorded in the overlay when given. */
  backingFormat?: string;
  /** Only rewrite the reference (-u); copy no data. */
  unsafe?: boolean;
  /** The format of the overlay's current backing file (cow records none; default: recorded, else raw). */
  oldBackingFormat?: string;
}

export interface RebaseResult {
  /** The new backing file as recorded (undefined when the reference was removed). */
  backingPath: string | undefined;
  /** Bytes copied into the overlay (0 with `unsafe`). */
  copied: number;
}

/** Points the overlay `file` at a new backing file, keeping its contents unless `unsafe`. */
export async function rebaseImage(file: string, options: RebaseOptions): Promise<RebaseResult> {
  // -t unsafe: nothing is fsync'ed (the copy-then-header order still holds against a killed process).
  const vfs = cacheVfs(options.vfs, options);
  const ctx: JobContext = { registry: options.registry, vfs };
  checkAborted(options.signal, file);
  const chunk = jobChunk(options);
  const newPath = options.backing === '' ? undefined : resolveBackingArg(vfs, file, options.backing);
  if (newPath !== undefined && !(await vfs.exists(newPath))) {
    throw new Error(`${file}: new backing file ${newPath} not found`);
  }
  // An image cannot be its own backing file (compared by device and inode: links do not hide it).
  if (newPath !== undefined) {
    const self = await fileId(vfs, file);
    if (self !== undefined && self === (await fileId(vfs, newPath))) {
      throw new BlockError('backing-loop', `cannot be its own backing file (${newPath})`, { path: file });
    }
  }
  const open = (backingMode: 'open' | 'ignore') =>
    openOn(ctx, file, {
      format: options.format,
      readOnly: false,
      backingProbe: options.backingProbe,
      backingMode,
      backingDirs: options.backingDirs,
      forbidBacking: options.forbidBacking,
      approve: options.approve,
      allowOrigins: options.allowOrigins,
      backingDevices: options.backingDevices,
      backingFormat: options.oldBackingFormat,
    });
  let top: Image;
  try {
    top = await open(options.unsafe ? 'ignore' : 'open');
  } catch (err) {
    if (
      newPath === undefined
      || !isBlockError(err)
      || !(err.kind === 'backing-mismatch' || err.kind === 'backing-missing')
    )
      throw err;
    return finishInterruptedRebase(ctx, file, newPath, options, () => open('ignore'), err);
  }
  let fresh: Image | undefined;
  let copied = 0;
  try {
    if (newPath !== undefined) {
      fresh = await openNamedBacking(ctx, newPath, options.backingFormat, options, [top]);
    }
    let spec: BackingSpec | undefined;
    if (newPath !== undefined && fresh) {
      // The driver records what it keeps of these (cow: UML's size and mtime).
      spec = { path: newPath, facts: await gatherBackingFacts(vfs, newPath, fresh) };
      if (options.backingFormat !== undefined) spec.format = options.backingFormat;
    }
    // A reference the overlay cannot record is refused now, before copying what could be the whole old chain.
    top.checkBackingReference(spec);
    if (!options.unsafe) copied = await copyDifferences(top, fresh, chunk, options);
    await top.flush();
    await top.setBackingReference(spec);
    await top.flush();
  } finally {
    await fresh?.close().catch(() => undefined);
    await top.close();
  }
  return { backingPath: newPath, copied };
}

/**
 * The overlay no longer opens over its recorded backing file. If what it
 * records matches the new backing file (its driver's checkBackingFacts, with
 * at least one fact compared), a rebase onto that file was under way: its
 * copy was complete and flushed before the header rewrite began, and
 * setBacking writes the recorded facts before the path (its ordering
 * guarantee), so the rewrite was torn. Finish it; otherwise the mismatch is
 * someone else's doing and the original error stands.
 */
async function finishInterruptedRebase(
  ctx: JobContext,
  _file: string,
  newPath: string,
  options: RebaseOptions,
  openIgnoringBacking: () => Promise<Image>,
  original: unknown,
): Promise<RebaseResult> {
  const top = await openIgnoringBacking();
  try {
    const fresh = await openNamedBacking(ctx, newPath, options.backingFormat, options, [top]);
    let facts: BackingFacts;
    try {
      facts = await gatherBackingFacts(ctx.vfs, newPath, fresh);
    } finally {
      await fresh.close();
    }
    const checks = top.checkBackingFacts(facts);
    if (checks.length === 0 || !checks.every((c) => c.matches)) throw original;
    const spec: BackingSpec = { path: newPath, facts };
    if (options.backingFormat !== undefined) spec.format = options.backingFormat;
    await top.setBackingReference(spec);
    await top.flush();
  } finally {
    await top.close();
  }
  return { backingPath: newPath, copied: 0 };
}

/**
 * Copies old-chain data into `top` wherever it does not hold the data and
 * `fresh` reads differently (see the module comment). Returns the bytes written.
 */
async function copyDifferences(
  top: Image,
  fresh: Image | undefined,
  chunk: number,
  options: RebaseOptions,
): Promise<number> {
  const layers = top.chain();
  const granule = Math.max(512, targetGranule(top));
  const progress = progressOf(options, top.size);
  const signal = options.signal;
  const yielder = new EventLoopYielder();
  const oldBuf = new Uint8Array(chunk);
  const newBuf = new Uint8Array(chunk);
  let done = 0;
  let copied = 0;
  for await (const run of top.map()) {
    checkAborted(signal, top.path);
    const end = run.start + run.length;
    if (run.depth === 0) {
      // The overlay's own data stays.
      done += run.length;
      progress.update(done);
      continue;
    }
    // No layer holds it (or it is a known zero): zeros, not read.
    const layer = run.depth === undefined || run.zero ? undefined : layers[run.depth];
    for (let pos = run.start; pos < end; ) {
      checkAborted(signal, top.path);
      const n = Math.min(chunk - (pos % chunk), end - pos);
      const inside = fresh ? Math.max(0, Math.min(n, fresh.size - pos)) : 0;
      if (layer === undefined && !(fresh && inside > 0 && (await holdsData(fresh, pos, inside)))) {
        // Zeros over zeros: nothing differs, nothing to read.
      } else {
        const oldData = oldBuf.subarray(0, n);
        // From the layer that holds the run, not again through the top.
        if (layer) await layer.readInto(pos, oldData);
        else oldData.fill(0);
        const newData = newBuf.subarray(0, n);
        if (inside < n) newData.fill(0, inside);
        if (fresh && inside > 0) await fresh.readInto(pos, newData.subarray(0, inside));
        copied += await writeDiffering(top, pos, oldData, newData, granule);
      }
      pos += n;
      done += n;
      progress.update(done);
      await yielder.yield();
    }
  }
  progress.end();
  return copied;
}

/** True when `image` holds anything but zeros in [start, start + length) (its chain's map). */
async function holdsData(image: Image, start: number, length: number): Promise<boolean> {
  for await (const run of image.map(start, length)) {
    if (run.depth !== undefined && !run.zero) return true;
  }
  return false;
}

/** Writes the granules of `oldData` (at `pos`) that differ from `newData`, neighbours coalesced; returns the bytes written. */
async function writeDiffering(
  top: Image,
  pos: number,
  oldData: Uint8Array,
  newData: Uint8Array,
  granule: number,
): Promise<number> {
  const end = pos + oldData.length;
  let written = 0;
  let pending = -1;
  for (let g = pos; g < end; ) {
    const gEnd = Math.min(g - (g % granule) + granule, end);
    const same = sameBytes(oldData.subarray(g - pos, gEnd - pos), newData.subarray(g - pos, gEnd - pos));
    if (!same) {
      if (pending < 0) pending = g;
    } else if (pending >= 0) {
      await top.write(pending, oldData.subarray(pending - pos, g - pos));
      written += g - pending;
      pending = -1;
    }
    g = gEnd;
  }
  if (pending >= 0) {
    await top.write(pending, oldData.subarray(pending - pos));
    written += end - pending;
  }
  return written;
}
