/**
 * blk commit: qemu-img commit / uml_moo -d. The job (and its crash-safety
 * protocol) is @blk/jobs' commitImage / commitIntoBase; this module maps the
 * options and prints.
 */
import { rulesOf, runInterruptible, type BackingRuleFlags } from '../common.js';
import { warn } from '../errors.js';
import { hostJobVfs } from '../host-io.js';
import { commitImage, commitIntoBase } from '../jobs/commit.js';
import { cacheArg, syncDirectory } from './convert.js';
import { progressListener } from '../progress.js';

export interface CommitOpts extends BackingRuleFlags {
  format?: string;
  keep?: boolean;
  /** -b: the image further down the chain to commit into (implies keep, as qemu-img's -b implies -d). */
  base?: string;
  progress?: boolean;
  quiet?: boolean;
  force?: boolean;
  backingProbe?: boolean;
  /** -F: the backing file's format (cow records none). */
  backingFormat?: string;
  /** -t: cache mode of the images written (writeback, the default, flushes; unsafe never does). */
  cache?: string;
}

export async function commit(file: string, opts: CommitOpts): Promise<number> {
  const cache = cacheArg(opts.cache);
  const job =
    opts.base !== undefined
      ? (f: string, o: Parameters<typeof commitImage>[1]) => commitIntoBase(f, opts.base!, o)
      : commitImage;
  // SIGINT, SIGTERM or SIGHUP stop the copy between two runs: the overlay keeps its mark and the journal, and a
  // re-run of the same command finishes the commit (blk exits 128 + signal).
  const interrupted = await runInterruptible((signal) =>
    job(file, {
      signal,
      vfs: hostJobVfs(),
      cache,
      format: opts.format,
      keep: opts.keep,
      force: opts.force,
      backingProbe: opts.backingProbe,
      ...rulesOf(opts),
      backingFormat: opts.backingFormat,
      onWarning: warn,
      // The journal's name must survive a power loss as its content does (the job flushes the content).
      syncDirectory: cache === 'unsafe' ? undefined : syncDirectory,
      onProgress: progressListener(Boolean(opts.progress) && !opts.quiet),
    }),
  );
  if (interrupted !== undefined) return interrupted;
  if (!opts.quiet) process.stdout.write('Image committed.\n');
  return 0;
}
