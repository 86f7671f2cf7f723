/**
 * The cost of walking a backing chain (map, convert, compare, commit) is
 * linear in the runs found, and a cow bitmap costs what is stored of it:
 *
 * - each layer is asked about each of its runs once: an empty overlay over a
 *   base with N extents is not re-scanned N times (ChainCursor);
 * - a bitmap in a hole of its file (sparse, or past the end) is skipped with
 *   one extent lookup, not read byte by byte.
 *
 * Measured in layer status calls and bytes read, not time, so the tests hold
 * on a loaded machine. A read budget in the storage stops the old quadratic
 * walk early instead of letting it run for minutes.
 */
import { describe, expect, it, vi } from 'vitest';
import {
  ChainCursor,
  ForwardingVfs,
  MemoryFile,
  MemoryVfs,
  createImage,
  openImage,
  type Image,
  type Storage,
  type VfsOpenOptions,
} from '@blk/images';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

/** Counts the bytes read from each file, and fails reads past a budget (so a quadratic walk stops early). */
class CountingVfs extends ForwardingVfs {
  readonly bytesRead = new Map<string, number>();
  constructor(
    inner: MemoryVfs,
    readonly budget: number,
  ) {
    super(inner);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = await this.inner.open(path, options);
    const counts = this.bytesRead;
    const budget = this.budget;
    return Object.assign(Object.create(storage) as Storage, {
      read(offset: number, into: Uint8Array): Promise<number> {
        const total = (counts.get(path) ?? 0) + into.length;
        counts.set(path, total);
        if (total > budget)
          return Promise.reject(new Error(`${path}: read ${total} bytes, over the budget of ${budget}`));
        return storage.read(offset, into);
      },
    });
  }

  total(): number {
    let n = 0;
    for (const v of this.bytesRead.values()) n += v;
    return n;
  }
}

/** A raw base of `size` bytes with `extents` 4 KiB extents spread evenly (a hole between them). */
function sparseBase(vfs: MemoryVfs, size: number, extents: number): Array<[number, number]> {
  const file = new MemoryFile();
  file.truncate(size);
  const at: Array<[number, number]> = [];
  const data = new Uint8Array(4 * KiB).fill(0x5a);
  for (let i = 0; i < extents; i++) {
    const offset = Math.floor((i * size) / extents / (64 * KiB)) * 64 * KiB;
    file.writeAt(offset, data);
    at.push([offset, data.length]);
  }
  vfs.put('/d/base.raw', file);
  return at;
}

interface Run {
  start: number;
  length: number;
  depth: number | undefined;
  zero: boolean;
}

async function walk(image: Image): Promise<Run[]> {
  const runs: Run[] = [];
  for await (const run of image.map())
    runs.push({ start: run.start, length: run.length, depth: run.depth, zero: run.zero });
  return runs;
}

/** Where the walk found data (not zeros). */
function dataStarts(runs: Run[]): number[] {
  return runs.filter((r) => r.depth !== undefined && !r.zero).map((r) => r.start);
}

