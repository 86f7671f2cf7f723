/**
 * blk convert: qemu-img convert (one source), sparse, written under a
 * temporary name. The job is in ../jobs/convert.ts; this module parses the
 * options, removes the temporary file when interrupted by a signal, and syncs
 * DST's directory after the rename.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { removeTempOnInterrupt, rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError, warn } from '../errors.js';
import { registry } from '../images.js';
import { hostCopyVfs } from '../host-io.js';
import { parseCacheMode } from '../jobs/common.js';
import { convertImage } from '../jobs/convert.js';
import { formatOptionHelp, parseCreateOptions } from '../options.js';
import { progressListener } from '../progress.js';
import { parseSize, parseUnsigned } from '../size.js';

export interface ConvertOpts extends BackingRuleFlags {
  /** -T: cache mode of the source images (checked only). */
  sourceCache?: string;
  format?: string;
  /** -l: read the source as it was at this internal snapshot. */
  snapshot?: string;
  /** -O; raw when absent (then the output is guarded as a probed raw image would be; with -n: DST's format is probed). */
  outputFormat?: string;
  /** false with -n (commander's --no-create). */
  create: boolean;
  targetIsZero?: boolean;
  /** -m */
  parallel?: string;
  /** -W */
  outOfOrder?: boolean;
  options: string[];
  backing?: string;
  backingFormat?: string;
  sparseSize: string;
  progress?: boolean;
  quiet?: boolean;
  backingProbe?: boolean;
  /** -t: cache mode of DST (writeback, the default, flushes; unsafe never does). */
  cache?: string;
  /** --source-backing-format: the format of SRC's backing file (cow records none). */
  sourceBackingFormat?: string;
  /** -c: store the output's clusters compressed (qcow2). */
  compress?: boolean;
  /** -U: read SRC even while another process writes it. */
  forceShare?: boolean;
}

export async function convert(src: string, dst: string, opts: ConvertOpts): Promise<number> {
  sourceCacheArg(opts.sourceCache);
  const inPlace = !opts.create;
  const outFormat = opts.outputFormat ?? 'raw';
  if (opts.targetIsZero && !inPlace) throw new UsageError('--target-is-zero requires use of -n flag');
  if (inPlace && opts.options.length > 0) throw new UsageError('-o has no effect when skipping image creation');
  if (inPlace && opts.outputFormat !== undefined) registry.require(outFormat, dst);
  if (!inPlace && !registry.require(outFormat, dst).create)
    throw new Error(`${dst}: format ${outFormat} cannot create images`);
  if (opts.compress && (inPlace || opts.backing !== undefined))
    throw new UsageError('-c (compressed output) cannot be used with -n or -B');
  const parallel = opts.parallel === undefined ? undefined : parseUnsigned(opts.parallel, 16);
  if (parallel === 0 || (opts.parallel !== undefined && parallel === undefined)) {
    throw new UsageError('Invalid number of coroutines. Allowed number of coroutines is between 1 and 16');
  }
  const o = parseCreateOptions(outFormat, opts.options, dst);
  if (o.help) {
    process.stdout.write(formatOptionHelp(outFormat));
    return 0;
  }
  const cache = cacheArg(opts.cache);
  const sparse = parseSize(opts.sparseSize, 'sparse size');
  if (sparse % 512 !== 0 || sparse > 16 * 1024 * 1024) {
    throw new UsageError(
      `invalid sparse size ${opts.sparseSize}: use a multiple of 512 up to 16M (0 writes every byte)`,
    );
  }
  if (o.size !== undefined) throw new UsageError('convert takes the size from the source; -o size= is not allowed');
  const backingArg = opts.backing ?? o.backingFile;
  const backingFormat = opts.backingFormat ?? o.backingFormat;
  if (backingFormat !== undefined && backingArg === undefined)
    throw new UsageError('-F (backing format) needs -B (backing file)');

  // SIGINT, SIGTERM or SIGHUP while the temporary file exists: remove it, then exit 128 + signal.
  const temp = removeTempOnInterrupt(new AbortController());
  try {
    const result = await convertImage(src, dst, {
      vfs: hostCopyVfs(cache),
      cache,
      format: opts.format,
      outputFormat: opts.outputFormat,
      existingTarget: inPlace,
      targetIsZero: opts.targetIsZero,
      parallel,
      outOfOrder: opts.outOfOrder,
      ...(opts.compress ? { compress: true } : {}),
      driverOptions: o.driverOptions,
      ...(o.preallocation !== undefined ? { preallocation: o.preallocation } : {}),
      backing: backingArg,
      backingFormat,
      sparseSize: sparse,
      backingProbe: opts.backingProbe,
      ...rulesOf(opts),
      sourceBackingFormat: opts.sourceBackingFormat,
      ...(opts.snapshot !== undefined ? { sourceSnapshot: opts.snapshot } : {}),
      forceShare: opts.forceShare,
      onWarning: warn,
      onTempFile: temp.onTempFile,
      signal: temp.signal,
      onProgress: progressListener(Boolean(opts.progress) && !opts.quiet),
    });
    // The rename changed the target's directory (DST's, or its symlink's target's).
    if (cache !== 'unsafe' && result.method === 'rename')
      syncDirectory(nodePath.dirname(nodePath.resolve(result.target)));
  } finally {
    temp.off();
  }
  return 0;
}

/** -t CACHE, checked (a usage error names the modes). */
export function cacheArg(value: string | undefined): ReturnType<typeof parseCacheMode> {
  try {
    return parseCacheMode(value);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * -T SRC_CACHE (qemu-img's cache mode of the images only read), checked as
 * -t is so that a script's typo is still an error. blk reads every image
 * through the host's page cache whatever the mode: none and directsync
 * change nothing read, only how QEMU would bypass that cache.
 */
export function sourceCacheArg(value: string | undefined): void {
  if (value === undefined) return;
  try {
    parseCacheMode(value);
  } catch (err) {
    throw new UsageError(`invalid source cache mode '${value}': ${(err as Error).message.replace(/^[^:]*: /, '')}`);
  }
}

/** fsync of a directory, so that names created or renamed in it survive a power loss (best effort). */
export function syncDirectory(dir: string): void {
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
