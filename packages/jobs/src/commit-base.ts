/**
 * commit -b BASE (qemu-img commit -b): commits every layer of the chain
 * above BASE, from the top image down to the one whose backing file BASE is,
 * into BASE. As with qemu-img, `-b` implies `-d`: the top image keeps its
 * data, so that it still reads the same through the chain; the layers between
 * it and BASE keep theirs too (qemu-img calls them invalid afterwards: read
 * on their own, over the new BASE, they may show the top's data).
 *
 * BASE as the top's direct backing file is plain commit with `keep`
 * (commit.ts, its checks and protocol). A deeper BASE:
 *  1. every link of the chain is checked as plain commit checks its one link
 *     (a backing file modified after the overlay above it was made is
 *     refused unless `force`), and the data that must land in BASE is
 *     checked to fit before anything is written;
 *  2. a commit journal naming the top and BASE is written beside the top
 *     (commit-journal.ts), then the top is marked "commit in progress"
 *     through its driver's commit marker (cow: backing mtime 0): the chain
 *     refuses to open normally while BASE changes under it;
 *  3. each layer's own runs are written into BASE, the lowest layer first and
 *     the top last (the upper layers' data wins where they overlap, as reads
 *     through the chain see it), BASE is flushed. Like plain commit, the
 *     survey in step 1 keeps totals and the copy walks each layer's map
 *     again: no list of runs, whose size would grow with fragmentation;
 *  4. from the layer right above BASE up to the top, each layer records its
 *     backing file's new facts, where its driver reports a mismatch (a header
 *     rewrite changes the layer's own mtime, which the layer above records):
 *     the top's record, last, clears the mark.
 *  5. the journal is removed.
 * Killed anywhere, a re-run of the same command finds the mark with a
 * journal naming these files, skips the link checks (the mismatches are its
 * own) and redoes steps 3 and 4: the copy lands the same bytes in the same
 * places. The mark without such a journal proves nothing (anyone can write a
 * mark into a header), and a plain `blk commit` of the top does not take a
 * commit -b journal for its own (it names another backing file).
 *
 * `signal` stops the job between its steps and the copy's windows (BlockError
 * `aborted`), leaving what a kill there leaves: a re-run finishes it.
 */
import {
  exactBackingPath,
  gatherBackingFacts,
  type BackingFacts,
  type BackingSpec,
  type Image,
  type Vfs,
} from '@blk/core/portable';
import {
  cacheVfs,
  checkAborted,
  checkCopiesKeepFormat,
  COPY_CHUNK,
  jobChunk,
  openBackingOf,
  openOn,
  progressOf,
  rulesIn,
  type JobContext,
} from './common.js';
import { copyOwnRuns } from './copy.js';
import { ownRunsTouching, surveyOwnRuns, type Range } from './own-runs.js';
import { commitImage, commitLinkChange, type CommitOptions, type CommitResult } from './commit.js';
import {
  commitFiles,
  journalMatches,
  readJournal,
  removeJournal,
  journalThenMark,
  growFile,
} from './commit-journal.js';

interface Layer {
  path: string;
  /** The format it opened with. */
  format: string;
}

/** The real path of `path`, or undefined when it cannot be resolved (a missing file). */
async function realOf(vfs: Vfs, path: string): Promise<string | undefined> {
  try {
    return await vfs.realpath(path);
  } catch {
    return undefined;
  }
}

/**
 * The chain from `file` down to BASE: [top, ..., the layer whose backing
 * file BASE is, BASE]. BASE may be named relative to the current directory
 * or, as a backing file is, to the top image's directory.
 */
