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
  constructor(readonly exitCode: number, message = '') {
    super(message);
    this.name = 'ExitError';
  }
}

export function debugEnabled(): boolean {
  const v = process.env.BLK_DEBUG;
  return v !== undefined && v !== '' && v !== '0';
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
    if ((err as { kind?: unknown }).kind === 'backing-mismatch') {
      // The library's hint names its API; say what to do on the command line instead.
      line = line.replace(/ \(open with backing\.onMismatch[^)]*\)$/, '');
      const backing = /backing file (.+?): /.exec(line)?.[1];
      const image = (err as { path?: unknown }).path;
      if (backing !== undefined && typeof image === 'string') {
        line += `; if the change is harmless, record it with: blk rebase -u -b ${backing} ${image}`;
      }
    }
    return line || err.name;
  }
  return String(err);
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
