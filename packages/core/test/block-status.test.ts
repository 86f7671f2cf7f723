/**
 * Block status as QEMU and NBD mean it (contract v2): a driver may answer for
 * more than was asked and the core clamps; the chain status carries
 * allocated / data / zero / depth / hostOffset; `map()` asks each layer about
 * each of its own runs once (driver calls linear in runs, never runs x depth).
 */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  MemoryFile,
  MemoryVfs,
  createImage,
  openImage,
  type BlockDriver,
  type BlockStatus,
  type DriverImage,
  type Image,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { overlayDriver } from './fixtures/overlay-driver.js';

const KiB = 1024;
const CHUNK = 64 * KiB; // MemoryFile's granule: a raw file's extents come in these

/** Wraps `inner` so that every blockStatus call is counted per file; `long`: answers for the rest of the image. */
function counting(inner: BlockDriver, calls: Map<string, number>, long = new Set<string>()): BlockDriver {
  return {
    ...inner,
    async open(storage, options) {
      const image = await inner.open(storage, options);
      const status = image.blockStatus.bind(image);
      image.blockStatus = (offset: number, length: number): Promise<BlockStatus> => {
        calls.set(storage.path, (calls.get(storage.path) ?? 0) + 1);
        return status(
          offset,
          long.has(storage.path) ? Math.ceil(image.size / image.sectorSize) * image.sectorSize - offset : length,
        );
      };
      return image;
    },
  };
}

/** A driver without storage whose allocation is `runs` ([start, end) allocated) and who always answers the whole run. */
function longRunDriver(size: number, runs: Array<[number, number]>, calls: number[]): BlockDriver {
  const driver: BlockDriver = {
    name: 'longrun',
    probeBytes: 0,
    probe: () => 0,
    async open(storage) {
      const image: DriverImage = {
        driver,
        sectorSize: 512,
        size,
        read: async (_o, into) => {
          into.fill(0);
        },
        async blockStatus(offset): Promise<BlockStatus> {
          calls.push(offset);
          const inside = runs.find(([s, e]) => offset >= s && offset < e);
          if (inside) return { allocated: true, length: inside[1] - offset, hostOffset: 4096 + offset };
          const next =
            runs
              .map(([s]) => s)
              .filter((s) => s > offset)
              .sort((a, b) => a - b)[0] ?? size;
          return { allocated: false, length: next - offset };
        },
        flush: async () => undefined,
        close: () => storage.close(),
        info: () => ({}),
      };
      return image;
    },
  };
  return driver;
}

async function collect(image: Image, offset?: number, length?: number) {
  const runs = [];
  for await (const r of image.map(offset, length)) runs.push(r);
  return runs;
}

describe('a driver may answer for more than was asked: the core clamps', () => {
  const size = 1024 * KiB;
  const runs: Array<[number, number]> = [];
  for (let s = 0; s < size; s += 128 * KiB) runs.push([s, s + 64 * KiB]);

  async function open(calls: number[]) {
    const vfs = new MemoryVfs();
    vfs.put('/l.img', new Uint8Array(0));
    return openImage('/l.img', {
      registry: new DriverRegistry([longRunDriver(size, runs, calls)]),
      vfs,
      format: 'longrun',
      readOnly: true,
    });
  }

  it('status() and chainStatus() cut the run at the query; status(..., { whole: true }) keeps what the driver said', async () => {
    const image = await open([]);
    expect(await image.status(1000, 512)).toEqual({ allocated: true, length: 512, hostOffset: 5096 });
    expect(await image.status(1000, 512, { whole: true })).toEqual({
      allocated: true,
      length: 64 * KiB - 1000,
      hostOffset: 5096,
    });
    expect(await image.isAllocated(64 * KiB + 7, 100)).toEqual({ allocated: false, length: 100 });
    expect(await image.chainStatus(1000, 512)).toMatchObject({
      length: 512,
      depth: 0,
      allocated: true,
      data: true,
      zero: false,
      hostOffset: 5096,
    });
    expect(await image.chainStatus(size - 512, 512)).toMatchObject({ length: 512, depth: undefined, allocated: false });
    await expect(image.status(0, 512, { whole: 1 as never })).rejects.toMatchObject({
      kind: 'invalid-argument',
      field: 'options.whole',
    });
  });

  it('map() asks the driver once per run, and a walk in small steps reuses the longer answer (ChainCursor)', async () => {
    const calls: number[] = [];
    const image = await open(calls);
    const got = (await collect(image)).map((r) => [r.start, r.length, r.depth]);
    expect(got).toEqual(
      runs.flatMap(([s, e]) => [
        [s, e - s, 0],
        [e, 64 * KiB, undefined],
      ]),
    );
    expect(calls.length).toBe(2 * runs.length);
    // The cursor (used by convert, compare) asked in 4 KiB steps: still one driver call per run.
    calls.length = 0;
    const { ChainCursor } = await import('@blk/core');
    const cursor = new ChainCursor(image);
    for (let pos = 0; pos < size; pos += 4 * KiB) {
      const st = await cursor.at(pos, 4 * KiB);
      expect(st.length).toBe(4 * KiB);
    }
    expect(calls.length).toBe(2 * runs.length);
  });
});

