/**
 * qemu-io's open and close: `open [-rsCnkU] [-t cache] [-i aio] [-d discard]
 * [-o options] path` opens a file when none is open (the flags mean what
 * they mean on blk io's command line, see open-options.ts), `close` closes it.
 */
import { getoptOrUsage, type CmdInfo } from './command.js';
import { NOCACHE, parseCache, parseDiscard, validAio, type IoOpenOptions } from './open-flags.js';
import { parseOptionList } from './block-options.js';

export const open: CmdInfo = {
  name: 'open',
  altname: 'o',
  argmin: 1,
  argmax: -1,
  noFile: true,
  args: '[-rsCnkU] [-t cache] [-d discard] [-o options] [path]',
  oneline: 'open the file specified by path',
  async run(ctx, argv) {
    const o = getoptOrUsage(ctx, this, argv, 'snCro:kt:d:Ui:');
    if (!o) return false;
    // open_f's defaults, whatever the command line said: read-write, writethrough, unmap.
    const options: IoOpenOptions = {
      readOnly: false,
      snapshot: false,
      cache: { writethrough: true, noFlush: false, direct: false },
      unmap: true,
      forceShare: false,
      nativeAio: false,
    };
    const t = o.flags.get('t');
    const cache = typeof t === 'string' ? parseCache(t) : undefined;
    if (typeof t === 'string' && !cache) {
      ctx.error(`Invalid cache option: ${t}`);
      return false;
    }
    if (cache) options.cache = cache;
    if (o.flags.has('n')) options.cache = NOCACHE;
    const i = o.flags.get('i');
    if (typeof i === 'string' && !validAio(i)) {
      ctx.error(`Invalid aio option: ${i}`);
      return false;
    }
    options.nativeAio = o.flags.has('k') || i === 'native';
    const d = o.flags.get('d');
    if (typeof d === 'string') {
      const unmap = parseDiscard(d);
      if (unmap === undefined) {
        ctx.error(`Invalid discard option: ${d}`);
        return false;
      }
      options.unmap = unmap;
    }
    if (o.flags.has('C')) {
      ctx.error('open: -C (copy-on-read) is not supported by blk');
      return false;
    }
    options.readOnly = o.flags.has('r');
    options.snapshot = o.flags.has('s');
    options.forceShare = o.flags.has('U');
    const list = o.flags.get('o');
    if (o.operands.length !== 1) return ctx.usage(this);
    const name = o.operands[0]!;
    return ctx.open(name, options, typeof list === 'string' ? parseOptionList(list) : undefined);
  },
};

export const close: CmdInfo = {
  name: 'close',
  altname: 'c',
  argmin: 0,
  argmax: 0,
  oneline: 'close the current open file',
  async run(ctx) {
    return ctx.close();
  },
};
