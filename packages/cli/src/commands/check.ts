/**
 * blk check: qemu-img check. Validates what the public API can see:
 * - the header (the driver's open validates it; a header it rejects as
 *   invalid or truncated is a corruption);
 * - every allocated run against the file's length (data said to be present
 *   must lie inside the file);
 * - the backing chain: each backing file exists, opens, and still matches
 *   what its overlay recorded (as the overlay's driver compares it: cow's
 *   size and mtime); no loops.
 * - the format's own metadata, where its driver can check it
 *   (`DriverImage.check`; cow: data past EOF, bytes past the data area,
 *   stray bitmap bits), repaired with -r as the driver knows how.
 * Exit codes as qemu-img check: 0 no errors, 1 check not completed
 * (internal/I/O errors), 2 corruptions, 3 leaks, 63 format cannot be checked.
 * With -r, the codes are those of the second check run after the repair.
 */
import * as fs from 'node:fs';
import {
  BlockError, backingMismatchText, exactBackingPath, gatherBackingFacts, isBlockError, type BackingReference, type Image, type RepairRequest,
} from '@blk/core';
import { openCli, rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError, commitCommand, describeError, warn } from '../errors.js';
import { openBackingOf } from '../jobs/common.js';
import { checkAllocation as checkAllocationJob } from '@blk/jobs';
import { commitFiles, journalMatches, readJournal } from '@blk/jobs';
import { hostVfs, registry } from '../images.js';
import { cFixed } from '../format.js';
import { printable } from '../printable.js';
import { createProgress } from '../progress.js';
import { toQemuJson, type QValue } from '../qjson.js';

export interface CheckOpts extends BackingRuleFlags {
  format?: string;
  output: 'human' | 'json';
  progress?: boolean;
  quiet?: boolean;
  backingProbe?: boolean;
  /** -r: leaks, or all (leaks and corruptions). */
  repair?: string;
  /** -F: the backing file's format (cow records none). */
  backingFormat?: string;
  /** -U: read the image even while another process writes it (not with -r). */
  forceShare?: boolean;
}

interface Result {
  format: string;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  checkErrors: number;
  totalClusters: number;
  allocatedClusters: number;
  problems: string[];
}

const CHAIN_NOT_REPAIRED = ' (not repaired: the backing file is not part of this image; restore it, or point the image '
  + 'at the right one with blk rebase -u)';
/** Why check -r leaves a header it cannot open as it is. */
const NOT_REPAIRABLE: Record<string, string> = {
  'invalid-header': ' (not repairable: the header says where everything is, and a wrong value cannot be guessed right)',
  truncated: ' (not repairable: the file ends inside its header or bitmap, and what the missing bytes said cannot be known)',
};
const HEADER_KINDS = new Set(['invalid-header', 'truncated']);
const MAX_DEPTH = 16;

const NO_REPAIR: RepairRequest = { leaks: false, corruptions: false };

/** qemu-img's -r values. */
function parseRepair(value: string | undefined): RepairRequest {
  if (value === undefined) return NO_REPAIR;
  if (value === 'leaks') return { leaks: true, corruptions: false };
  if (value === 'all') return { leaks: true, corruptions: true };
  throw new UsageError(`Unknown option value for -r (expecting 'leaks' or 'all'): ${value}`);
}

export async function check(file: string, opts: CheckOpts): Promise<number> {
  const repair = parseRepair(opts.repair);
  let r = await runCheck(file, opts, repair);
  if (r === 'unsupported') {
    // Nothing to check in a raw image; qemu-img says so with exit code 63.
    process.stderr.write(`blk: ${printable(file)}: This image format does not support checks\n`);
    return 63;
  }
  // Problems name backing files and quote errors: paths from images, escaped.
  if (!opts.quiet) for (const p of r.problems) process.stderr.write(`${printable(p)}\n`);
  if (r.corruptionsFixed || r.leaksFixed) {
    if (!opts.quiet && opts.output === 'human') {
      process.stdout.write('The following inconsistencies were found and repaired:\n\n'
        + `    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\n`
        + 'Double checking the fixed image now...\n');
    }
    const fixed = { corruptionsFixed: r.corruptionsFixed, leaksFixed: r.leaksFixed };
    const again = await runCheck(file, opts, NO_REPAIR);
    if (again === 'unsupported') throw new Error(`${file}: the format stopped supporting checks between two runs`);
    r = { ...again, ...fixed };
    if (!opts.quiet) for (const p of r.problems) process.stderr.write(`${printable(p)}\n`);
  }

  if (!opts.quiet) {
    if (opts.output === 'json') {
      const obj: { [k: string]: QValue | undefined } = {
        filename: file,
        format: r.format,
        'check-errors': r.checkErrors,
      };
      if (r.corruptions) obj.corruptions = r.corruptions;
      if (r.leaks) obj.leaks = r.leaks;
      if (r.corruptionsFixed) obj['corruptions-fixed'] = r.corruptionsFixed;
      if (r.leaksFixed) obj['leaks-fixed'] = r.leaksFixed;
      if (r.totalClusters) obj['total-clusters'] = r.totalClusters;
      if (r.allocatedClusters) obj['allocated-clusters'] = r.allocatedClusters;
      process.stdout.write(`${toQemuJson(obj)}\n`);
    } else {
      process.stdout.write(humanReport(r));
    }
  }
  if (r.checkErrors) return 1;
  if (r.corruptions) return 2;
  if (r.leaks) return 3;
  return 0;
}