describe('chain status records (what an NBD server answers)', () => {
  it('gives allocated, data, zero, depth and hostOffset for top data, base data, base holes and past the base', async () => {
    const vfs = new MemoryVfs();
    const file = new MemoryFile();
    file.truncate(4 * CHUNK);
    file.writeAt(CHUNK, new Uint8Array(CHUNK).fill(7)); // base: hole, data, hole, hole
    vfs.put('/n/base.raw', file);
    const registry = new DriverRegistry([overlayDriver, rawDriver]);
    await createImage('/n/top.ovl', { registry, vfs, format: 'ovl', backing: '/n/base.raw', size: 6 * CHUNK });
    const top = await openImage('/n/top.ovl', { registry, vfs, format: 'ovl', backing: { format: 'raw' } });
    await top.write(3 * CHUNK, new Uint8Array(512).fill(1));
    const runs = (await collect(top)).map(({ start, length, depth, allocated, data, zero, hostOffset }) => ({
      start,
      length,
      depth,
      allocated,
      data,
      zero,
      hostOffset,
    }));
    const dataOffset = (await top.chainStatus(3 * CHUNK, 512)).hostOffset! - 3 * CHUNK;
    expect(runs).toEqual([
      { start: 0, length: CHUNK, depth: 1, allocated: true, data: false, zero: true, hostOffset: 0 },
      { start: CHUNK, length: CHUNK, depth: 1, allocated: true, data: true, zero: false, hostOffset: CHUNK },
      { start: 2 * CHUNK, length: CHUNK, depth: 1, allocated: true, data: false, zero: true, hostOffset: 2 * CHUNK },
      {
        start: 3 * CHUNK,
        length: 512,
        depth: 0,
        allocated: true,
        data: true,
        zero: false,
        hostOffset: dataOffset + 3 * CHUNK,
      },
      {
        start: 3 * CHUNK + 512,
        length: CHUNK - 512,
        depth: 1,
        allocated: true,
        data: false,
        zero: true,
        hostOffset: 3 * CHUNK + 512,
      },
      {
        start: 4 * CHUNK,
        length: 2 * CHUNK,
        depth: undefined,
        allocated: false,
        data: false,
        zero: true,
        hostOffset: undefined,
      },
    ]);
    // This layer alone: a raw hole is allocated (the layer decides what it reads), not data, zero.
    const base = top.backing!;
    expect(await base.status(0, 512)).toEqual({ allocated: true, length: 512, zero: true, hostOffset: 0 });
    await top.close();
  });
});

