/**
 * blk amend: qemu-img amend. Which options a format can change in place is
 * its driver's `amend`; this module parses `-o` and opens the image.
 */
import { openCli } from '../common.js';
import { UsageError } from '../errors.js';
import { splitOptionList } from '../options.js';
import { parseSize } from '../size.js';

export interface AmendOpts {
  format?: string;
  options: string[];
  quiet?: boolean;
  backingProbe?: boolean;
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
      // Sizes reach the driver in bytes, whatever suffix was typed.
      options.set(key, key === 'size' ? String(parseSize(value, 'size')) : value);
    }
  }
  const image = await openCli(file, { format: opts.format, readOnly: false, backingProbe: opts.backingProbe, onMismatch: 'accept' });
  try {
    if (options.has('help')) {
      // The driver says whether it amends anything at all before any help is shown.
      await image.amend(new Map());
      process.stdout.write(AMEND_HELP[image.format] ?? 'Every option this format takes at creation (blk create -o help)\n');
      return 0;
    }
    await image.amend(options);
  } finally {
    await image.close();
  }
  return 0;
}

const AMEND_HELP: Record<string, string> = {
  cow: 'Amend options for \'cow\':\n'
    + '  size=<size>            Virtual disk size: grows the image in place while its bitmap fits before the data\n'
    + '  backing_file=<file>    only the current value (blk rebase changes it)\n'
    + '  version=<3|2|1>, variant=<name>, alignment=<n>  only the current values (blk convert changes them)\n',
};
