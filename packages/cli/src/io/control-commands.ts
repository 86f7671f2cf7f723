/** qemu-io's flush, aio_flush, sleep and quit. */
import type { CmdInfo } from './command.js';
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