/** One pass of the check (repairing what `repair` asks); 'unsupported' for formats with nothing to check. */
async function runCheck(file: string, opts: CheckOpts, repair: RepairRequest): Promise<Result | 'unsupported'> {
  const r: Result = {
    format: opts.format ?? 'unknown',
    corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0, checkErrors: 0, totalClusters: 0, allocatedClusters: 0, problems: [],
  };
  const writable = repair.leaks || repair.corruptions;
  let image: Image | undefined;
  try {
    image = await openCli(file, {
      format: opts.format, readOnly: !writable, backingMode: 'ignore', forceShare: opts.forceShare, onWarning: warn,
    });
  } catch (err) {
    if (!isBlockError(err) || !HEADER_KINDS.has(err.kind)) throw err;
    r.format = err.driver ?? r.format;
    r.corruptions += 1;
    r.problems.push(`ERROR header: ${err.message}${writable ? NOT_REPAIRABLE[err.kind] ?? '' : ''}`);
  }
  if (image && image.format === 'raw') {
    await image.close().catch(() => undefined);
    return 'unsupported';
  }
  if (image) {
    try {
      r.format = image.format;
      // The driver checks its own allocation against the file (and repairs it) where it can.
      const before = r.problems.length;
      await checkAllocation(image, r, Boolean(opts.progress) && !opts.quiet && opts.output === 'human', !image.checkable);
      if (writable) explainSince(r, before, ` (not repaired: format ${image.format} has no repair)`);
      const own = await image.check(repair);
      if (own) {
        r.corruptions += own.corruptions;
        r.leaks += own.leaks;
        r.corruptionsFixed += own.corruptionsFixed;
        r.leaksFixed += own.leaksFixed;
        r.problems.push(...own.messages);
      }
      const chainBefore = r.problems.length;
      await checkChain(image, r, opts);
      // What check -r cannot repair: the backing chain is outside this image.
      if (writable) explainSince(r, chainBefore, CHAIN_NOT_REPAIRED);
    } catch (err) {
      // Not a problem of the image: the command line must name a backing format (the advice says how).
      if (!isBlockError(err) || err.kind === 'backing-format') throw err;
      r.checkErrors += 1;
      r.problems.push(`ERROR while checking: ${err.message}`);
    } finally {
      await image.close().catch(() => undefined);
    }
  }
  return r;
}

/** Adds why check -r left them to the problems found since index `from`. */
function explainSince(r: Result, from: number, why: string): void {
  for (let i = from; i < r.problems.length; i++) r.problems[i] += why;
}

function humanReport(r: Result): string {
  let out = '';
  if (!r.corruptions && !r.leaks && !r.checkErrors) out += 'No errors were found on the image.\n';
  if (r.corruptions) {
    out += `\n${r.corruptions} errors were found on the image.\n`
      + 'Data may be corrupted, or further writes to the image may corrupt it.\n';
  }
  if (r.leaks) {
    out += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
  }
  if (r.checkErrors) out += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
  if (r.totalClusters && r.allocatedClusters) {
    out += `${r.allocatedClusters}/${r.totalClusters} = ${cFixed((r.allocatedClusters / r.totalClusters) * 100, 2)}% allocated, `
      + '0.00% fragmented, 0.00% compressed clusters\n';
  }
  return out;
}

/**
 * Counts allocated sectors and, with `checkPastEof` (for formats whose driver
 * has no check of its own), finds allocated runs whose data lies past the end
 * of the file. Units: the image's sectors.
 */
async function checkAllocation(image: Image, r: Result, showProgress: boolean, checkPastEof: boolean): Promise<void> {
  const fileSize = fs.statSync(image.path).size;
  const progress = createProgress(showProgress, image.size);
  const found = await checkAllocationJob(image, { fileSize, checkPastEof, onProgress: (done) => progress.update(done) });
  r.totalClusters = found.totalClusters;
  r.allocatedClusters += found.allocatedClusters;
  r.corruptions += found.corruptions;
  r.problems.push(...found.problems);
  progress.done();
}

/** Each backing file must exist, open, and match what its overlay recorded. */
async function checkChain(top: Image, r: Result, opts: CheckOpts): Promise<void> {
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
      if (!fs.existsSync(resolved)) {
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
        next = await openBackingOf(hostVfs(), layer, {
          readOnly: true, backingProbe: opts.backingProbe, backingMode: 'ignore', forceShare: opts.forceShare, onWarning: warn,
          ...rulesOf(opts),
        }, depth === 1 ? opts.backingFormat : undefined);
      } catch (err) {
        if (!isBlockError(err)) throw err;
        r.corruptions += 1;
        // A format blk reads (a cow under a cow) that nobody named: the line says which option of
        // check names it, at this level of the chain (a guest's disguise reads the same; it stays an error).
        const named = err.kind === 'backing-format' && err.format !== undefined && registry.get(err.format) !== undefined;
        r.problems.push(`ERROR ${where}: cannot be opened: ${named ? describeError(Object.assign(err, { depth })) : err.message}`);
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
          const files = marked && depth === 1 ? await commitFiles(hostVfs(), layer.path, resolved, ref.path) : undefined;
          const interrupted = files !== undefined && journalMatches(await readJournal(hostVfs(), files), files);
          r.problems.push(interrupted
            ? `ERROR ${where}: a commit into it was interrupted; finish it with: ${commitCommand(layer.path)}`
            : `ERROR ${where}: ${backingMismatchText(check, 'the image')} `
              + (marked
                ? '(the mark of an interrupted commit, but no commit journal of blk\'s names these files: not a commit of blk\'s)'
                : '(the backing file was modified after the overlay was made)'));
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
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

function fileId(p: string): string | undefined {
  try {
    const st = fs.statSync(p, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

