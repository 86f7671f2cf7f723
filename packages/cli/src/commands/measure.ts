/**
 * blk measure: qemu-img measure. The numbers come from the output format's
 * driver (`BlockDriver.measure`); the job (@blk/jobs' measureImage) counts
 * the source's data for the driver at the driver's granularity; this module
 * parses the options, opens the source, if any, and prints.
 */
import type { Image } from '@blk/core';
import { measureImage } from '@blk/jobs';
import { openCli, rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError } from '../errors.js';
import { registry } from '../images.js';
import { parseCreateOptions } from '../options.js';
import { toQemuJson } from '../qjson.js';
import { parseSize } from '../size.js';

export interface MeasureOpts extends BackingRuleFlags {
  format?: string;
  outputFormat: string;
  options: string[];
  size?: string;
  output: 'human' | 'json';
  backingProbe?: boolean;
  /** -F: the backing file's format (cow records none). */
  backingFormat?: string;
  /** -U: read FILE even while another process writes it. */
  forceShare?: boolean;
}

/** Bytes of `image` a copy would write, at `granularity` (the measure job's count: @blk/jobs' dataBytes). */
export { dataBytes } from '@blk/jobs';

export async function measure(file: string | undefined, opts: MeasureOpts): Promise<number> {
  if (opts.size === undefined && file === undefined)
    throw new UsageError('Either --size N or one filename must be specified.');
  if (opts.size !== undefined && file !== undefined)
    throw new UsageError('--size N cannot be used together with a filename.');
  const format = opts.outputFormat;
  const driver = registry.require(format);
  if (!driver.measure) throw new UsageError(`Format driver '${format}' does not support measure`);
  const o = parseCreateOptions(format, opts.options);
  let image: Image | undefined;
  try {
    if (file !== undefined) {
      image = await openCli(file, {
        format: opts.format,
        readOnly: true,
        backingProbe: opts.backingProbe,
        backingFormat: opts.backingFormat,
        forceShare: opts.forceShare,
        ...rulesOf(opts),
      });
    }
    const result = await measureImage(registry, {
      format,
      source: image,
      size: file === undefined ? parseSize(opts.size!, 'size') : undefined,
      driverOptions: o.driverOptions,
      preallocation: o.preallocation,
    });
    if (opts.output === 'json') {
      const obj: Record<string, number> = { required: result.required, 'fully-allocated': result.fullyAllocated };
      if (result.bitmaps !== undefined) obj.bitmaps = result.bitmaps;
      process.stdout.write(`${toQemuJson(obj)}\n`);
    } else {
      process.stdout.write(`required size: ${result.required}\nfully allocated size: ${result.fullyAllocated}\n`);
      if (result.bitmaps !== undefined) process.stdout.write(`bitmaps size: ${result.bitmaps}\n`);
    }
  } finally {
    await image?.close();
  }
  return 0;
}
