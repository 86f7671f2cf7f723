/**
 * qemu-io's `reopen [(-r|-w)] [-c cache] [-o options]`: the open file again, read-only (-r) or
 * read-write (-w), with another cache mode (-c, as open's -t) or other block options (-o, those
 * block-options.ts takes: `read-only`, `cache.direct`, `cache.no-flush`, qcow2's `lazy-refcounts`,
 * raw's `offset` and `size`, ...). Options not named keep their values, a json: name's included.
 * As in QEMU, `node-name` and `driver` (also `file.`/`backing.`) cannot change (naming the value
 * they have is fine), -r/-w cannot be mixed with `read-only`, nor -c with `cache.*`.
 *
 * blk has no in-place reopen: the image is closed (its requests completed, its cache flushed) and
 * opened again, and when that fails it is opened again as it was. The file's OS lock stays held
 * throughout (same-file.ts: a descriptor of the file holds it, converted in place for -r/-w). The
 * options are checked before the image is closed. A file opened with -s cannot be reopened (its
 * temporary overlay would go).
 */
import { getoptOrUsage, type CmdInfo } from './command.js';
import { parseCache, type IoOpenOptions } from './open-flags.js';
import { parseOptionList, resolveFileOptions, type OptionValue } from './block-options.js';
import type { IoSession } from './session.js';

const onOff = (b: boolean) => (b ? 'on' : 'off');

/** The first option of `given` that would change what cannot change, as QEMU words it. */
function unchangeable(ctx: IoSession, given: ReadonlyMap<string, string>): string | undefined {
  const file = ctx.opened!;
  for (const key of ['node-name', 'file.node-name', 'backing.node-name']) {
    if (given.has(key) && given.get(key) !== file.nodeNames.get(key)) return 'node-name';
  }
  const drivers: [string, string | undefined][] = [
    ['driver', ctx.image.format],
    ['file.driver', 'file'],
    ['backing.driver', ctx.image.backing?.format],
  ];
  for (const [key, now] of drivers) if (given.has(key) && given.get(key) !== now) return 'driver';
  return undefined;
}

export const reopen: CmdInfo = {
  name: 'reopen',
  argmin: 0,
  argmax: -1,
  args: '[(-r|-w)] [-c cache] [-o options]',
  oneline: 'reopens an image with new options',
  async run(ctx, argv) {
    const o = getoptOrUsage(ctx, this, argv, 'c:o:rw');
    if (!o) return false;
    if (o.operands.length > 0) return ctx.usage(this);
    const fail = (message: string) => {
      ctx.error(message);
      return false;
    };
    const file = ctx.opened!;
    if (o.flags.has('r') && o.flags.has('w')) return fail('Only one -r/-w option may be given');
    const c = o.flags.get('c');
    const cache = typeof c === 'string' ? parseCache(c) : undefined;
    if (typeof c === 'string' && !cache) return fail(`Invalid cache option: ${c}`);
    const list = o.flags.get('o');
    const given = typeof list === 'string' ? parseOptionList(list) : new Map<string, string>();
    const rw = o.flags.has('r') || o.flags.has('w');
    if (given.has('read-only') && rw) return fail("Cannot set both -r/-w and 'read-only'");
    if ((given.has('cache.direct') || given.has('cache.no-flush')) && cache) {
      return fail('Cannot set both -c and the cache options');
    }
    const changed = unchangeable(ctx, given);
    if (changed !== undefined) return fail(`Cannot change the option '${changed}'`);
    if (file.options.snapshot) return fail('reopen is not supported for a file opened with -s');
    // What reopen says goes last: it wins over the open's -o options and a json: name's.
    const direct = new Map<string, OptionValue>(file.direct);
    for (const [k, v] of given) direct.set(k, v);
    const options: IoOpenOptions = { ...file.options, cache: { ...file.options.cache } };
    if (rw) direct.set('read-only', onOff(o.flags.has('r')));
    if (cache) {
      options.cache = { ...cache };
      direct.set('cache.direct', onOff(cache.direct));
      direct.set('cache.no-flush', onOff(cache.noFlush));
    }
    // Check every option before the image is closed (a bad value leaves the file as it is).
    const check = resolveFileOptions(file.name, direct, { ...options, cache: { ...options.cache } });
    if (typeof check === 'string') return fail(check);
    return ctx.reopen(options, direct);
  },
};
