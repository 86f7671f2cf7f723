/**
 * How the CLI reports failure: one line on stderr, `blk: <what went wrong>`,
 * and an exit code. A stack trace only when BLK_DEBUG is set. Messages
 * embed paths and header strings from images: every control character in
 * them is escaped here (see printable.ts), the one place all errors and
 * warnings pass through.
 */
import { printable } from './printable.js';

/** A bad command line or argument: printed as one line. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure the command has already described; carries the exit code to use. */
export class ExitError extends Error {
  constructor(
    readonly exitCode: number,
    message = '',
  ) {
    super(message);
    this.name = 'ExitError';
  }
}

export function debugEnabled(): boolean {
  const v = process.env.BLK_DEBUG;
  return v !== undefined && v !== '' && v !== '0';
}

/** The command being run and its options, so that advice names options the command accepts. */
interface CommandContext {
  command: string;
  options: Record<string, unknown>;
  /** The image arguments, as the user spelled them (errors about them carry the same spelling). */
  args: readonly string[];
}

let context: CommandContext = { command: '', options: {}, args: [] };

/** Called once the command line is parsed (blk.ts). */
export function setCommandContext(
  command: string,
  options: Record<string, unknown>,
  args: readonly string[] = [],
): void {
  context = { command, options, args };
}

/** True when `path` is an image named on the command line (not a file deeper in its chain). */
function isTopImage(path: string): boolean {
  return context.args.includes(path);
}

/**
 * The option of each command that names the format of the opened image's
 * direct backing file. cow records no backing format, so a cow under a cow
 * is named on every command that opens it. Where qemu-img's own -F means
 * something else (compare: B's format; convert, rebase: the new backing
 * file's), a long option does the job.
 */
export const BACKING_FORMAT_OPTION: Readonly<Record<string, string>> = {
  info: '-F',
  map: '-F',
  check: '-F',
  commit: '-F',
  io: '-F',
  resize: '-F',
  measure: '-F',
  amend: '-F',
  compare: '--backing-format',
  convert: '--source-backing-format',
  rebase: '--old-backing-format',
};

/** The commands that take -U (read an image another process is writing). */
const FORCE_SHARE_COMMANDS: ReadonlySet<string> = new Set([
  'info',
  'map',
  'compare',
  'check',
  'convert',
  'measure',
  'dd',
]);

/** Which option value of the current command holds that backing format (commander's camelCase key). */
const BACKING_FORMAT_KEY: Readonly<Record<string, string>> = {
  info: 'backingFormat',
  map: 'backingFormat',
  check: 'backingFormat',
  commit: 'backingFormat',
  io: 'backingFormat',
  resize: 'backingFormat',
  measure: 'backingFormat',
  amend: 'backingFormat',
  compare: 'backingFormat',
  convert: 'sourceBackingFormat',
  rebase: 'oldBackingFormat',
};

/** The format options of the current command line worth repeating in advice (`-f cow -F cow`). */
function formatArgs(image: string): string {
  const o = context.options;
  const key = BACKING_FORMAT_KEY[context.command];
  const parts: string[] = [];
  // -f names the first image's format (compare's B has -F).
  if (typeof o.format === 'string' && context.command !== 'create' && image === context.args[0])
    parts.push(`-f ${o.format}`);
  if (key !== undefined && typeof o[key] === 'string') parts.push(`-F ${String(o[key])}`);
  if (o.backingProbe === true) parts.push('--backing-probe');
  return parts.map((p) => `${p} `).join('');
}

/** What to say about a backing file that looks like another format while blk would read it as raw. */
function backingFormatAdvice(found: string, depth: number | undefined, named: string | undefined): string {
  if (depth === undefined) return `name its format with -F ${found} (or -F raw to use it as raw)`;
  const option = named ?? BACKING_FORMAT_OPTION[context.command];
  if (depth === 1 && option !== undefined) {
    return (
      `name its format with ${option} ${found} (or ${option} raw to read it as raw), or guess every backing `
      + "file's format from its content with --backing-probe (trusted images only)"
    );
  }
  return (
    "blk names only the direct backing file's format; for a deeper chain of such files, guess every backing "
    + "file's format from its content with --backing-probe (trusted images only)"
  );
}

/** The one-line description of an error (control characters escaped), without the `blk: ` prefix. */
export function describeError(err: unknown): string {
  return printable(describeRaw(err));
}

