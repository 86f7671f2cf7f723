/**
 * Which operands of which command name an image that qemu-img would take as a `json:` name or, with
 * --image-opts, as an option string; and the options that name each one's format, -U and backing
 * format. Before a command runs, such an operand becomes the plain path it names and its options
 * become the command's own (image-name.ts), so every command takes them alike.
 */
import type { Command } from 'commander';

interface ImageOperand {
  /** Position among the command's arguments, or `if` for dd's `if=` operand. */
  at: number | 'if';
  /** The option naming its format (-f, or compare's -F for B). */
  format: string;
  /** The option that is -U for it (absent: the command has none). */
  forceShare?: string;
  /** The option naming its backing file's format (absent: none, or one that means another file). */
  backingFormat?: string;
}

const READ: Omit<ImageOperand, 'at'> = { format: 'format', forceShare: 'forceShare', backingFormat: 'backingFormat' };

export const IMAGE_OPERANDS: Readonly<Record<string, readonly ImageOperand[]>> = {
  info: [{ at: 0, ...READ }],
  map: [{ at: 0, ...READ }],
  check: [{ at: 0, ...READ }],
  measure: [{ at: 0, ...READ }],
  snapshot: [{ at: 0, format: 'format', forceShare: 'forceShare' }],
  bench: [{ at: 0, format: 'format', forceShare: 'forceShare' }],
  convert: [{ at: 0, format: 'format', forceShare: 'forceShare', backingFormat: 'sourceBackingFormat' }],
  compare: [
    { at: 0, format: 'format', forceShare: 'forceShare', backingFormat: 'backingFormat' },
    { at: 1, format: 'secondFormat', forceShare: 'forceShare', backingFormat: 'secondBackingFormat' },
  ],
  commit: [{ at: 0, format: 'format', backingFormat: 'backingFormat' }],
  resize: [{ at: 0, format: 'format', backingFormat: 'backingFormat' }],
  amend: [{ at: 0, format: 'format', backingFormat: 'backingFormat' }],
  rebase: [{ at: 0, format: 'format' }],
  dd: [{ at: 'if', format: 'format', forceShare: 'forceShare' }],
};

/** The operands as the user gave them, by the paths they became (qemu-img check --output=json names the given one). */
const given = new Map<string, string>();

/** `path` as the user named it (a json: name or an option string), or `path` itself. */
export function nameAsGiven(path: string): string {
  return given.get(path) ?? path;
}

/** Whether an operand of `action` needs reading as options (so that the reader is loaded only then). */
export function hasNamedOptions(action: Command): boolean {
  const spec = IMAGE_OPERANDS[action.name()];
  if (!spec) return false;
  if (action.opts().imageOpts === true) return true;
  const args = action.processedArgs as unknown[];
  return spec.some((op) => {
    const v = operandValue(args, op.at);
    return typeof v === 'string' && v.startsWith('json:');
  });
}

function operandValue(args: unknown[], at: number | 'if'): string | undefined {
  if (at !== 'if') return typeof args[at] === 'string' ? args[at] : undefined;
  const list = Array.isArray(args[0]) ? (args[0] as unknown[]) : [];
  const found = list.find((a): a is string => typeof a === 'string' && a.startsWith('if='));
  return found?.slice(3);
}

/** Replaces the image operands of `action` that are json: names (all, under --image-opts) by their paths and options. */
export async function applyImageOperands(action: Command): Promise<void> {
  const spec = IMAGE_OPERANDS[action.name()];
  if (!spec) return;
  const { namedImage, namesOptions } = await import('./image-name.js');
  const opts = action.opts();
  const imageOpts = opts.imageOpts === true;
  const args = action.processedArgs as unknown[];
  for (const op of spec) {
    const value = operandValue(args, op.at);
    if (value === undefined || !namesOptions(value, imageOpts)) continue;
    const format = opts[op.format];
    const named = namedImage(value, {
      imageOpts,
      format: typeof format === 'string' ? format : undefined,
      command: action.name(),
      has: { forceShare: op.forceShare !== undefined, backingFormat: op.backingFormat !== undefined },
    });
    given.set(named.path, value);
    if (op.at === 'if') {
      const list = args[0] as string[];
      list[list.findIndex((a) => a.startsWith('if='))] = `if=${named.path}`;
    } else args[op.at] = named.path;
    if (named.format !== undefined) action.setOptionValue(op.format, named.format);
    if (named.forceShare && op.forceShare) action.setOptionValue(op.forceShare, true);
    if (named.backingFormat !== undefined && op.backingFormat && opts[op.backingFormat] === undefined) {
      action.setOptionValue(op.backingFormat, named.backingFormat);
    }
  }
}
