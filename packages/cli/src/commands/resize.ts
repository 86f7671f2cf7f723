/**
 * blk resize: qemu-img resize. What a format can do is its driver's
 * `resize` (raw: truncate; cow: in place while the layout allows); this
 * module parses `[+|-]SIZE`, enforces --shrink and prints qemu-img's lines.
 */
import { alignUp } from '@blk/core';
import { openCli, rulesOf, type BackingRuleFlags } from '../common.js';
import { ExitError, UsageError } from '../errors.js';
import { parsePreallocation } from '../options.js';
import { parseSize } from '../size.js';

export interface ResizeOpts extends BackingRuleFlags {
  format?: string;
  shrink?: boolean;
  preallocation?: string;
  quiet?: boolean;
  backingProbe?: boolean;
  /** -F: the backing file's format (cow records none). */
  backingFormat?: string;
}

/** `SIZE`, `+SIZE` or `-SIZE`: an absolute size, or a change of the current one. */
export function parseResizeSize(text: string): { sign: '' | '+' | '-'; bytes: number } {
  const sign = text.startsWith('+') || text.startsWith('-') ? (text[0] as '+' | '-') : '';
  return { sign, bytes: parseSize(sign === '' ? text : text.slice(1), 'size') };
}

export async function resize(file: string, sizeArg: string, opts: ResizeOpts): Promise<number> {
  const { sign, bytes } = parseResizeSize(sizeArg);
  const preallocation = opts.preallocation === undefined ? undefined : parsePreallocation(opts.preallocation);
  if (sign === '' && bytes === 0) throw new UsageError('New image size must be positive');
  // The backing chain is opened (as qemu-img does): formats that record their backing
  // file's size check the new size against it. A backing file changed since the overlay
  // was made (grown first, for instance) is no reason to refuse here.
  const image = await openCli(file, {
    format: opts.format,
    readOnly: false,
    backingProbe: opts.backingProbe,
    backingFormat: opts.backingFormat,
    onMismatch: 'accept',
    ...rulesOf(opts),
  });
  try {
    // As qemu-img: a relative size counts from the length in whole sectors.
    const current = alignUp(image.size, 512);
    const size = sign === '+' ? current + bytes : sign === '-' ? current - bytes : bytes;
    if (!(size > 0)) throw new UsageError('New image size must be positive');
    if (!Number.isSafeInteger(size)) throw new UsageError(`new size ${size} is beyond 2^53 - 1 bytes`);
    // qemu-img compares with the length in whole sectors too: 2025 bytes to 2025 is a shrink (from 2048).
    if (size < current && !opts.shrink) {
      process.stderr.write(
        'blk: Use the --shrink option to perform a shrink operation.\n'
          + "blk: warning: Shrinking an image will delete all data beyond the shrunken image's end. "
          + 'Before performing such an operation, make sure there is no important data there.\n',
      );
      throw new ExitError(1);
    }
    // A raw file may be shorter than its disk (a partial last sector counts whole): qemu-img
    // truncates it to the size asked even when the disk's size does not change.
    if (size !== image.size || image.format === 'raw') {
      const o: Parameters<typeof image.resize>[1] = { shrink: true };
      if (preallocation !== undefined) o.preallocation = preallocation;
      await image.resize(size, o);
    }
  } finally {
    await image.close();
  }
  if (!opts.quiet) process.stdout.write('Image resized.\n');
  return 0;
}
