/**
 * blk io: qemu-io. Opens FILE (if given) with qemu-io's options, then runs
 * the -c commands in order, or, without -c, the commands read from standard
 * input (one per line; on a terminal with qemu-io's `qemu-io> ` prompt and
 * line editing, in a pipe silently). Every command runs even after one
 * failed; the exit code is 1 if any failed, as qemu-io's. aio requests still
 * in flight are completed before the file is closed.
 */
import * as readline from 'node:readline';
import { UsageError } from '../errors.js';
import { IoSession, runCommand } from '../io/commands.js';
import { NOCACHE, parseCache, parseDiscard, validAio, type IoOpenOptions } from '../io/open-flags.js';
import { rulesOf, type BackingRuleFlags } from '../common.js';
import { drained } from '../output.js';

export interface IoOpts extends BackingRuleFlags {
  format?: string;
  readOnly?: boolean;
  cmd: string[];
  backingProbe?: boolean;
  snapshot?: boolean;
  nocache?: boolean;
  copyOnRead?: boolean;
  misalign?: boolean;
  nativeAio?: boolean;
  aio?: string;
  cache?: string;
  discard?: string;
  trace?: string;
  forceShare?: boolean;
  object?: string[];
  imageOpts?: boolean;
  /** -F: the backing file's format (cow records none). */
  backingFormat?: string;
}

/** qemu-io's command line, checked in qemu-io's order with its messages; refuses what blk cannot do. */
export function ioOpenOptions(opts: IoOpts): IoOpenOptions {
  const options: IoOpenOptions = {
    format: opts.format,
    readOnly: Boolean(opts.readOnly),
    snapshot: Boolean(opts.snapshot),
    // blk's default is writeback (flush on close and on `flush`); qemu-io's is writethrough.
    cache: { writethrough: false, noFlush: false, direct: false },
    unmap: true,
    forceShare: Boolean(opts.forceShare),
    nativeAio: Boolean(opts.nativeAio) || opts.aio === 'native',
    backingProbe: opts.backingProbe,
    rules: rulesOf(opts),
    backingFormat: opts.backingFormat,
  };
  if (opts.discard !== undefined) {
    const unmap = parseDiscard(opts.discard);
    if (unmap === undefined) throw new UsageError(`Invalid discard option: ${opts.discard}`);
    options.unmap = unmap;
  }
  if (opts.aio !== undefined && !validAio(opts.aio)) throw new UsageError(`Invalid aio option: ${opts.aio}`);
  if (opts.cache !== undefined) {
    const cache = parseCache(opts.cache);
    if (!cache) throw new UsageError(`Invalid cache option: ${opts.cache}`);
    options.cache = cache;
  }
  if (opts.nocache) options.cache = NOCACHE;
  if (opts.trace !== undefined) throw new UsageError('-T/--trace is not supported: blk has no trace events');
  if (opts.object !== undefined && opts.object.length > 0) {
    throw new UsageError('--object is not supported: blk has no secrets or other QOM objects');
  }
  if (opts.imageOpts) throw new UsageError('--image-opts is not supported: name the file, and its format with -f');
  if (opts.copyOnRead) throw new UsageError('-C/--copy-on-read is not supported by blk');
  return options;
}

export async function io(file: string | undefined, opts: IoOpts): Promise<number> {
  const options = ioOpenOptions(opts);
  const session = new IoSession(
    {
      out: (text) => {
        process.stdout.write(text);
      },
      err: (text) => {
        process.stderr.write(text);
      },
      drain: () => drained(process.stdout),
    },
    Boolean(opts.backingProbe),
    rulesOf(opts),
  );
  if (file !== undefined && !(await session.open(file, options))) return 1;
  let failed = false;
  try {
    if (opts.cmd.length > 0) {
      for (const line of opts.cmd) {
        if (!(await runCommand(session, line))) failed = true;
        if (session.quit) break;
      }
    } else {
      const interactive = Boolean(process.stdin.isTTY);
      const rl = readline.createInterface({
        input: process.stdin,
        output: interactive ? process.stdout : undefined,
        terminal: interactive,
      });
      if (interactive) {
        rl.setPrompt('qemu-io> ');
        rl.prompt();
      }
      for await (const line of rl) {
        if (!(await runCommand(session, line))) failed = true;
        if (session.quit) break;
        if (interactive) rl.prompt();
      }
      rl.close();
    }
  } finally {
    if (!(await session.close())) failed = true;
  }
  return failed ? 1 : 0;
}
