/**
 * blk rebase: qemu-img rebase. The job (safe mode's copy, -u's header-only
 * rewrite, and what an interruption leaves) is @blk/jobs' rebaseImage.
 */
import { rulesOf, runInterruptible, type BackingRuleFlags } from '../common.js';
import { rebaseImage } from '../jobs/rebase.js';
import { progressListener } from '../progress.js';
import { cacheArg, sourceCacheArg } from './convert.js';

export interface RebaseOpts extends BackingRuleFlags {
  format?: string;
  backing: string;
  backingFormat?: string;
  unsafe?: boolean;
  progress?: boolean;
  quiet?: boolean;
  backingProbe?: boolean;
  /** --old-backing-format: the format of the current backing file (cow records none). */
  oldBackingFormat?: string;
  /** -t: cache mode of the overlay written (writeback, the default, flushes; unsafe never does). */
  cache?: string;
  /** -T: cache mode of the backing files read (checked; see sourceCacheArg). */
  sourceCache?: string;
}

export async function rebase(file: string, opts: RebaseOpts): Promise<number> {
  const cache = cacheArg(opts.cache);
  sourceCacheArg(opts.sourceCache);
  // SIGINT, SIGTERM or SIGHUP stop the copy between two runs: the overlay still reads the same over its old
  // backing file, and a re-run finishes (blk exits 128 + signal).
  const interrupted = await runInterruptible((signal) =>
    rebaseImage(file, {
      signal,
      cache,
      oldBackingFormat: opts.oldBackingFormat,
      format: opts.format,
      backing: opts.backing,
      backingFormat: opts.backingFormat,
      unsafe: opts.unsafe,
      backingProbe: opts.backingProbe,
      ...rulesOf(opts),
      onProgress: progressListener(Boolean(opts.progress) && !opts.quiet),
    }),
  );
  return interrupted ?? 0;
}
