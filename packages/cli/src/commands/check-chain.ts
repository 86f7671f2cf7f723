/**
 * The backing-chain part of blk check: each backing file must exist, open
 * under the user's rules, not loop back, and still match what its overlay
 * recorded (as the overlay's driver compares it); an interrupted commit is
 * told from a foreign mark by blk's commit journal.
 */
import * as fs from 'node:fs';
import {
  BlockError,
  backingMismatchText,
  exactBackingPath,
  gatherBackingFacts,
  isBlockError,
  type BackingReference,
  type Image,
} from '@blk/core';
import { rulesOf } from '../common.js';
import { commitCommand, describeError, warn } from '../errors.js';
import { openBackingOf } from '../jobs/common.js';
import { commitFiles, journalMatches, readJournal } from '@blk/jobs';
import { hostVfs, registry } from '../images.js';
import { isRemoteUrl } from '@blk/http';
import type { CheckOpts } from './check.js';
import type { CheckResult } from './check-report.js';

const MAX_DEPTH = 16;

/** Each backing file must exist, open, and match what its overlay recorded: problems go to `r`. */
export async function checkChain(
  top: Image,
  r: Pick<CheckResult, 'corruptions' | 'problems'>,
  opts: CheckOpts,
): Promise<void> {
  const seen = new Set<string>([realpath(top.path)]);
  const topId = fileId(top.path);
  if (topId !== undefined) seen.add(topId);
  let layer: Image = top;
  let owned: Image | undefined;
  try {
    for (let depth = 1; ; depth++) {
      const ref = layer.backingReference;
      if (!ref) return;
      const resolved = layer.info().backing?.resolved;
      if (resolved === undefined) {
        // The stored path has no exact text form (not UTF-8): it cannot be followed, and is reported.
        r.corruptions += 1;
        r.problems.push(`ERROR backing file of ${layer.path}: ${unresolvable(ref, layer.path)}`);
        return;
      }
      const where = `backing file ${resolved} (of ${layer.path})`;
      if (depth > MAX_DEPTH) {
        r.corruptions += 1;
        r.problems.push(`ERROR backing chain: deeper than ${MAX_DEPTH} levels`);
        return;
      }
      if (isRemoteUrl(resolved) ? !(await hostVfs().exists(resolved)) : !fs.existsSync(resolved)) {
        r.corruptions += 1;
        r.problems.push(`ERROR ${where}: not found`);
        return;
      }
      const real = realpath(resolved);
      // By path and by device and inode (a hard link is the same file under another path).
      const id = fileId(resolved);
      if (seen.has(real) || (id !== undefined && seen.has(id))) {
        r.corruptions += 1;
        r.problems.push(`ERROR ${where}: the backing chain loops back to it`);
        return;
      }
      seen.add(real);
      if (id !== undefined) seen.add(id);
      let next: Image;
      try {
        // As a chain opens it: under the user's rules, and not as raw if it carries another format's header.
        // -F names the top image's backing file; deeper files open as their images record, else raw.
        next = await openBackingOf(
          hostVfs(),
          layer,
          {
            readOnly: true,
            backingProbe: opts.backingProbe,
            backingMode: 'ignore',
            forceShare: opts.forceShare,
            onWarning: warn,
            ...rulesOf(opts),
          },
          depth === 1 ? opts.backingFormat : undefined,
        );
      } catch (err) {
        if (!isBlockError(err)) throw err;
        r.corruptions += 1;
        // A format blk reads (a cow under a cow) that nobody named: the line says which option of
        // check names it, at this level of the chain (a guest's disguise reads the same; it stays an error).
        const named =
          err.kind === 'backing-format' && err.format !== undefined && registry.get(err.format) !== undefined;
        r.problems.push(
          `ERROR ${where}: cannot be opened: ${named ? describeError(Object.assign(err, { depth })) : err.message}`,
        );
        return;
      }
      // `layer` stays open until its record is compared (the previous `owned`, closed after).
      const previous = owned;
      owned = next;
      try {
        // The overlay's driver compares what it recorded with the file; check only gathers the facts and words them.
        const facts = await gatherBackingFacts(hostVfs(), resolved, next, { lenient: true });
        for (const check of layer.checkBackingFacts(facts)) {
          if (check.matches) continue;
          r.corruptions += 1;
          if (check.kind === 'identity') {
            r.problems.push(`ERROR ${where}: ${backingMismatchText(check, 'the image')}`);
            continue;
          }
          // The mark is an interrupted commit only if blk's own journal says so: anyone can write one into a header.
          const marked = layer.commitMark?.marked === true;
          const files =
            marked && depth === 1 ? await commitFiles(hostVfs(), layer.path, resolved, ref.path) : undefined;
          const interrupted = files !== undefined && journalMatches(await readJournal(hostVfs(), files), files);
          r.problems.push(
            interrupted
              ? `ERROR ${where}: a commit into it was interrupted; finish it with: ${commitCommand(layer.path)}`
              : `ERROR ${where}: ${backingMismatchText(check, 'the image')} `
                  + (marked
                    ? "(the mark of an interrupted commit, but no commit journal of blk's names these files: not a commit of blk's)"
                    : '(the backing file was modified after the overlay was made)'),
          );
        }
      } finally {
        await previous?.close().catch(() => undefined);
      }
      layer = next;
    }
  } finally {
    await owned?.close().catch(() => undefined);
  }
}

/** Why a backing reference has no resolved path (the core's refusal of a path that is not UTF-8). */
function unresolvable(ref: BackingReference, path: string): string {
  try {
    exactBackingPath(ref, path);
    return 'cannot be resolved';
  } catch (err) {
    return err instanceof BlockError ? err.detail : String(err);
  }
}

function realpath(p: string): string {
  if (isRemoteUrl(p)) return p;
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

function fileId(p: string): string | undefined {
  if (isRemoteUrl(p)) return undefined;
  try {
    const st = fs.statSync(p, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}
