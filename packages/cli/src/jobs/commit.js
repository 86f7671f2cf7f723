/**
 * The commit job (blk commit, qemu-img commit, uml_moo -d): copies every
 * sector the overlay holds into its backing file, then empties the overlay
 * (unless `keep`).
 *
 * Crash safety. The order is:
 *  1. write the commit journal beside the overlay (commit-journal.ts), then
 *     mark the overlay "commit in progress" by recording backing mtime 0
 *     (formats that record the backing file's mtime; the overlay then
 *     refuses to open normally, which is right: its backing file is about
 *     to change under it);
 *  2. copy the overlay's allocated runs into the backing file (chunk by
 *     chunk), flush it;
 *  3. record the backing file's new size and mtime in the overlay, flush,
 *     remove the journal;
 *  4. discard the overlay's data (unless `keep`), flush.
 * Killed anywhere, a re-run redoes the copy (the same bytes land in the
 * same places), so it is idempotent: re-running is the recovery. A backing
 * file whose mtime differs from the recorded one (it was modified after the
 * overlay was made) is refused unless `force`; the mark (mtime 0) counts as
 * an interrupted commit only with a journal that names both files, since
 * anyone can write 0 into a header. A backing file whose size differs from
 * the recorded one is always refused.
 *
 * A raw backing file smaller than the overlay is first grown to the
 * overlay's size (as qemu-img commit does), after step 1; a re-run finds it
 * grown already.
 *
 * Every file-system action goes through the job's Vfs.
 */
