/**
 * blk io: qemu-io. Runs the -c commands in order, or, without -c, the
 * commands read from standard input (one per line; a `blk> ` prompt only on
 * a terminal). Every command runs even after one failed; the exit code is 1
 * if any failed, as qemu-io's. aio requests still in flight are completed
 * before the image is closed.
 */
import * as readline from 'node:readline';
import { openCli } from '../common.js';
import { IoSession } from '../io/commands.js';

export interface IoOpts {
  format?: string;
  readOnly?: boolean;
  cmd: string[];
  backingProbe?: boolean;
}

export async function io(file: string, opts: IoOpts): Promise<number> {
  const image = await openCli(file, { format: opts.format, readOnly: Boolean(opts.readOnly), backingProbe: opts.backingProbe });
  const session = new IoSession(image, {
    out: (text) => { process.stdout.write(text); },
    err: (text) => { process.stderr.write(text); },
  });
  let failed = false;
  try {
    if (opts.cmd.length > 0) {
      for (const line of opts.cmd) {
        if (!(await session.execute(line))) failed = true;
        if (session.quit) break;
      }
    } else {
      const interactive = Boolean(process.stdin.isTTY);
      const rl = readline.createInterface({ input: process.stdin, terminal: interactive });
      if (interactive) {
        rl.setPrompt('blk> ');
        rl.prompt();
      }
      for await (const line of rl) {
        if (!(await session.execute(line))) failed = true;
        if (session.quit) break;
        if (interactive) rl.prompt();
      }
      rl.close();
    }
    await session.drain();
  } finally {
    await image.close();
  }
  return failed ? 1 : 0;
}