function describeRaw(err: unknown): string {
  if (err instanceof Error) {
    // BlockError messages already lead with the file name. A newline inside a message comes from a
    // path or header string (it is escaped, not cut: the rest of the message matters).
    let line = err.message;
    const e = err as { kind?: unknown; path?: unknown; format?: unknown; depth?: unknown; option?: unknown };
    if (e.kind === 'backing-format' && /no registered driver reads/.test(line)) {
      // A foreign format (qcow2 under a cow): only raw can be named; say with which option.
      const depth = typeof e.depth === 'number' ? e.depth : undefined;
      const option =
        depth === undefined
          ? '-F'
          : depth === 1
            ? typeof e.option === 'string'
              ? e.option
              : BACKING_FORMAT_OPTION[context.command]
            : undefined;
      line = line.replace(/ \(backing\.format 'raw'\)/, option !== undefined ? ` (${option} raw)` : '');
    } else if (e.kind === 'backing-format' && typeof e.path === 'string' && typeof e.format === 'string') {
      // A format blk reads that nobody named (a cow under a cow).
      // The library's hint names its API; say which option of this command names the format.
      line =
        `${e.path}: backing file looks like a ${e.format} image, but blk reads a backing file as raw unless its `
        + `format is named: ${backingFormatAdvice(
          e.format,
          typeof e.depth === 'number' ? e.depth : undefined,
          typeof e.option === 'string' ? e.option : undefined,
        )}`;
    }
    if (
      e.kind === 'locked'
      && FORCE_SHARE_COMMANDS.has(context.command)
      && context.options.forceShare !== true
      && / will not open it\b/.test(line)
    ) {
      // A read-only open refused because someone writes the image: qemu-img's -U is the way to read it anyway.
      line = line.replace(/ \(reading it anyway needs force-share\)$/, '');
      line += '; -U (--force-share) reads it anyway, but what is read may be inconsistent';
    }
    if (e.kind === 'backing-mismatch') {
      // The library's hint names its API; say what to do on the command line instead.
      line = line.replace(/ \(open with backing\.onMismatch[^)]*\)$/, '');
      const backing = /backing file (.+?): /.exec(line)?.[1];
      const image = e.path;
      if (backing !== undefined && typeof image === 'string') {
        if (/differs from 0 recorded/.test(line)) {
          // The commit protocol's mark (mtime 0): re-running the commit is the recovery; accepting
          // the backing file as it is (rebase -u) would hide a half-done commit.
          line = line.replace(/mtime \d+ differs from 0 recorded in the overlay/, 'a commit into it was interrupted');
          line += `; finish it with: ${commitCommand(image)}`;
        } else {
          const args = isTopImage(image) ? rebaseFormatArgs() : '';
          line += `; if the change is harmless, record it with: blk rebase -u -b ${backing} ${args}${image}`;
        }
      }
    }
    return line || err.name;
  }
  return String(err);
}

/** The blk commit command line that finishes an interrupted commit of `image`, with this command's format options. */
export function commitCommand(image: string): string {
  return `blk commit ${isTopImage(image) ? formatArgs(image) : ''}${image}`;
}

/** `-F FMT ` for the rebase advice when the current command named the backing file's format. */
function rebaseFormatArgs(): string {
  const key = BACKING_FORMAT_KEY[context.command];
  const value = key !== undefined ? context.options[key] : undefined;
  return typeof value === 'string' ? `-F ${value} ` : '';
}

/** Prints `blk: message` (and the stack under BLK_DEBUG) to stderr. */
export function reportError(err: unknown): void {
  process.stderr.write(`blk: ${describeError(err)}\n`);
  if (debugEnabled() && err instanceof Error && err.stack) {
    process.stderr.write(`${printableLines(err.stack)}\n`);
    let cause = (err as { cause?: unknown }).cause;
    while (cause instanceof Error) {
      process.stderr.write(`caused by: ${printableLines(cause.stack ?? cause.message)}\n`);
      cause = (cause as { cause?: unknown }).cause;
    }
  }
}

/** A warning line on stderr (control characters escaped). */
export function warn(message: string): void {
  process.stderr.write(`blk: warning: ${printable(message)}\n`);
}

/** A stack trace: its own lines kept, control characters inside each escaped. */
function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}
