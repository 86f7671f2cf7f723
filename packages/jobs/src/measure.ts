/**
 * The measure job (qemu-img measure): the numbers come from the output
 * format's driver (`BlockDriver.measure`); the job counts the source's data
 * for the driver at the driver's granularity. The blk command parses the
 * options, opens the source and prints.
 */
import {
  alignDown,
  alignUp,
  BlockError,
  type DriverRegistry,
  type Image,
  type PreallocationMode,
} from '@blk/core/portable';
import { checkAborted } from './common.js';

/**
 * Bytes of `image` (across its backing chain) that hold data a copy would
 * write: every run that is not known to read as zeros, widened to whole
 * `granularity` blocks, each block counted once.
 */
export async function dataBytes(image: Image, granularity: number, signal?: AbortSignal): Promise<number> {
  let total = 0;
  let covered = 0;
  for await (const run of image.map()) {
    checkAborted(signal, image.path);
    if (run.depth === undefined || run.zero) continue;
    const start = Math.max(alignDown(run.start, granularity), covered);
    const end = alignUp(run.start + run.length, granularity);
    if (end > start) total += end - start;
    covered = Math.max(covered, end);
  }
  return total;
}

export interface MeasureOptions {
  /** The output format (its driver measures). */
  format: string;
  /** The source to measure (its size and data), or none: then `size`. */
  source?: Image | undefined;
  /** The virtual size, without a source. */
  size?: number | undefined;
  driverOptions?: Record<string, unknown> | undefined;
  preallocation?: PreallocationMode | undefined;
  signal?: AbortSignal | undefined;
}

export interface MeasureResult {
  required: number;
  fullyAllocated: number;
  /** Persistent bitmap bytes, when both formats carry bitmaps (qemu-img's `bitmaps size`). */
  bitmaps?: number;
}

/** What an image of `format` holding `source` (or of `size`) needs on disk, as its driver says. */
export async function measureImage(registry: DriverRegistry, options: MeasureOptions): Promise<MeasureResult> {
  const driver = registry.require(options.format);
  if (!driver.measure) {
    throw new BlockError('not-supported', `Format driver '${options.format}' does not support measure`, {
      driver: options.format,
    });
  }
  const input: Parameters<NonNullable<typeof driver.measure>>[0] = { size: 0 };
  if (options.driverOptions && Object.keys(options.driverOptions).length > 0)
    input.driverOptions = options.driverOptions;
  if (options.preallocation !== undefined) input.preallocation = options.preallocation;
  const source = options.source;
  if (source) {
    input.size = source.size;
    input.dataBytes = (granularity) => dataBytes(source, granularity, options.signal);
    input.sourceFormat = source.format;
  } else {
    input.size = options.size ?? 0;
  }
  const result = await driver.measure(input);
  const out: MeasureResult = { required: result.required, fullyAllocated: result.fullyAllocated };
  if (result.bitmaps !== undefined) out.bitmaps = result.bitmaps;
  return out;
}
