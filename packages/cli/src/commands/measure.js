/**
 * blk measure: qemu-img measure. The numbers come from the output format's
 * driver (`BlockDriver.measure`); this module opens the source, if any, and
 * counts its data for the driver at the driver's granularity.
 */
import { alignDown, alignUp } from '@blk/core';
import { openCli, rulesOf } from '../common.js';
import { UsageError } from '../errors.js';
import { registry } from '../images.js';
import { parseCreateOptions } from '../options.js';
import { toQemuJson } from '../qjson.js';
import { parseSize } from '../size.js';
/**
 * Bytes of `image` (across its backing chain) that hold data a copy would
 * write: every run that is not known to read as zeros, widened to whole
 * `granularity` blocks, each block counted once.
 */
export async function dataBytes(image, granularity) {
    let total = 0;
    let covered = 0;
    for await (const run of image.map()) {
        if (run.depth === undefined || run.zero)
            continue;
        const start = Math.max(alignDown(run.start, granularity), covered);
        const end = alignUp(run.start + run.length, granularity);
        if (end > start)
            total += end - start;
        covered = Math.max(covered, end);
    }
    return total;
}
export async function measure(file, opts) {
    if (opts.size === undefined && file === undefined)
        throw new UsageError('Either --size N or one filename must be specified.');
    if (opts.size !== undefined && file !== undefined)
        throw new UsageError('--size N cannot be used together with a filename.');
    const format = opts.outputFormat;
    const driver = registry.require(format);
    if (!driver.measure)
        throw new UsageError(`Format driver '${format}' does not support measure`);
    const o = parseCreateOptions(format, opts.options);
    const input = { size: 0 };
    if (Object.keys(o.driverOptions).length > 0)
        input.driverOptions = o.driverOptions;
    if (o.preallocation !== undefined)
        input.preallocation = o.preallocation;
    let image;
    try {
        if (file !== undefined) {
            image = await openCli(file, {
                format: opts.format, readOnly: true, backingProbe: opts.backingProbe, backingFormat: opts.backingFormat,
                forceShare: opts.forceShare, ...rulesOf(opts),
            });
            const source = image;
            input.size = source.size;
            input.dataBytes = (granularity) => dataBytes(source, granularity);
        }
        else {
            input.size = parseSize(opts.size, 'size');
        }
        const result = await driver.measure(input);
        if (opts.output === 'json') {
            process.stdout.write(`${toQemuJson({ required: result.required, 'fully-allocated': result.fullyAllocated })}\n`);
        }
        else {
            process.stdout.write(`required size: ${result.required}\nfully allocated size: ${result.fullyAllocated}\n`);
        }
    }
    finally {
        await image?.close();
    }
    return 0;
}
