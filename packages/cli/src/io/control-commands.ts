/** qemu-io's flush, aio_flush, sleep, quit, truncate, sigraise and abort. */
import type { PreallocationMode } from '@blk/core';
import { getoptOrUsage, type CmdInfo } from './command.js';
import { strerror } from './errno.js';

export const aioFlush: CmdInfo = {
  name: 'aio_flush',
  argmin: 0,
  argmax: 0,
  oneline: 'completes all outstanding aio requests',
  async run(ctx) {
    await ctx.drain();
    return true;
  },
};

export const flush: CmdInfo = {
  name: 'flush',
  altname: 'f',
  argmin: 0,
  argmax: 0,
  oneline: 'flush all in-core file state to disk',
  async run(ctx) {
    try {
      await ctx.image.flush();
      return true;
    } catch (err) {
      // qemu-io fails silently here; blk says what failed, on stderr.
      ctx.error(`flush failed: ${strerror(err)}`);
      return false;
    }
  },
};

export const sleep: CmdInfo = {
  name: 'sleep',
  argmin: 1,
  argmax: 1,
  noFile: true,
  oneline: 'waits for the given value in milliseconds',
  async run(ctx, argv) {
    const ms = Number(argv[1]);
    if (!Number.isInteger(ms) || ms < 0) {
      ctx.out(`Invalid value '${argv[1]}' for milliseconds\n`);
      return false;
    }
    await new Promise((r) => setTimeout(r, ms));
    return true;
  },
};

export const quit: CmdInfo = {
  name: 'quit',
  altname: 'q',
  argmin: 0,
  argmax: 0,
  noFile: true,
  oneline: 'exit the program',
  async run(ctx) {
    ctx.quit = true;
    return true;
  },
};

/** qemu-io's truncate_f: blk_truncate(off, exact=false, prealloc): grows or shrinks the image. */
export const truncate: CmdInfo = {
  name: 'truncate',
  altname: 't',
  argmin: 1,
  argmax: 3,
  write: true,
  args: '[-m prealloc_mode] off',
  oneline: 'truncates the current file at the given offset',
  async run(ctx, argv) {
    const o = getoptOrUsage(ctx, this, argv, 'm:');
    if (!o) return false;
    if (o.operands.length !== 1) return ctx.usage(this);
    const mode = o.flags.get('m');
    const preallocation = mode === undefined || mode === true ? 'off' : mode;
    if (!PREALLOC.includes(preallocation as PreallocationMode)) {
      ctx.error(`Invalid preallocation mode '${preallocation}'`);
      return false;
    }
    const size = ctx.num(o.operands[0]!);
    if (size === undefined) return false;
    try {
      // qemu-io truncates without qemu-img resize's --shrink guard.
      await ctx.image.resize(size, { shrink: true, preallocation: preallocation as PreallocationMode });
      await ctx.afterWrite();
      return true;
    } catch (err) {
      ctx.report(err);
      return false;
    }
  },
};

const PREALLOC: readonly PreallocationMode[] = ['off', 'metadata', 'falloc', 'full'];

/** Linux's NSIG: qemu-io refuses a signal number above it. */
const NSIG = 65;

/**
 * qemu-io's sigraise_f: raise(signal) on this process, after the output is
 * written (qemu-io flushes stdout and stderr first). iotests use `sigraise 9`
 * to kill the process mid-session and look at the image it left behind;
 * nothing is flushed or closed, as with QEMU.
 */
export const sigraise: CmdInfo = {
  name: 'sigraise',
  argmin: 1,
  argmax: 1,
  noFile: true,
  args: 'signal',
  oneline: 'raises a signal',
  async run(ctx, argv) {
    const sig = ctx.num(argv[1]!);
    if (sig === undefined) return false;
    if (sig > NSIG) {
      ctx.out(`signal argument '${argv[1]}' is too large to be a valid signal\n`);
      return false;
    }
    await ctx.outputDrained();
    process.kill(process.pid, sig);
    return true;
  },
};

/** qemu-io's abort_f: abort(3), a crash that leaves the image as it is (SIGABRT). */
export const abort: CmdInfo = {
  name: 'abort',
  argmin: 0,
  argmax: 0,
  noFile: true,
  oneline: 'simulate a program crash using abort(3)',
  async run(ctx) {
    await ctx.outputDrained();
    // SIGABRT as abort(3) raises it; process.abort() would also print V8's stack trace.
    process.kill(process.pid, 'SIGABRT');
    return true;
  },
};
