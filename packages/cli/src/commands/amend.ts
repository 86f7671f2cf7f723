/**
 * blk amend: qemu-img amend. Which options a format can change in place is
 * its driver's `amend`; this module parses `-o` and opens the image.
 */
import { openCli, rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError } from '../errors.js';
import { registry } from '../images.js';
import { parseOptionValue, renderOptionHelp, splitOptionList } from '../options.js';
import { parseSize } from '../size.js';

export interface AmendOpts extends BackingRuleFlags {
  format?: string;
  options: string[];
  quiet?: boolean;
  backingProbe?: boolean;
  /** -F: the backing file's format (cow records none). */
  backingFormat?: string;
}

export async function amend(file: string, opts: AmendOpts): Promise<number> {
  if (opts.options.length === 0) throw new UsageError('Must specify options (-o)');
  const options = new Map<string, string>();
  for (const list of opts.options) {
    for (const [key, value] of splitOptionList(list)) {
      if (key === 'help' || key === '?') {
        options.set('help', '');
        continue;
      }
      if (value === undefined) throw new UsageError(`invalid option '${key}': expected key=value`);
      // The virtual size (every format's) is read at once; other options once the driver is known.
      options.set(key, key === 'size' ? String(parseSize(value, 'size')) : value);
    }
  }
  const image = await openCli(file, {
    format: opts.format,
    readOnly: false,
    backingProbe: opts.backingProbe,
    backingFormat: opts.backingFormat,
    onMismatch: 'accept',
    ...rulesOf(opts),
  });
  try {
    if (options.has('help')) {
      // The driver says whether it amends anything at all before any help is shown.
      await image.amend(new Map());
      process.stdout.write(
        renderOptionHelp(`Amend options for '${image.format}':`, registry.get(image.format)?.amendOptions ?? []),
      );
      return 0;
    }
    // Values of the types the driver declares: sizes reach it in bytes, whatever suffix was typed.
    for (const spec of registry.get(image.format)?.amendOptions ?? []) {
      const value = options.get(spec.name);
      if (value !== undefined && spec.name !== 'size' && spec.type === 'size') {
        options.set(spec.name, String(parseOptionValue(spec, value, image.format)));
      }
    }
    await image.amend(options);
  } finally {
    await image.close();
  }
  return 0;
}
