/**
 * blk amend: qemu-img amend. Which options a format can change in place is
 * its driver's `amend`; this module parses `-o` and opens the image.
 */
import { openCli, rulesOf } from '../common.js';
import { UsageError } from '../errors.js';
import { registry } from '../images.js';
import { splitOptionList } from '../options.js';
import { parseSize } from '../size.js';
export async function amend(file, opts) {
    if (opts.options.length === 0)
        throw new UsageError('Must specify options (-o)');
    const options = new Map();
    for (const list of opts.options) {
        for (const [key, value] of splitOptionList(list)) {
            if (key === 'help' || key === '?') {
                options.set('help', '');
                continue;
            }
            if (value === undefined)
                throw new UsageError(`invalid option '${key}': expected key=value`);
            // Sizes reach the driver in bytes, whatever suffix was typed.
            options.set(key, key === 'size' ? String(parseSize(value, 'size')) : value);
        }
    }
    const image = await openCli(file, {
        format: opts.format, readOnly: false, backingProbe: opts.backingProbe, backingFormat: opts.backingFormat, onMismatch: 'accept',
        ...rulesOf(opts),
    });
    try {
        if (options.has('help')) {
            // The driver says whether it amends anything at all before any help is shown.
            await image.amend(new Map());
            const list = registry.get(image.format)?.amendOptions ?? [];
            const width = Math.max(0, ...list.map((o) => o.name.length)) + 2;
            process.stdout.write(`Amend options for '${image.format}':\n${list.map((o) => `  ${o.name.padEnd(width)}${o.help}\n`).join('')}`);
            return 0;
        }
        await image.amend(options);
    }
    finally {
        await image.close();
    }
    return 0;
}
