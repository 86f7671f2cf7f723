/**
 * qemu-img's `-o key=value,key=value` creation options, mapped to blk's
 * createImage options. `,,` stands for a literal comma, as in QEMU.
 */
import { isPreallocationMode, optionSynopsis, type OptionSpec, type PreallocationMode } from '@blk/core';
import { UsageError } from './errors.js';
import { registry } from './images.js';
import { parseSize } from './size.js';

export interface CreateOptionSet {
  size?: number;
  backingFile?: string;
  backingFormat?: string;
  preallocation?: PreallocationMode;
  driverOptions: Record<string, unknown>;
  /** key=value pairs as given, for the `Formatting ...` line. */
  given: Array<[string, string]>;
  help: boolean;
}

/** Splits `a=1,b=x,,y` into pairs (`,,` is a literal comma). */
export function splitOptionList(list: string): Array<[string, string | undefined]> {
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < list.length; i++) {
    const ch = list[i]!;
    if (ch === ',') {
      if (list[i + 1] === ',') {
        cur += ',';
        i++;
      } else {
        items.push(cur);
        cur = '';
      }
    } else {
      cur += ch;
    }
  }
  items.push(cur);
  return items
    .filter((s) => s !== '')
    .map((item) => {
      const eq = item.indexOf('=');
      return eq < 0 ? [item, undefined] : [item.slice(0, eq), item.slice(eq + 1)];
    });
}

/** The options every create takes, as createImage's own (qemu's BLOCK_OPT_SIZE, _BACKING_FILE, ...), not driver options. */
const CORE_CREATE_OPTIONS = ['size', 'backing_file', 'backing_fmt', 'preallocation'];

/** Help for a format that declares no options: it takes any key as a driver option. */
const UNDECLARED_HELP: OptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: '<key>', type: 'string', valueName: 'value', help: 'passed to the driver as a driver option' },
];

/** `Supported options:` then one line per option, as qemu-img create -o help prints them. */
export function renderOptionHelp(title: string, list: readonly OptionSpec[]): string {
  const names = list.map(optionSynopsis);
  const width = Math.max(0, ...names.map((n) => n.length)) + 2;
  return `${title}\n${list.map((o, i) => `  ${names[i]!.padEnd(width)}${o.help}\n`).join('')}`;
}

/** `-o help` for `create -f format`, rendered from the driver's declared create options. */
export function formatOptionHelp(format: string): string {
  return renderOptionHelp('Supported options:', registry.get(format)?.createOptions ?? UNDECLARED_HELP);
}

/** `a, b or c` */
function choices(values: readonly string[]): string {
  return values.length < 2 ? values.join('') : `${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}`;
}

/**
 * A value typed for a declared option, as its `type` reads it; errors in
 * the words of `invalid cow version '7' (expected 3, 2 or 1)`.
 */
export function parseOptionValue(spec: OptionSpec, value: string, format: string): unknown {
  const invalid = (expected: string) =>
    new UsageError(`invalid ${format} ${spec.name} '${value}' (expected ${expected})`);
  switch (spec.type) {
    case 'size':
      return parseSize(value, spec.name);
    case 'bool':
      if (value === 'on' || value === 'true') return true;
      if (value === 'off' || value === 'false') return false;
      throw invalid('on or off');
    case 'number': {
      const n = Number(value);
      if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n)) throw invalid('an integer');
      return n;
    }
    case 'enum': {
      const values = spec.values ?? [];
      if (!values.includes(value)) throw invalid(choices(values));
      return spec.mapsTo?.[value] ?? value;
    }
    default:
      return value;
  }
}

/** A value for a format that declares no options: numbers and on/off guessed, as before drivers declared them. */
function driverValue(value: string): unknown {
  if (/^\d+$/.test(value) && value.length < 16) return Number(value);
  if (value === 'on' || value === 'true') return true;
  if (value === 'off' || value === 'false') return false;
  return value;
}

/** Interprets every `-o` argument for a new image of `format`; errors name `file`, the image being made (as qemu-img's). */
export function parseCreateOptions(format: string, lists: string[], file?: string): CreateOptionSet {
  try {
    return parseOptionLists(format, lists);
  } catch (err) {
    if (file !== undefined && err instanceof UsageError) throw new UsageError(`${file}: ${err.message}`);
    throw err;
  }
}

function parseOptionLists(format: string, lists: string[]): CreateOptionSet {
  const out: CreateOptionSet = { driverOptions: {}, given: [], help: false };
  for (const list of lists) {
    for (const [key, value] of splitOptionList(list)) {
      if (key === 'help' || key === '?') {
        out.help = true;
        continue;
      }
      if (value === undefined) throw new UsageError(`invalid option '${key}': expected key=value`);
      switch (key) {
        case 'size':
          out.size = parseSize(value, 'image size');
          break;
        case 'backing_file':
          out.backingFile = value;
          break;
        case 'backing_fmt':
          out.backingFormat = value;
          break;
        case 'preallocation':
          out.preallocation = parsePreallocation(value);
          out.given.push([key, value]);
          break;
        default: {
          const declared = registry.get(format)?.createOptions;
          const spec = declared?.find((o) => o.name === key && !CORE_CREATE_OPTIONS.includes(o.name));
          if (spec) {
            out.driverOptions[spec.driverOption ?? spec.name] = parseOptionValue(spec, value, format);
          } else if (declared?.every((o) => CORE_CREATE_OPTIONS.includes(o.name))) {
            // A format that takes no driver options at all refuses in qemu-img's words.
            throw new UsageError(`format ${format} does not support option '${key}'`);
          } else {
            // Undeclared keys reach the driver, which refuses them in its own words (listing what it knows).
            out.driverOptions[key] = declared ? value : driverValue(value);
          }
          out.given.push([key, value]);
        }
      }
    }
  }
  return out;
}

/** A preallocation mode named on the command line (-o preallocation=, --preallocation=). */
export function parsePreallocation(value: string): PreallocationMode {
  if (!isPreallocationMode(value)) {
    throw new UsageError(`Invalid preallocation mode '${value}' (expected off, metadata, falloc or full)`);
  }
  return value;
}