export async function chainDownTo(
  ctx: JobContext,
  file: string,
  base: string,
  options: CommitOptions,
): Promise<Layer[]> {
  const vfs = ctx.vfs;
  const wanted = new Set<string>();
  for (const candidate of [
    vfs.resolve(vfs.cwd(), base),
    vfs.resolve(vfs.dirname(vfs.resolve(vfs.cwd(), file)), base),
  ]) {
    const real = await realOf(vfs, candidate);
    if (real !== undefined) wanted.add(real);
  }
  const notFound = () => new Error(`Did not find '${base}' in the backing chain of '${file}'`);
  if (wanted.size === 0) throw notFound();
  // The chain as every command opens it (formats, disguised files and depth limits are core's rules);
  // recorded mtimes are not checked here (an interrupted commit -b leaves them changed): the job checks them.
  const image = await openOn(ctx, file, {
    format: options.format,
    readOnly: true,
    backingProbe: options.backingProbe,
    onMismatch: 'accept',
    ...rulesIn(options),
  });
  const layers: Layer[] = [];
  try {
    for (const layer of image.chain()) {
      layers.push({ path: layer.path, format: layer.format });
      if (layers.length === 1) continue;
      const real = await realOf(vfs, layer.path);
      if (real !== undefined && wanted.has(real)) return layers;
    }
  } finally {
    await image.close();
  }
  throw notFound();
}

