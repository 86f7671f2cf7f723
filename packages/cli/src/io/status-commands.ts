/** qemu-io's alloc, map, length and info: what the open image holds and says about itself. */
import { cvtstr } from '../format.js';
import { printable } from '../printable.js';
import { qdictOrder, type QValue } from '../qjson.js';
import { toQValue } from '../describe.js';
import type { CmdInfo } from './command.js';
import { strerror } from './errno.js';

export const alloc: CmdInfo = {
  name: 'alloc',
  argmin: 1,
  argmax: 2,
  args: 'offset [count]',
  oneline: 'checks if offset is allocated in the file',
  async run(ctx, argv) {
    const start = ctx.num(argv[1]!);
    if (start === undefined) return false;
    let count = 512;
    if (argv.length === 3) {
      const c = ctx.num(argv[2]!);
      if (c === undefined) return false;
      count = c;
    }
    const image = ctx.image;
    let offset = start;
    let remaining = count;
    let sum = 0;
    try {
      while (remaining > 0) {
        if (offset >= image.size) {
          count -= remaining;
          break;
        }
        const st = await image.status(offset, Math.min(remaining, image.size - offset));
        if (st.allocated) sum += st.length;
        offset += st.length;
        remaining -= st.length;
      }
    } catch (err) {
      return ctx.failed('is_allocated', err);
    }
    ctx.out(`${sum}/${count} bytes allocated at offset ${cvtstr(start)}\n`);
    return true;
  },
};

export const mapCmd: CmdInfo = {
  name: 'map',
  argmin: 0,
  argmax: 0,
  args: '',
  oneline: 'prints the allocated areas of a file',
  async run(ctx) {
    const image = ctx.image;
    let offset = 0;
    try {
      while (offset < image.size) {
        const first = await image.status(offset, image.size - offset);
        let num = first.length;
        while (offset + num < image.size) {
          const next = await image.status(offset + num, image.size - offset - num);
          if (next.allocated !== first.allocated) break;
          num += next.length;
        }
        const what = first.allocated ? '    allocated' : 'not allocated';
        ctx.out(
          `${cvtstr(num)} (0x${num.toString(16)}) bytes ${what} at offset ${cvtstr(offset)} (0x${offset.toString(16)})\n`,
        );
        await ctx.outputDrained(); // a line per run: wait for a slow reader
        offset += num;
      }
    } catch (err) {
      ctx.error(`Failed to get allocation status: ${strerror(err)}`);
      return false;
    }
    return true;
  },
};

export const length: CmdInfo = {
  name: 'length',
  altname: 'l',
  argmin: 0,
  argmax: 0,
  oneline: 'gets the length of the current file',
  async run(ctx) {
    ctx.out(`${cvtstr(ctx.image.size)}\n`);
    return true;
  },
};

/**
 * Where QEMU keeps a VM's saved state in the image (bdrv_get_info's vm_state_offset): for qcow2 the
 * first L1 entry past the disk (l1_vm_state_index), so a whole L2 table's coverage past it; 0 for
 * formats without one.
 */
function vmStateOffset(
  image: { format: string; size: number; capabilities: { limits: { clusterSize?: number } } },
  spec: unknown,
): number {
  const cs = image.capabilities.limits.clusterSize;
  if (image.format !== 'qcow2' || cs === undefined) return 0;
  const extended =
    spec !== null && typeof spec === 'object' && (spec as Record<string, unknown>)['extended-l2'] === true;
  const coverage = cs * (cs / (extended ? 16 : 8));
  return Math.ceil(image.size / coverage) * coverage;
}

export const info: CmdInfo = {
  name: 'info',
  altname: 'i',
  argmin: 0,
  argmax: 0,
  oneline: 'prints information about the current file',
  async run(ctx) {
    const image = ctx.image;
    ctx.out(`format name: ${image.format}\n`);
    // The format's allocation unit, as QEMU's bdrv_get_info gives it (0 where there is none: raw).
    ctx.out(`cluster size: ${cvtstr(image.capabilities.limits.clusterSize ?? 0)}\n`);
    const spec = toQValue(image.info().formatSpecific);
    ctx.out(`vm state offset: ${cvtstr(vmStateOffset(image, spec))}\n`);
    if (spec && typeof spec === 'object' && !Array.isArray(spec) && Object.keys(spec).length > 0) {
      ctx.out('Format specific information:\n');
      ctx.out(dumpDict(spec, 1));
    }
    return true;
  },
};

function dumpDict(d: { [k: string]: QValue | undefined }, indent: number): string {
  let out = '';
  for (const key of qdictOrder(d)) {
    const v = d[key]!;
    const name = key.replace(/-/g, ' ');
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      out += `${'    '.repeat(indent)}${name}:\n${dumpDict(v, indent + 1)}`;
    } else {
      // Values include the backing path as stored in the image: escaped.
      out += `${'    '.repeat(indent)}${name}: ${printable(Array.isArray(v) ? JSON.stringify(v) : String(v))}\n`;
    }
  }
  return out;
}
