/**
 * commit (and commit -b, every layer above BASE) streams the overlay's runs:
 * its survey keeps totals, not a list of every run, so the memory it holds
 * when the copy begins does not grow with fragmentation (a list took 653 MB
 * for a fragmented 4 GiB overlay).
 * Measured as live heap after a full GC at the first write to the backing
 * file; the test stops the job there.
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  ForwardingVfs,
  MemoryFile,
  MemoryVfs,
  createImage,
  openImage,
  type Storage,
  type VfsOpenOptions,
} from '@blk/images';
import { commitImage, commitIntoBase } from '../packages/cli/src/index.js';

const MiB = 1024 * 1024;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

class StopAtFirstWrite extends Error {}

/** Measures the live heap at the first write to `target`, then fails that write (ending the job). */
class HeapAtFirstWrite extends ForwardingVfs {
  heapAtFirstWrite: number | undefined;
  constructor(
    inner: MemoryVfs,
    private readonly target: string,
  ) {
    super(inner);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = await this.inner.open(path, options);
    if (path !== this.target) return storage;
    return Object.assign(Object.create(storage) as Storage, {
      write: (): Promise<void> => {
        gc();
        this.heapAtFirstWrite = process.memoryUsage().heapUsed;
        return Promise.reject(new StopAtFirstWrite('stopped at the first write'));
      },
    });
  }
}

/** A memory file system holding a zeroed raw `/d/base.raw` of `size` bytes. */
function withRawBase(size: number): MemoryVfs {
  const mem = new MemoryVfs('/');
  const base = new MemoryFile();
  base.truncate(size);
  mem.put('/d/base.raw', base);
  return mem;
}

/** Allocates every other sector of the cow overlay at `path` (one-sector runs throughout). */
async function fragment(mem: MemoryVfs, path: string): Promise<void> {
  const image = await openImage(path, { vfs: mem, format: 'cow', readOnly: true, backing: { mode: 'ignore' } });
  const bitmapOffset = image.info().formatSpecific.bitmapOffset as number;
  const sectors = image.size / 512;
  await image.close();
  mem.file(path).writeAt(bitmapOffset, new Uint8Array(sectors / 8).fill(0x55));
}

/** How much the live heap has grown when `job` first writes to /d/base.raw (the job is stopped there). */
async function heapGrowthAtFirstWrite(
  mem: MemoryVfs,
  job: (vfs: HeapAtFirstWrite) => Promise<unknown>,
): Promise<number> {
  const vfs = new HeapAtFirstWrite(mem, '/d/base.raw');
  gc();
  const before = process.memoryUsage().heapUsed;
  await expect(job(vfs)).rejects.toThrow(StopAtFirstWrite);
  expect(vfs.heapAtFirstWrite).toBeDefined();
  return vfs.heapAtFirstWrite! - before;
}

describe('commit streams the runs it copies', () => {
  it('holds no per-run state when the copy of a 512 MiB overlay with half a million runs begins', async () => {
    const mem = withRawBase(512 * MiB);
    await createImage('/d/top.cow', { vfs: mem, format: 'cow', backing: '/d/base.raw' });
    // Every other sector allocated: 512 Ki runs of one sector.
    await fragment(mem, '/d/top.cow');

    const growth = await heapGrowthAtFirstWrite(mem, (vfs) => commitImage('/d/top.cow', { vfs }));
    // A list of half a million runs is over 20 MB; streaming holds a few chunks of bitmap and buffers.
    expect(growth).toBeLessThan(8 * MiB);
  }, 60_000);

  it('commit -b holds no per-run state of any layer when the copy of two 256 MiB layers with half a million runs begins', async () => {
    const mem = withRawBase(256 * MiB);
    await createImage('/d/mid.cow', { vfs: mem, format: 'cow', backing: '/d/base.raw' });
    // 256 Ki one-sector runs in each layer above BASE (the middle one written before the top is made over it).
    await fragment(mem, '/d/mid.cow');
    await createImage('/d/top.cow', { vfs: mem, format: 'cow', backing: { path: '/d/mid.cow', format: 'cow' } });
    await fragment(mem, '/d/top.cow');

    // A cow records no backing format: the middle layer is found by probing (blk commit --backing-probe).
    const growth = await heapGrowthAtFirstWrite(mem, (vfs) =>
      commitIntoBase('/d/top.cow', '/d/base.raw', { vfs, backingProbe: true }),
    );
    // Lists of every layer's runs are over 20 MB (27 MB measured); streaming holds a few chunks of bitmap and buffers.
    expect(growth).toBeLessThan(8 * MiB);
  }, 60_000);
});
