/**
 * The commit job (blk commit, qemu-img commit, uml_moo -d): copies every
 * sector the overlay holds into its backing file, then empties the overlay
 * (unless `keep`).
 *
 * Crash safety. The order is:
 *  1. write the commit journal beside the overlay (commit-journal.ts), then
 *     mark the overlay "commit in progress" through its driver's commit
 *     marker (formats that record facts of the backing file a commit
 *     changes, as UML's cow records its mtime; the overlay then refuses to
 *     open normally, which is right: its backing file is about to change
 *     under it);
 *  2. copy the overlay's allocated runs into the backing file (chunk by
 *     chunk), flush it;
 *  3. record the backing file's new facts in the overlay (setBacking, which
 *     clears the mark), flush, remove the journal;
 *  4. discard the overlay's data (unless `keep`), flush.
 * Killed anywhere, a re-run redoes the copy (the same bytes land in the
 * same places), so it is idempotent: re-running is the recovery. The
 * driver compares what the overlay recorded with the backing file
 * (checkBackingFacts): a file modified after the overlay was made (cow: its
 * mtime) is refused unless `force`; the mark counts as an interrupted commit
 * only with a journal that names both files, since anyone can write a mark
 * into a header. A file that is not the one the overlay was made over (cow:
 * another size) is always refused. The job never reads the facts itself.
 *
 * A raw backing file smaller than the overlay is first grown to the
 * overlay's size (as qemu-img commit does), after step 1; a re-run finds it
 * grown already.
 *
 * `signal` stops the job between two of its steps (and between the copy's
 * windows) with a BlockError of kind `aborted`: what it leaves is what a
 * kill at that point leaves, and a re-run finishes the commit.
 *
 * Every file-system action goes through the job's Vfs (portable: the
 * registry and the Vfs are the caller's).
 */
import {
  exactBackingPath,
  gatherBackingFacts,
  isBlockError,
  type BackingFacts,
  type BackingSpec,
  type Image,
} from '@blk/core/portable';
import {
  cacheVfs,
  chainFiles,
  checkAborted,
  checkCopyKeepsFormat,
  COPY_CHUNK,
  jobChunk,
  openBackingOf,
  openOn,
  progressOf,
  refuseTargetInChain,
  type JobContext,
  type JobOptions,
} from './common.js';
import { copyOwnRuns } from './copy.js';
import { ownRunsTouching, surveyOwnRuns } from './own-runs.js';
import {
  commitFiles,
  journalMatches,
  journalPath,
  readJournal,
  removeJournal,
  journalThenMark,
  growFile,
} from './commit-journal.js';

export interface CommitOptions extends JobOptions {
  /** The overlay's format (probed when absent). */
  format?: string;
  /** Keep the overlay's data (-d): do not empty it. */
  keep?: boolean;
  /** Commit even if the backing file was modified after the overlay was made. */
  force?: boolean;
  /** The backing file's format (cow records none; default: the recorded format, else raw). */
  backingFormat?: string;
  /** Called with each warning (also returned in the result); the blk command prints them. */
  onWarning?: (message: string) => void;
  /**
   * Makes the names in a directory durable (fsync of the directory; the blk
   * command passes one). Called after the commit journal is created, so that
   * after a power loss the journal is there wherever the mark is.
   */
  syncDirectory?: ((dir: string) => void | Promise<void>) | undefined;
}

export interface CommitResult {
  /** The backing file committed into, as resolved. */
  backingPath: string;
  /** Bytes copied into the backing file. */
  copied: number;
  /** True when the overlay's data was discarded (false with `keep`, with nothing to copy, or when its format cannot discard). */
  emptied: boolean;
  warnings: string[];
}

/** How a backing file changed since the overlay recorded it, in words (see `commitLinkChange`). */
export interface LinkChange {
  /** `mtime 1700000000`: the file's values now. */
  now: string;
  /** `mtime 1700000000, recorded 1600000000`. */
  detail: string;
  /** The overlay carries its driver's commit mark (`backing mtime 0`): its description. */
  mark?: string;
}

