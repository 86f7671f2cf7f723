/**
 * blk compare: qemu-img compare. Exit 0 when the guest-visible contents are
 * equal, 1 when they differ (the first differing offset is printed), 2 on
 * error. Images of different sizes are equal when the larger one's tail
 * reads as zeros, unless -s (strict), which also compares allocation.
 * Offsets are reported as qemu-img does: the start of the first differing
 * 512-byte sector (counted from where the compared chunk starts). The job is
 * @blk/jobs' compareImages; this module opens the images and prints.
 */
import { isBlockError, type Image } from '@blk/core';
import { compareImages } from '@blk/jobs';
import { openCli, rulesOf, type BackingRuleFlags } from '../common.js';
import { createProgress } from '../progress.js';
import { sourceCacheArg } from './convert.js';

export interface CompareOpts extends BackingRuleFlags {
  /** -T: cache mode of the images read (checked only). */
  sourceCache?: string;
  format?: string;
  secondFormat?: string;
  strict?: boolean;
  progress?: boolean;
  quiet?: boolean;
  backingProbe?: boolean;
  /** --backing-format: the format of A's backing file (cow records none). */
  backingFormat?: string;
  /** --second-backing-format: the format of B's backing file. */
  secondBackingFormat?: string;
  /** -U: read the images even while another process writes them. */
  forceShare?: boolean;
}

export async function compare(a: string, b: string, opts: CompareOpts): Promise<number> {
  sourceCacheArg(opts.sourceCache);
  const say = (line: string) => {
    if (!opts.quiet) process.stdout.write(`${line}\n`);
  };
  const shared = { readOnly: true, backingProbe: opts.backingProbe, forceShare: opts.forceShare, ...rulesOf(opts) };
  const first = await openCli(a, { ...shared, format: opts.format, backingFormat: opts.backingFormat });
  let second: Image | undefined;
  try {
    second = await openCli(b, { ...shared, format: opts.secondFormat, backingFormat: opts.secondBackingFormat }).catch(
      (err: unknown) => {
        // B's backing format has an option of its own: the advice must name that one.
        if (isBlockError(err, 'backing-format')) Object.assign(err, { option: '--second-backing-format' });
        throw err;
      },
    );
    if (opts.strict && first.size !== second.size) {
      say('Strict mode: Image size mismatch!');
      return 1;
    }
    const progress = createProgress(Boolean(opts.progress) && !opts.quiet, Math.max(first.size, second.size));
    const result = await compareImages(first, second, {
      strict: opts.strict,
      onProgress: (done) => progress.update(done),
    });
    progress.done();
    switch (result.kind) {
      case 'size-mismatch': // Answered above, before the progress line.
        say('Strict mode: Image size mismatch!');
        return 1;
      case 'status-mismatch':
        say(`Strict mode: Offset ${result.offset} block status mismatch!`);
        return 1;
      case 'content-mismatch':
        if (result.inTail) say('Warning: Image size mismatch!');
        say(`Content mismatch at offset ${result.offset}!`);
        return 1;
      case 'identical':
        break;
    }
    if (result.sizesDiffer) say('Warning: Image size mismatch!');
    say('Images are identical.');
    return 0;
  } finally {
    await second?.close().catch(() => undefined);
    await first.close().catch(() => undefined);
  }
}