describe('map() over a chain: driver calls are linear in runs, not runs x depth', () => {
  const N = 100; // data runs in the fragmented layer

  /** raw base with N data chunks (every other chunk) <- mid.ovl <- top.ovl, both holding `upper` runs of 512 bytes. */
  async function chain(options: { fragmentedTop?: boolean; long?: string[] }) {
    const vfs = new MemoryVfs();
    const size = 2 * N * CHUNK;
    const file = new MemoryFile();
    file.truncate(size);
    if (!options.fragmentedTop)
      for (let i = 0; i < N; i++) file.writeAt(2 * i * CHUNK, new Uint8Array(CHUNK).fill(1 + (i % 200)));
    else file.writeAt(0, new Uint8Array(CHUNK).fill(9));
    vfs.put('/m/base.raw', file);
    const calls = new Map<string, number>();
    const plain = new DriverRegistry([overlayDriver, rawDriver]);
    await createImage('/m/mid.ovl', { registry: plain, vfs, format: 'ovl', backing: '/m/base.raw', size });
    const long = new Set(options.long ?? []);
    const registry = new DriverRegistry([counting(overlayDriver, calls, long), counting(rawDriver, calls, long)]);
    const mid = await openImage('/m/mid.ovl', { registry, vfs, format: 'ovl' });
    await mid.write(CHUNK + 512, new Uint8Array(512).fill(2));
    await mid.write(5 * CHUNK, new Uint8Array(1024).fill(2));
    await mid.close();
    await createImage('/m/top.ovl', {
      registry: plain,
      vfs,
      format: 'ovl',
      backing: { path: '/m/mid.ovl', format: 'ovl' },
      size,
    });
    const top = await openImage('/m/top.ovl', { registry, vfs, format: 'ovl', backing: { format: 'probe' } });
    if (options.fragmentedTop) {
      for (let i = 0; i < N; i++) await top.write((2 * i + 1) * CHUNK, new Uint8Array(512).fill(3));
    } else {
      await top.write(3 * CHUNK, new Uint8Array(512).fill(3));
    }
    calls.clear();
    return { top, calls, size };
  }

  it('a fragmented base under two mostly empty overlays: each layer is asked about its own runs only', async () => {
    const { top, calls } = await chain({});
    const runs = await collect(top);
    // Base: N data runs and N holes; mid: 2 runs, top: 1 run (each splitting a run below).
    expect(runs.filter((r) => r.depth === 2).length).toBeGreaterThanOrEqual(2 * N);
    expect(runs.filter((r) => r.depth === 1).map((r) => [r.start, r.length])).toEqual([
      [CHUNK + 512, 512],
      [5 * CHUNK, 1024],
    ]);
    expect(runs.filter((r) => r.depth === 0).map((r) => [r.start, r.length])).toEqual([[3 * CHUNK, 512]]);
    // runs x depth would ask the top and the mid layer ~2N times each.
    expect(calls.get('/m/top.ovl')).toBeLessThanOrEqual(3);
    expect(calls.get('/m/mid.ovl')).toBeLessThanOrEqual(5);
    expect(calls.get('/m/base.raw')).toBeLessThanOrEqual(2 * N + 6);
    await top.close();
  });

  it('a fragmented top over an empty middle layer: the middle layer is not asked once per gap of the top', async () => {
    for (const long of [[], ['/m/mid.ovl', '/m/base.raw']]) {
      const { top, calls, size } = await chain({ fragmentedTop: true, long });
      const runs = await collect(top);
      expect(runs.filter((r) => r.depth === 0).length).toBe(N);
      let pos = 0;
      for (const r of runs) {
        expect(r.start).toBe(pos);
        pos += r.length;
      }
      expect(pos).toBe(size);
      expect(calls.get('/m/top.ovl')).toBeLessThanOrEqual(2 * N + 1);
      // The middle layer has 5 runs (two written pieces); the base 2 (data, hole).
      expect(calls.get('/m/mid.ovl')).toBeLessThanOrEqual(5);
      expect(calls.get('/m/base.raw')).toBeLessThanOrEqual(4);
      await top.close();
    }
  });
});

describe('readMapped: the bytes and their chain status under one tracked read', () => {
  it('returns the runs of map() and the bytes of read(); zero runs are filled with zeros; a resize waits for it', async () => {
    const vfs = new MemoryVfs();
    const file = vfs.put('/a.raw', new Uint8Array(0));
    file.writeAt(CHUNK, new Uint8Array(CHUNK).fill(5));
    file.length = 4 * CHUNK;
    const image = await openImage('/a.raw', { registry: new DriverRegistry([rawDriver]), vfs, format: 'raw' });
    const into = new Uint8Array(3 * CHUNK - 100).fill(0xee);
    const runs = await image.readMapped(50, into);
    const mapped = [];
    for await (const r of image.map(50, into.length)) mapped.push(r);
    expect(runs).toEqual(mapped);
    expect(runs.map((r) => [r.start, r.length, r.zero])).toEqual([
      [50, CHUNK - 50, true],
      [CHUNK, CHUNK, false],
      [2 * CHUNK, CHUNK - 50, true],
    ]);
    expect(Buffer.compare(into, await image.read(50, into.length))).toBe(0);
    // A resize issued while a mapped read waits must not deadlock it (the status skips admission).
    const a = image.readMapped(0, new Uint8Array(CHUNK));
    const b = image.resize(8 * CHUNK);
    const c = image.readMapped(0, new Uint8Array(8 * CHUNK));
    await Promise.all([a, b, c]);
    await expect(image.readMapped(4 * CHUNK - 1, new Uint8Array(2))).resolves.toHaveLength(1);
    await expect(image.readMapped(8 * CHUNK, new Uint8Array(1))).rejects.toMatchObject({ kind: 'out-of-range' });
    await image.close();
  });
});