describe('chain walks cost what they find', () => {
  it('map of an empty 1 TiB overlay over a 1000-extent base asks the overlay once and reads none of its unwritten bitmap', async () => {
    const mem = new MemoryVfs('/');
    const extents = sparseBase(mem, TiB, 1000);
    await createImage('/d/top.cow', { vfs: mem, format: 'cow', backing: '/d/base.raw' });
    const vfs = new CountingVfs(mem, 64 * MiB);
    const image = await openImage('/d/top.cow', { vfs, format: 'cow', readOnly: true });
    try {
      const topStatus = vi.spyOn(image, 'status');
      const runs = await walk(image);
      // The base's data, through the overlay, exactly.
      expect(dataStarts(runs)).toEqual(extents.map(([offset]) => offset));
      expect(runs.every((r) => r.depth === 1)).toBe(true);
      // Once, not once per base extent.
      expect(topStatus.mock.calls.length).toBe(1);
      // The 256 MiB bitmap was never written (a hole in a sparse file): nothing of it is read.
      expect(vfs.bytesRead.get('/d/top.cow') ?? 0).toBeLessThan(64 * KiB);
    } finally {
      await image.close();
    }
  });

  it('a stored (not sparse) bitmap is read about once for the whole walk, not once per base extent', async () => {
    const mem = new MemoryVfs('/');
    const size = 64 * GiB; // 16 MiB of bitmap
    sparseBase(mem, size, 1000);
    await createImage('/d/top.cow', { vfs: mem, format: 'cow', backing: '/d/base.raw' });
    // Write the bitmap out as zeros, as a tool that does not make sparse files would.
    const top = mem.file('/d/top.cow');
    const header = 4096; // the bitmap starts within the first 4 KiB
    const zeros = new Uint8Array(MiB);
    for (let at = header; at < header + size / 512 / 8; at += zeros.length) top.writeAt(at, zeros);
    const vfs = new CountingVfs(mem, 256 * MiB);
    const image = await openImage('/d/top.cow', { vfs, format: 'cow', readOnly: true });
    try {
      const topStatus = vi.spyOn(image, 'status');
      const runs = await walk(image);
      expect(dataStarts(runs)).toHaveLength(1000);
      expect(topStatus.mock.calls.length).toBe(1);
      expect(vfs.bytesRead.get('/d/top.cow')!).toBeLessThanOrEqual(size / 512 / 8 + 2 * MiB);
    } finally {
      await image.close();
    }
  });

  it('map of a 64 TiB overlay with 4 KiB stored reads none of its 16 GiB bitmap', async () => {
    const mem = new MemoryVfs('/');
    mem.put('/d/base.raw', new Uint8Array(MiB).fill(1));
    // The file is 16 GiB long (the bitmap) and all of it but the header is a hole.
    await createImage('/d/top.cow', {
      vfs: mem,
      format: 'cow',
      size: 64 * TiB,
      backing: '/d/base.raw',
      driverOptions: { variant: 'v2-qemu-lp64' },
    });
    const vfs = new CountingVfs(mem, 64 * MiB);
    const image = await openImage('/d/top.cow', { vfs, format: 'cow', readOnly: true });
    try {
      const runs = await walk(image);
      expect(runs.map((r) => [r.start, r.length, r.depth])).toEqual([
        [0, MiB, 1],
        [MiB, 64 * TiB - MiB, undefined],
      ]);
      expect(vfs.total()).toBeLessThan(MiB);
    } finally {
      await image.close();
    }
  });

  it('a cursor does not reuse an answer once its layer was written', async () => {
    const mem = new MemoryVfs('/');
    mem.put('/d/base.raw', new Uint8Array(4 * MiB));
    await createImage('/d/top.cow', { vfs: mem, format: 'cow', backing: '/d/base.raw' });
    const image = await openImage('/d/top.cow', { vfs: mem, format: 'cow' });
    try {
      const cursor = new ChainCursor(image);
      expect(await cursor.at(0, 4 * MiB)).toMatchObject({ length: 4 * MiB, depth: 1 });
      await image.write(MiB, new Uint8Array(512).fill(1));
      expect(await cursor.at(512, 4 * MiB - 512)).toMatchObject({ length: MiB - 512, depth: 1 });
      expect(await cursor.at(MiB, 3 * MiB)).toMatchObject({ length: 512, depth: 0 });
      // And reuse while nothing changed: the same run again without asking the layer.
      const status = vi.spyOn(image, 'status');
      expect(await cursor.at(MiB + 512, 3 * MiB - 512)).toMatchObject({ length: 3 * MiB - 512, depth: 1 });
      expect(await cursor.at(2 * MiB, 2 * MiB)).toMatchObject({ length: 2 * MiB, depth: 1 });
      expect(status.mock.calls.length).toBe(1);
    } finally {
      await image.close();
    }
  });
});