/**
 * The driver's comparison of an overlay's record with its backing file as
 * a commit sees it: a file that is not the one the overlay was made over
 * throws (whatever `force` says); a file modified since is returned (the
 * caller refuses it unless forced or resuming). The job never reads the
 * facts itself.
 */
export function commitLinkChange(
  overlayPath: string,
  overlay: Image,
  backingPath: string,
  facts: BackingFacts,
): LinkChange | undefined {
  const checks = overlay.checkBackingFacts(facts);
  const wrong = checks.find((c) => c.kind === 'identity' && !c.matches);
  if (wrong) {
    const found = wrong.unit !== undefined ? `is ${wrong.found} ${wrong.unit}` : `has ${wrong.what} ${wrong.found}`;
    throw new Error(
      `${overlayPath}: backing file ${backingPath} ${found}, but the overlay records ${wrong.recorded}: `
        + 'it is not the file the overlay was made over; committing into it would corrupt it',
    );
  }
  const changed = checks.filter((c) => c.kind === 'modified' && !c.matches);
  if (changed.length === 0) return undefined;
  const change: LinkChange = {
    now: changed.map((c) => `${c.what} ${c.found}`).join(', '),
    detail: changed.map((c) => `${c.what} ${c.found}, recorded ${c.recorded}`).join('; '),
  };
  const mark = overlay.commitMark;
  if (mark?.marked) change.mark = mark.description;
  return change;
}

