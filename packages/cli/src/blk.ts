#!/usr/bin/env node
/**
 * blk: qemu-img and qemu-io for every format registered in @blk/images.
 *
 * Startup loads commander only, and registers only the command being run
 * (src/program.ts); each command's module (and the image formats) is
 * imported when that command runs.
 */
import { writeSync } from 'node:fs';
import { CommanderError } from 'commander';
import { describeError, ExitError, reportError } from './errors.js';
import { buildProgram, COMMAND_NAMES, currentCommand, FAILURE_CODE } from './program.js';
import { onFirstUse } from './stdio.js';

/**
 * `blk resize FILE -1G` as qemu-img takes it: a size that starts with `-` is
 * not an option. It is moved behind `--` at the end (it is the last operand),
 * so that options written after it still count.
 */
function withNegativeResizeSize(argv: string[]): string[] {
  if (argv[2] !== 'resize' || argv.includes('--')) return argv;
  const at = argv.findIndex((arg, i) => i > 2 && /^-\d/.test(arg));
  if (at < 0) return argv;
  return [...argv.slice(0, at), ...argv.slice(at + 1), '--', argv[at]!];
}

async function main(): Promise<void> {
  // `blk ... | head`: a closed pipe ends the output quietly, as for any Unix tool. The handlers go on
  // each stream when a command first uses it (stdio.ts): a command that prints nothing makes none.
  for (const name of ['stdout', 'stderr'] as const) {
    onFirstUse(name, (stream) =>
      stream.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
        // Any other failure (a full disk, an I/O error): one line on stderr and exit 1, not a stack trace.
        if (stream === process.stdout) {
          try {
            writeSync(2, `blk: cannot write the output: ${describeError(err)}\n`);
          } catch {
            // stderr is gone too: the exit status says it.
          }
        }
        process.exit(FAILURE_CODE[currentCommand()] ?? 1); // compare: 2 (an error), not 1 (the images differ)
      }),
    );
  }
  // The command named first, when it is one (else every command: for the help and the suggestions).
  const word = process.argv[2];
  const program = buildProgram(word !== undefined && COMMAND_NAMES.includes(word) ? word : undefined);
  try {
    await program.parseAsync(withNegativeResizeSize(process.argv));
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the message (or the help) already.
      process.exitCode = err.exitCode === 0 ? 0 : (FAILURE_CODE[currentCommand()] ?? err.exitCode);
      return;
    }
    if (err instanceof ExitError) {
      if (err.message) reportError(err);
      process.exitCode = err.exitCode;
      return;
    }
    reportError(err);
    process.exitCode = FAILURE_CODE[currentCommand()] ?? 1;
  }
}

void main();
