/**
 * Crash ordering: a bitmap bit may reach the disk only after the data it
 * publishes is durable. Checked on the recorded call sequence, and by
 * simulating power cuts on a disk with a volatile write cache.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryFile, MemoryStorage, type CacheMode } from '@blk/core';
import type { CowImage } from '../src/index.js';
import { CrashStorage, MiB, RecordingStorage, SS, createFile, openFile, pattern, type IoEvent } from './helpers.js';

type Region = 'header' | 'bitmap' | 'data';

function regionOf(image: CowImage, e: { offset: number }): Region {
  if (e.offset >= image.layout.dataOffset) return 'data';
  if (e.offset >= image.layout.bitmapOffset) return 'bitmap';
  return 'header';
}

/** Every bitmap write comes after a flush that itself comes after every data write issued before it. */
function expectDataFlushedBeforeBits(image: CowImage, events: IoEvent[]): number {
  let unflushedData = false;
  let bitmapWrites = 0;
  for (const e of events) {
    if (e.op === 'flush') unflushedData = false;
    if (e.op !== 'write') continue;
    if (regionOf(image, e) === 'data') unflushedData = true;
    if (regionOf(image, e) === 'bitmap') {
      expect(unflushedData, 'a bitmap write follows a data write with no flush between').toBe(false);
      bitmapWrites++;
    }
  }
  return bitmapWrites;
}

async function recordedImage(cache: CacheMode, driverOptions?: Record<string, unknown>) {
  const storage = new RecordingStorage(
    new MemoryStorage(await createFile({ size: 256 * MiB, backing: { path: '/b', size: 256 * MiB, mtimeSec: 0 } })),
  );
  const image = await openFile(storage, { cache, driverOptions });
  storage.clear();
  return { storage, image };
}

describe('recorded order', () => {
  it('writeback: no bitmap byte is written before a flush that follows the data write', async () => {
    const { storage, image } = await recordedImage('writeback');
    await image.write(0, pattern(0, 4));
    await image.write(9 * SS, pattern(9, 1));
    await image.flush();
    await image.write(100_000 * SS, pattern(100_000, 8));
    await image.close();
    expect(expectDataFlushedBeforeBits(image, storage.events)).toBeGreaterThan(0);
  });

  it('writeback: the same holds when dirty chunks are evicted under a tiny cache bound', async () => {
    const { storage, image } = await recordedImage('writeback', { bitmapCacheBytes: 4096 });
    for (let i = 0; i < 12; i++) await image.write(i * 32768 * SS + 7 * SS, pattern(i, 2));
    expect(image.bitmap.cachedBytes).toBeLessThanOrEqual(4096);
    await image.close();
    // Eviction wrote most chunks before close did.
    expect(expectDataFlushedBeforeBits(image, storage.events)).toBeGreaterThanOrEqual(12);
  });

  it('writeback: flush() alone is a storage flush even with no dirty bits', async () => {
    const { storage, image } = await recordedImage('writeback');
    await image.flush();
    expect(storage.events).toEqual([{ op: 'flush' }]);
    await image.close();
  });

  it('writethrough: each write is data, flush, bitmap, flush, in that order', async () => {
    const { storage, image } = await recordedImage('writethrough');
    const { dataOffset, bitmapOffset } = image.layout;
    await image.write(16 * SS, pattern(16, 16));
    // (The bitmap chunk is read in between; reads do not matter for ordering.)
    expect(storage.events.filter((e) => e.op !== 'read')).toEqual([
      { op: 'write', offset: dataOffset + 16 * SS, length: 16 * SS },
      { op: 'flush' },
      { op: 'write', offset: bitmapOffset + 2, length: 2 },
      { op: 'flush' },
    ]);
    await image.close();
  });

  it('unsafe: writes the bits at flush but never flushes the storage', async () => {
    const { storage, image } = await recordedImage('unsafe');
    await image.write(0, pattern(0, 1));
    await image.flush();
    await image.close();
    expect(storage.count('flush')).toBe(0);
    expect(storage.events.filter((e) => e.op === 'write').map((e) => regionOf(image, e as { offset: number }))).toEqual(
      ['data', 'bitmap'],
    );
  });
});

function check(ok: boolean, message: string): void {
  if (!ok) throw new Error(message);
}