import { exactBackingPath, isBlockError } from '@blk/core';
import { cacheVfs, chainFiles, checkCopyKeepsFormat, COPY_CHUNK, jobChunk, jobVfs, mtimeOf, openBackingOf, openOn, progressOf, refuseTargetInChain, } from './common.js';
import { copyOwnRuns, ownRunsTouching, surveyOwnRuns } from './own-runs.js';
import { commitFiles, journalMatches, journalPath, readJournal, removeJournal, writeJournal } from './commit-journal.js';
/** The mtime recorded while a commit is under way. */
export const COMMIT_IN_PROGRESS_MTIME = 0;
/** Commits the overlay `file` into its backing file. Re-running it after an interruption finishes the job. */
export async function commitImage(file, options = {}) {
    const vfs = cacheVfs(jobVfs(options), options);
    const chunk = jobChunk(options, COPY_CHUNK);
    const warnings = [];
    const warn = (message) => {
        warnings.push(message);
        options.onWarning?.(message);
    };
    // The overlay alone: commit reads only the sectors it holds.
    const top = await openOn(vfs, file, {
        format: options.format, readOnly: false, backingMode: 'ignore', backingDevices: options.backingDevices,
    });
    let base;
    try {
        const ref = top.backingReference;
        if (!ref)
            throw new Error(`${file}: the image has no backing file to commit into`);
        // Never commit into (or rewrite the header with) a path other than the stored bytes.
        exactBackingPath(ref, file);
        const backingPath = top.info().backing?.resolved;
        if (backingPath === undefined)
            throw new Error(`${file}: the image has no backing file to commit into`);
        if (!(await vfs.exists(backingPath)))
            throw new Error(`${file}: backing file ${backingPath} not found`);
        // Never the overlay itself (a chain that loops back to it, by any name).
        await refuseTargetInChain(vfs, backingPath, await chainFiles(vfs, top), 'the overlay being committed');
        // Under the user's backing rules (no FIFO, no device unless allowed), and refused when it is not
        // what it would be written as.
        // -F names its format (cow records none: a cow under a cow).
        const openBase = () => openBackingOf(vfs, top, { ...options, readOnly: false }, options.backingFormat);
        base = await openBase();
        const expect = ref.expect;
        // The size the overlay recorded is that of the file it was made over (UML refuses any other):
        // checked always, whatever the header's mtime says and whatever --force allows.
        if (expect?.size !== undefined && expect.size !== base.size) {
            throw new Error(`${file}: backing file ${backingPath} is ${base.size} bytes, but the overlay records ${expect.size}: `
                + 'it is not the file the overlay was made over; committing into it would corrupt it');
        }
        const recorded = expect?.mtimeSec;
        const now = await mtimeOf(vfs, backingPath);
        const files = recorded !== undefined ? await commitFiles(vfs, file, backingPath, ref.path) : undefined;
        // Only blk's own journal, naming these very files, shows the mark (mtime 0) to be an interrupted commit of ours.
        const resuming = files !== undefined && recorded === COMMIT_IN_PROGRESS_MTIME
            && journalMatches(await readJournal(vfs, files), files);
        if (recorded !== undefined && !resuming && now !== undefined && recorded !== now % 2 ** 32) {
            const msg = recorded === COMMIT_IN_PROGRESS_MTIME
                ? `${file}: the overlay records backing mtime 0, the mark of an interrupted commit, but no commit journal `
                    + `of blk's (${journalPath(files)}) names it and backing file ${backingPath}: the header alone proves nothing `
                    + `(mtime ${now} now); committing could write into a file the overlay was never made over`
                : `${file}: backing file ${backingPath} was modified after the overlay was made `
                    + `(mtime ${now}, recorded ${recorded}); committing would mix old and new data`;
            if (!options.force)
                throw new Error(`${msg} (use --force to commit anyway)`);
            warn(`${msg}; committing anyway (--force)`);
        }
        // Survey what to copy; refuse before writing anything if it cannot all fit. Only totals are
        // kept (the copy walks the map again): a list of runs grows with fragmentation, without bound.
        // The exception, a bounded few: the runs that reach the bytes deciding how the backing file probes.
        const { total, dataEnd, anyRun, guarded } = await surveyOwnRuns(top, base.probeGuardRanges());
        // A smaller backing file grows to the overlay's size first, as qemu-img commit does. Only a raw
        // file can (its size is its length); other formats fix their size in their headers.
        const grow = base.size < top.size && base.format === 'raw';
        if (dataEnd > base.size && !grow) {
            throw new Error(`${file}: the image holds data up to offset ${dataEnd}, past the end of its backing file `
                + `${backingPath} (${base.size} bytes), which is ${base.format} and cannot grow`);
        }
        let baseSize = grow ? top.size : base.size;
        const spec = (mtime) => {
            const s = { path: ref.path, size: baseSize, mtimeSec: mtime };
            if (ref.format !== undefined)
                s.format = ref.format;
            return s;
        };
        // Checked before the overlay is marked: a refused commit leaves both files as they were.
        await checkCopyKeepsFormat(base, top, guarded);
        const changesBase = anyRun || grow;
        if (files !== undefined && !resuming && changesBase) {
            // The journal first (flushed), then the mark: every state with the mark has the journal.
            await writeJournal(vfs, files, { size: base.size, mtimeSec: now ?? 0 });
            await options.syncDirectory?.(vfs.dirname(journalPath(files)));
            await top.setBackingReference(spec(COMMIT_IN_PROGRESS_MTIME));
            await top.flush();
        }
        if (grow) {
            await base.close();
            base = undefined;
            const storage = await vfs.open(backingPath, { readOnly: false });
            try {
                await storage.truncate(baseSize);
                await storage.flush();
            }
            finally {
                await storage.close();
            }
            base = await openBase();
            baseSize = base.size;
            // The grown file has a new tail: check it too before copying (the overlay is marked by now).
            await checkCopyKeepsFormat(base, top, await ownRunsTouching(top, base.probeGuardRanges()));
        }
        const progress = progressOf(options, total);
        let done = 0;
        await copyOwnRuns(top, base, chunk, (n) => progress.update(done += n));
        await base.flush();
        await base.close();
        base = undefined;
        // The backing file changed: record its new mtime so that the overlay still opens.
        if (recorded !== undefined) {
            const after = await mtimeOf(vfs, backingPath);
            if (after !== undefined && (resuming || changesBase)) {
                await top.setBackingReference(spec(after));
                await top.flush();
            }
            // Recorded: the journal has done its job (a crash before this leaves a stale one, which proves nothing).
            if (files !== undefined)
                await removeJournal(vfs, files);
        }
        let emptied = false;
        if (!options.keep && anyRun) {
            try {
                await top.discard(0, top.size);
                await top.flush();
                emptied = true;
            }
            catch (err) {
                if (!isBlockError(err, 'not-supported'))
                    throw err;
                warn(`${file}: committed, but format ${top.format} cannot be emptied; its data stays (identical to the backing file)`);
            }
        }
        progress.end();
        return { backingPath, copied: done, emptied, warnings };
    }
    finally {
        await base?.close().catch(() => undefined);
        await top.close();
    }
}