/** Commits the overlay `file` into its backing file. Re-running it after an interruption finishes the job. */
export async function commitImage(file: string, options: CommitOptions): Promise<CommitResult> {
  const vfs = cacheVfs(options.vfs, options);
  const ctx: JobContext = { registry: options.registry, vfs };
  const signal = options.signal;
  checkAborted(signal, file);
  const chunk = jobChunk(options, COPY_CHUNK);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    options.onWarning?.(message);
  };
  // The overlay alone: commit reads only the sectors it holds.
  const top = await openOn(ctx, file, {
    format: options.format,
    readOnly: false,
    backingMode: 'ignore',
    backingDevices: options.backingDevices,
  });
  let base: Image | undefined;
  try {
    const ref = top.backingReference;
    if (!ref) throw new Error(`${file}: the image has no backing file to commit into`);
    // Never commit into (or rewrite the header with) a path other than the stored bytes.
    exactBackingPath(ref, file);
    const backingPath = top.info().backing?.resolved;
    if (backingPath === undefined) throw new Error(`${file}: the image has no backing file to commit into`);
    if (!(await vfs.exists(backingPath))) throw new Error(`${file}: backing file ${backingPath} not found`);

    // Never the overlay itself (a chain that loops back to it, by any name).
    await refuseTargetInChain(vfs, backingPath, await chainFiles(vfs, top), 'the overlay being committed');
    // Under the user's backing rules (no FIFO, no device unless allowed), and refused when it is not
    // what it would be written as.
    // -F names its format (cow records none: a cow under a cow).
    const openBase = () => openBackingOf(ctx, top, { ...options, readOnly: false }, options.backingFormat);
    base = await openBase();

    // The driver compares what the overlay recorded with the file (the job never reads mtimes itself).
    // A file that is not the one the overlay was made over is refused always, whatever --force allows.
    const change = commitLinkChange(file, top, backingPath, await gatherBackingFacts(vfs, backingPath, base));
    const mark = top.commitMark;
    const files = mark !== undefined ? await commitFiles(vfs, file, backingPath, ref.path) : undefined;
    // Only blk's own journal, naming these very files, shows the mark to be an interrupted commit of ours.
    const resuming =
      files !== undefined && mark?.marked === true && journalMatches(await readJournal(vfs, files), files);
    if (change !== undefined && !resuming) {
      const msg =
        change.mark !== undefined
          ? `${file}: the overlay records ${change.mark}, the mark of an interrupted commit, but no commit journal `
            + `of blk's (${journalPath(files!)}) names it and backing file ${backingPath}: the header alone proves nothing `
            + `(${change.now} now); committing could write into a file the overlay was never made over`
          : `${file}: backing file ${backingPath} was modified after the overlay was made `
            + `(${change.detail}); committing would mix old and new data`;
      if (!options.force) throw new Error(`${msg} (use --force to commit anyway)`);
      warn(`${msg}; committing anyway (--force)`);
    }

    // Survey what to copy; refuse before writing anything if it cannot all fit. Only totals are
    // kept (the copy walks the map again): a list of runs grows with fragmentation, without bound.
    // The exception, a bounded few: the runs that reach the bytes deciding how the backing file probes.
    const { total, dataEnd, anyRun, guarded } = await surveyOwnRuns(top, base.probeGuardRanges(), signal);
    // A smaller backing file grows to the overlay's size first, as qemu-img commit does. Only a raw
    // file can (its size is its length); other formats fix their size in their headers.
    const grow = base.size < top.size && base.format === 'raw';
    if (dataEnd > base.size && !grow) {
      throw new Error(
        `${file}: the image holds data up to offset ${dataEnd}, past the end of its backing file `
          + `${backingPath} (${base.size} bytes), which is ${base.format} and cannot grow`,
      );
    }

    const spec = (facts: BackingFacts): BackingSpec => {
      const s: BackingSpec = { path: ref.path, facts };
      if (ref.format !== undefined) s.format = ref.format;
      return s;
    };
    // Checked before the overlay is marked: a refused commit leaves both files as they were.
    await checkCopyKeepsFormat(base, top, guarded);
    const changesBase = anyRun || grow;
    // The last point at which a stop leaves both files as they were.
    checkAborted(signal, file);
    if (files !== undefined && !resuming && changesBase) {
      // The journal first (flushed), then the mark: every state with the mark has the journal.
      await journalThenMark(vfs, files, backingPath, base, top, options.syncDirectory);
    }
    if (grow) {
      await base.close();
      base = undefined;
      await growFile(vfs, backingPath, top.size);
      base = await openBase();
      // The grown file has a new tail: check it too before copying (the overlay is marked by now).
      await checkCopyKeepsFormat(base, top, await ownRunsTouching(top, base.probeGuardRanges()));
    }

    const progress = progressOf(options, total);
    let done = 0;
    await copyOwnRuns(top, base, chunk, (n) => progress.update((done += n)), signal);
    // Copied: the rest (flush, record, empty) is short and finishes even if the signal fires now.
    await base.flush();
    const sized = { size: base.size, format: base.format };
    await base.close();
    base = undefined;

    // The backing file changed: record its new facts (clearing the mark) so that the overlay still opens.
    if (mark !== undefined) {
      const after = await gatherBackingFacts(vfs, backingPath, sized);
      if (after.fileSize !== undefined && (resuming || changesBase)) {
        // (stat answered: the file is there)
        await top.setBackingReference(spec(after));
        await top.flush();
      }
      // Recorded: the journal has done its job (a crash before this leaves a stale one, which proves nothing).
      if (files !== undefined) await removeJournal(vfs, files);
    }

    let emptied = false;
    if (!options.keep && anyRun) {
      try {
        // Emptied, not discarded: a qcow2 v3 discard leaves zero clusters that would hide what was committed.
        await top.makeEmpty();
        await top.flush();
        emptied = true;
      } catch (err) {
        if (!isBlockError(err, 'not-supported')) throw err;
        warn(
          `${file}: committed, but format ${top.format} cannot be emptied; its data stays (identical to the backing file)`,
        );
      }
    }
    progress.end();
    return { backingPath, copied: done, emptied, warnings };
  } finally {
    await base?.close().catch(() => undefined);
    await top.close();
  }
}