/** Commits the chain above `base` into it (see the module comment). */
export async function commitIntoBase(file: string, base: string, options: CommitOptions): Promise<CommitResult> {
  const vfs = cacheVfs(options.vfs, options);
  const ctx: JobContext = { registry: options.registry, vfs };
  const signal = options.signal;
  checkAborted(signal, file);
  const chain = await chainDownTo(ctx, file, base, options);
  if (chain.length === 2) return commitImage(file, { ...options, keep: true });

  const chunk = jobChunk(options, COPY_CHUNK);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    options.onWarning?.(message);
  };
  const above = chain.slice(0, -1);
  const basePath = chain[chain.length - 1]!.path;
  const layers: Image[] = [];
  let target: Image | undefined;
  try {
    for (const layer of above) {
      const image = await openOn(ctx, layer.path, { format: layer.format, readOnly: false, backingMode: 'ignore' });
      layers.push(image);
      // Never rewrite a header with a path other than the bytes it stores.
      exactBackingPath(image.backingReference!, layer.path);
    }
    const top = layers[0]!;
    const child = layers[layers.length - 1]!;
    // BASE under the user's backing rules, opened as the chain opens it (raw by default: guarded).
    const openBase = () => openBackingOf(ctx, child, { ...options, readOnly: false }, undefined, layers);
    target = await openBase();

    // The mark (the top's driver's commit marker) counts as an interrupted commit -b only with a journal of
    // blk's that names the top and BASE (a plain commit's journal names the top's own backing file instead).
    const mark = top.commitMark;
    const files = mark !== undefined ? await commitFiles(vfs, file, basePath, child.backingReference!.path) : undefined;
    const resuming =
      files !== undefined && mark?.marked === true && journalMatches(await readJournal(vfs, files), files);
    if (!resuming) {
      // Each link as its overlay's driver compares it (the job never reads mtimes itself). The layers opened
      // without their backing files: the facts of each one below come from the file and the opened layer.
      for (let i = 0; i < layers.length; i++) {
        const below = chain[i + 1]!.path;
        const belowImage = i + 1 < layers.length ? layers[i + 1]! : target;
        const change = commitLinkChange(
          chain[i]!.path,
          layers[i]!,
          below,
          await gatherBackingFacts(vfs, below, belowImage),
        );
        if (change === undefined) continue;
        const msg =
          change.mark !== undefined
            ? `${chain[i]!.path}: the overlay records ${change.mark}, the mark of an interrupted commit, but no commit `
              + `journal of blk's names it and ${basePath}: the header alone proves nothing (${change.now} now)`
            : `${chain[i]!.path}: backing file ${below} was modified after the overlay was made `
              + `(${change.detail}); committing would mix old and new data`;
        if (!options.force) throw new Error(`${msg} (use --force to commit anyway)`);
        warn(`${msg}; committing anyway (--force)`);
      }
    }

    // Survey every layer's own runs; refuse before writing anything if they cannot all fit. Only totals
    // are kept (the copy walks each map again), and the bounded few runs that reach the bytes deciding
    // how BASE probes.
    let total = 0;
    let dataEnd = 0;
    const guardedOf: Range[][] = [];
    for (const layer of layers) {
      const survey = await surveyOwnRuns(layer, target.probeGuardRanges(), signal);
      total += survey.total;
      dataEnd = Math.max(dataEnd, survey.dataEnd);
      guardedOf.push(survey.guarded);
    }
    const grow = target.size < top.size && target.format === 'raw';
    if (dataEnd > target.size && !grow) {
      throw new Error(
        `${file}: the chain holds data up to offset ${dataEnd}, past the end of ${basePath} `
          + `(${target.size} bytes), which is ${target.format} and cannot grow`,
      );
    }
    // Checked before the top is marked: a refused commit leaves every file as it was. The copies in the
    // order they land (the lowest layer first), so the check sees BASE's bytes as they will end up.
    await checkCopiesKeepFormat(target, layers.map((source, i) => ({ source, runs: guardedOf[i]! })).reverse());
    const changesBase = total > 0 || grow;
    if (!changesBase && !resuming) {
      return { backingPath: basePath, copied: 0, emptied: false, warnings };
    }

    // The last point at which a stop leaves every file as it was.
    checkAborted(signal, file);
    // 2. The journal (flushed, its name synced), then the mark: the chain refuses to open normally until
    // step 4 has finished, and every state with the mark has the journal.
    if (files !== undefined && !resuming) {
      await journalThenMark(vfs, files, basePath, target, top, options.syncDirectory);
    }
    if (grow) {
      await target.close();
      target = undefined;
      await growFile(vfs, basePath, top.size);
      target = await openBase();
      // The grown file has a new tail: check it too before copying (the top is marked by now).
      const guard = target.probeGuardRanges();
      const copies: Array<{ source: Image; runs: Range[] }> = [];
      for (const source of [...layers].reverse()) copies.push({ source, runs: await ownRunsTouching(source, guard) });
      await checkCopiesKeepFormat(target, copies);
    }

    // 3. Lowest layer first, each drained before the next: where layers overlap, the upper one's write lands last.
    const progress = progressOf(options, total);
    let done = 0;
    for (let i = layers.length - 1; i >= 0; i--) {
      await copyOwnRuns(layers[i]!, target, chunk, (n) => progress.update((done += n)), signal);
    }
    await target.flush();
    const baseSized = { size: target.size, format: target.format };
    await target.close();
    target = undefined;

    // 4. Each layer records what lies below it now, from BASE's upper neighbour up to the top (the mark, last),
    // where its driver records anything and finds it changed.
    for (let i = layers.length - 1; i >= 0; i--) {
      const layer = layers[i]!;
      const ref = layer.backingReference!;
      const below = chain[i + 1]!.path;
      const facts = await gatherBackingFacts(vfs, below, i === layers.length - 1 ? baseSized : layers[i + 1]!);
      const checks = layer.checkBackingFacts(facts);
      if (checks.length === 0) continue;
      if (facts.fileSize === undefined)
        throw new Error(`${chain[i]!.path}: backing file ${below} vanished during the commit`);
      if (checks.every((c) => c.matches) && layer.commitMark?.marked !== true) continue;
      await layer.setBackingReference(specOf(ref, facts));
      await layer.flush();
    }
    // Recorded everywhere: the journal has done its job (a crash before this leaves a stale one, which proves nothing).
    if (files !== undefined) await removeJournal(vfs, files);
    progress.end();
    return { backingPath: basePath, copied: done, emptied: false, warnings };
  } finally {
    await target?.close().catch(() => undefined);
    for (const layer of layers) await layer.close().catch(() => undefined);
  }
}

function specOf(ref: NonNullable<Image['backingReference']>, facts: BackingFacts): BackingSpec {
  const spec: BackingSpec = { path: ref.path, facts };
  if (ref.format !== undefined) spec.format = ref.format;
  return spec;
}
