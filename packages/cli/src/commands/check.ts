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
 *
 * This file runs the passes (and the repair); check-chain.ts checks the
 * backing chain, check-report.ts prints the result.
 */
import { isBlockError, type Image, type RepairRequest } from '@blk/core';
import { openCli, type BackingRuleFlags } from '../common.js';
import { hostVfs } from '../images.js';
import { UsageError, warn } from '../errors.js';
import { checkAllocation as checkAllocationJob } from '@blk/jobs';
import { printable } from '../printable.js';
import { createProgress } from '../progress.js';
import { checkChain } from './check-chain.js';
import { sourceCacheArg } from './convert.js';
import { humanReport, jsonReport, type CheckResult } from './check-report.js';
import { nameAsGiven } from '../image-operands.js';

export interface CheckOpts extends BackingRuleFlags {
  /** -T: cache mode of the image (checked only). */
  sourceCache?: string;
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

const CHAIN_NOT_REPAIRED =
  ' (not repaired: the backing file is not part of this image; restore it, or point the image '
  + 'at the right one with blk rebase -u)';
/** Why check -r leaves a header it cannot open as it is. */
const NOT_REPAIRABLE: Record<string, string> = {
  'invalid-header': ' (not repairable: the header says where everything is, and a wrong value cannot be guessed right)',
  truncated:
    ' (not repairable: the file ends inside its header or bitmap, and what the missing bytes said cannot be known)',
};
const HEADER_KINDS = new Set(['invalid-header', 'truncated']);

const NO_REPAIR: RepairRequest = { leaks: false, corruptions: false };

/** qemu-img's -r values. */
function parseRepair(value: string | undefined): RepairRequest {
  if (value === undefined) return NO_REPAIR;
  if (value === 'leaks') return { leaks: true, corruptions: false };
  if (value === 'all') return { leaks: true, corruptions: true };
  throw new UsageError(`Unknown option value for -r (expecting 'leaks' or 'all'): ${value}`);
}

export async function check(file: string, opts: CheckOpts): Promise<number> {
  sourceCacheArg(opts.sourceCache);
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
      process.stdout.write(
        'The following inconsistencies were found and repaired:\n\n'
          + `    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\n`
          + 'Double checking the fixed image now...\n',
      );
    }
    const fixed = { corruptionsFixed: r.corruptionsFixed, leaksFixed: r.leaksFixed };
    const again = await runCheck(file, opts, NO_REPAIR);
    if (again === 'unsupported') throw new Error(`${file}: the format stopped supporting checks between two runs`);
    r = { ...again, ...fixed };
    if (!opts.quiet) for (const p of r.problems) process.stderr.write(`${printable(p)}\n`);
  }

  if (!opts.quiet) process.stdout.write(opts.output === 'json' ? jsonReport(nameAsGiven(file), r) : humanReport(r));
  if (r.checkErrors) {
    if (!opts.quiet) process.stderr.write('blk: Check failed\n');
    return 1;
  }
  if (r.corruptions) return 2;
  if (r.leaks) return 3;
  return 0;
}

/** One pass of the check (repairing what `repair` asks); 'unsupported' for formats with nothing to check. */
async function runCheck(file: string, opts: CheckOpts, repair: RepairRequest): Promise<CheckResult | 'unsupported'> {
  const r: CheckResult = {
    format: opts.format ?? 'unknown',
    corruptions: 0,
    leaks: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    checkErrors: 0,
    totalClusters: 0,
    allocatedClusters: 0,
    problems: [],
  };
  const writable = repair.leaks || repair.corruptions;
  let image: Image | undefined;
  try {
    image = await openCli(file, {
      format: opts.format,
      readOnly: !writable,
      backingMode: 'ignore',
      forceShare: opts.forceShare,
      onWarning: warn,
      // -r: the image opens as it is (a dirty or corrupt-flagged qcow2 too), for the check to repair.
      ...(writable ? { forCheck: true } : {}),
    });
  } catch (err) {
    if (!isBlockError(err) || !HEADER_KINDS.has(err.kind)) throw err;
    r.format = err.driver ?? r.format;
    r.corruptions += 1;
    r.problems.push(`ERROR header: ${err.message}${writable ? (NOT_REPAIRABLE[err.kind] ?? '') : ''}`);
  }
  if (image && image.format === 'raw') {
    await image.close().catch(() => undefined);
    return 'unsupported';
  }
  if (image) {
    try {
      r.format = image.format;
      // The driver checks its own metadata (and repairs it) where it can; a driver that counts
      // its own clusters (qcow2) replaces the per-sector walk, which would stop at the first
      // corrupt table entry it met.
      const own = await image.check(repair);
      if (own?.stats === undefined) {
        const before = r.problems.length;
        await checkAllocation(
          image,
          r,
          Boolean(opts.progress) && !opts.quiet && opts.output === 'human',
          !image.checkable,
        );
        if (writable) explainSince(r, before, ` (not repaired: format ${image.format} has no repair)`);
      }
      if (own) {
        r.corruptions += own.corruptions;
        r.leaks += own.leaks;
        r.corruptionsFixed += own.corruptionsFixed;
        r.leaksFixed += own.leaksFixed;
        r.checkErrors += own.checkErrors ?? 0;
        r.problems.push(...own.messages);
        if (own.stats) {
          r.totalClusters = own.stats.totalClusters;
          r.allocatedClusters = own.stats.allocatedClusters;
          r.fragmentedClusters = own.stats.fragmentedClusters;
          r.compressedClusters = own.stats.compressedClusters;
          r.imageEndOffset = own.stats.imageEndOffset;
        }
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
function explainSince(r: CheckResult, from: number, why: string): void {
  for (let i = from; i < r.problems.length; i++) r.problems[i] += why;
}

/**
 * Counts allocated sectors and, with `checkPastEof` (for formats whose driver
 * has no check of its own), finds allocated runs whose data lies past the end
 * of the file. Units: the image's sectors.
 */
async function checkAllocation(
  image: Image,
  r: CheckResult,
  showProgress: boolean,
  checkPastEof: boolean,
): Promise<void> {
  const fileSize = (await hostVfs().stat(image.path)).size;
  const progress = createProgress(showProgress, image.size);
  const found = await checkAllocationJob(image, {
    fileSize,
    checkPastEof,
    onProgress: (done) => progress.update(done),
  });
  r.totalClusters = found.totalClusters;
  r.allocatedClusters += found.allocatedClusters;
  r.corruptions += found.corruptions;
  r.problems.push(...found.problems);
  progress.done();
}