type Op = { kind: 'write'; sector: number; count: number } | { kind: 'flush' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      sector: fc.integer({ min: 0, max: 200 }),
      count: fc.integer({ min: 1, max: 20 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
);

/**
 * Runs `ops` (one at a time) on a disk with a volatile cache, then cuts the
 * power after storage call after storage call (all of them, or a sample), keeping a random subset
 * of the unflushed writes, reopens, and checks:
 * - no bit is set for a sector whose data is not on the disk;
 * - what the mode had promised by then is durable (writethrough: every
 *   write that resolved; writeback: every write before a flush that resolved).
 */
async function crashCase(mode: CacheMode, ops: Op[], survivors: boolean[], points: number[]): Promise<void> {
  const file = await createFile({ size: 256 * 1024, backing: { path: '/b', size: 256 * 1024, mtimeSec: 0 } });
  const disk = new CrashStorage(file);
  const image = await openFile(disk, { cache: mode });
  const tags = new Map<number, Set<number>>(); // sector -> every tag written there
  // Promises made: [log length when the promise was made, sector, tag it guarantees (at least)].
  const promises: Array<[number, number, number]> = [];
  const latest = new Map<number, number>();
  let tag = 0;
  for (const op of ops) {
    if (op.kind === 'flush') {
      await image.flush();
      for (const [s, t] of latest) promises.push([disk.log.length, s, t]);
      continue;
    }
    tag++;
    await image.write(op.sector * SS, pattern(op.sector, op.count, tag));
    for (let s = op.sector; s < op.sector + op.count; s++) {
      latest.set(s, tag);
      if (!tags.has(s)) tags.set(s, new Set());
      tags.get(s)!.add(tag);
      if (mode === 'writethrough') promises.push([disk.log.length, s, tag]);
    }
  }
  await image.close();
  const sector = new Uint8Array(SS);
  // Every crash point for short logs; a sample (plus the end) for long ones, to keep the run short.
  const n = disk.log.length;
  const ats = n <= 24 ? Array.from({ length: n + 1 }, (_, i) => i) : [...points.map((p) => p % (n + 1)), n];
  for (const at of ats) {
    const crashed = disk.crashImage(at, (i) => survivors[(i + at) % survivors.length] ?? false);
    const after = await openFile(crashed, { readOnly: true });
    const durable = new Map<number, number>();
    for (const [when, s, t] of promises) if (when <= at) durable.set(s, Math.max(t, durable.get(s) ?? 0));
    const allocated: boolean[] = [];
    for (let s = 0; s < 230; ) {
      const st = await after.blockStatus(s * SS, (230 - s) * SS);
      for (let i = 0; i < st.length / SS; i++) allocated[s + i] = st.allocated;
      s += st.length / SS;
    }
    for (let s = 0; s < 230; s++) {
      // Plain checks: a quarter million expect() calls per property run would dominate its time.
      if (!allocated[s]) {
        check(!durable.has(s), `crash at ${at}: sector ${s} was promised durable but its bit is clear`);
        continue;
      }
      crashed.readAt(after.layout.dataOffset + s * SS, sector);
      const v = new DataView(sector.buffer);
      check(v.getUint32(0) === s, `crash at ${at}: sector ${s} has its bit set over data never written there`);
      const t = v.getUint32(4);
      check(tags.get(s)?.has(t) === true, `crash at ${at}: sector ${s} holds tag ${t}, never written there`);
      check(!durable.has(s) || t >= durable.get(s)!, `crash at ${at}: sector ${s} lost a durable write`);
    }
    await after.close();
  }
}

describe('power cuts', () => {
  for (const mode of ['writeback', 'writethrough'] as const) {
    it(`${mode}: after a crash, every set bit covers data written there, and flushed/acknowledged data survives`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb, { minLength: 1, maxLength: 25 }),
          fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
          fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
          (ops, survivors, points) => crashCase(mode, ops, survivors, points),
        ),
        { numRuns: 200 },
      );
    });
  }

  it('unsafe mode offers no such guarantee: a lost data write under a durable bit is possible', async () => {
    // The contrast: write, flush (bits written without a storage flush), crash keeping only the bitmap write.
    const file = await createFile({ size: MiB, backing: { path: '/b', size: MiB, mtimeSec: 0 } });
    const disk = new CrashStorage(file);
    const image = await openFile(disk, { cache: 'unsafe' });
    await image.write(0, pattern(0, 1));
    await image.flush();
    expect(disk.log.map((e) => e.op)).toEqual(['write', 'write']); // data, then bitmap; no flush
    const crashed = disk.crashImage(2, (i) => i === 1);
    const after = await openFile(crashed, { readOnly: true });
    expect((await after.blockStatus(0, SS)).allocated).toBe(true);
    const data = new Uint8Array(SS);
    crashed.readAt(after.layout.dataOffset, data);
    expect(data.every((b) => b === 0)).toBe(true);
    await after.close();
    await image.close();
  });

  it('the crash model keeps flushed writes and drops unflushed ones it is told to', async () => {
    const disk = new CrashStorage(new MemoryFile(new Uint8Array(4)));
    await disk.write(0, new Uint8Array([1]));
    await disk.flush();
    await disk.write(1, new Uint8Array([2]));
    expect([...disk.crashImage(3, () => false).snapshot()]).toEqual([1, 0, 0, 0]);
    expect([...disk.crashImage(3, () => true).snapshot()]).toEqual([1, 2, 0, 0]);
    expect([...disk.crashImage(1, () => false).snapshot()]).toEqual([0, 0, 0, 0]);
  });
});
