/** BitmapCache on its own: scans and updates against a naive model, the memory bound, and where it writes. */
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { MemoryFile, MemoryStorage, type CacheMode, type Storage, type StorageExtent } from '@blk/core';
import { BitmapCache } from '../src/index.js';
import { RecordingStorage } from './helpers.js';

const OFFSET = 100; // bitmap offset inside the file: not chunk-aligned on purpose

function naiveBit(bitmap: Uint8Array, n: number): boolean {
  return (bitmap[n >> 3]! & (1 << (n & 7))) !== 0;
}

function naiveRun(bitmap: Uint8Array, tracked: number, first: number, count: number): { set: boolean; count: number } {
  const bit = (n: number): boolean => n < tracked && naiveBit(bitmap, n);
  const want = bit(first);
  let n = 0;
  while (n < count && bit(first + n) === want) n++;
  return { set: want, count: n };
}

function cacheOver(
  bitmap: Uint8Array,
  options: { tracked: number; chunkBytes: number; maxBytes?: number; mode?: CacheMode },
) {
  const file = new MemoryFile();
  file.writeAt(OFFSET, bitmap);
  file.writeAt(OFFSET + bitmap.length, new Uint8Array([0xa5, 0xa5])); // bytes after the bitmap that must stay as they are
  const storage = new RecordingStorage(new MemoryStorage(file));
  const cache = new BitmapCache({
    storage,
    bitmapOffset: OFFSET,
    bitmapLength: bitmap.length,
    trackedBits: options.tracked,
    mode: options.mode ?? 'writeback',
    chunkBytes: options.chunkBytes,
    maxBytes: options.maxBytes,
  });
  return { file, storage, cache };
}

/** Bitmaps with long runs of 0x00 / 0xFF (to exercise the byte and word skips) and random bytes between. */
const bitmapArb = fc
  .array(
    fc.oneof(
      fc.record({ byte: fc.constantFrom(0x00, 0xff), repeat: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ byte: fc.integer({ min: 0, max: 255 }), repeat: fc.constant(1) }),
    ),
    { minLength: 1, maxLength: 30 },
  )
  .map((parts) => Uint8Array.from(parts.flatMap((p) => Array<number>(p.repeat).fill(p.byte))));

describe('findRun', () => {
  it('agrees with a bit-by-bit scan for any bitmap, chunk size, start and length', async () => {
    await fc.assert(
      fc.asyncProperty(
        bitmapArb,
        fc.constantFrom(4, 8, 12, 64),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 16 }),
        async (bitmap, chunkBytes, a, b, c, cut) => {
          const bits = bitmap.length * 8;
          const tracked = Math.max(1, bits - (cut % bits)); // sometimes fewer bits than the bitmap holds (rounding bug)
          const first = a % bits;
          const count = 1 + (b % (bits - first + 8)); // may run past the tracked bits
          const { cache } = cacheOver(bitmap, { tracked, chunkBytes, maxBytes: ((c % 3) + 1) * chunkBytes });
          expect(await cache.findRun(first, count)).toEqual(naiveRun(bitmap, tracked, first, count));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('scans a 64 KiB all-clear bitmap with one chunk load per 4 KiB, not per bit', async () => {
    const { cache, storage } = cacheOver(new Uint8Array(65536), { tracked: 65536 * 8, chunkBytes: 4096 });
    expect(await cache.findRun(0, 65536 * 8)).toEqual({ set: false, count: 65536 * 8 });
    expect(storage.count('read')).toBe(16);
  });
});

describe('setRange', () => {
  it("matches a naive model, keeps untracked bits and writes only the bitmap's own bytes", async () => {
    await fc.assert(
      fc.asyncProperty(
        bitmapArb,
        fc.constantFrom(4, 8, 64),
        fc.array(fc.record({ a: fc.nat(), n: fc.integer({ min: 1, max: 100 }), value: fc.boolean() }), {
          maxLength: 12,
        }),
        async (bitmap, chunkBytes, ops) => {
          const bits = bitmap.length * 8;
          const tracked = Math.max(1, bits - 5);
          const { cache, file, storage } = cacheOver(bitmap, { tracked, chunkBytes, maxBytes: chunkBytes });
          const model = bitmap.slice();
          for (const op of ops) {
            const first = op.a % tracked;
            await cache.setRange(first, op.n, op.value);
            for (let i = first; i < Math.min(first + op.n, tracked); i++) {
              if (op.value) model[i >> 3]! |= 1 << (i & 7);
              else model[i >> 3]! &= ~(1 << (i & 7));
            }
          }
          await cache.writeBack();
          const onDisk = new Uint8Array(bitmap.length + 2);
          file.readAt(OFFSET, onDisk);
          expect([...onDisk]).toEqual([...model, 0xa5, 0xa5]);
          for (const e of storage.events) {
            if (e.op !== 'write') continue;
            expect(e.offset).toBeGreaterThanOrEqual(OFFSET);
            expect(e.offset + e.length).toBeLessThanOrEqual(OFFSET + bitmap.length);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('returns no chunk and marks nothing dirty when every bit already has the value', async () => {
    const { cache } = cacheOver(new Uint8Array(16).fill(0xff), { tracked: 128, chunkBytes: 8 });
    expect(await cache.setRange(3, 100, true)).toEqual([]);
    expect(cache.dirtyChunks).toBe(0);
  });
});

describe('memory bound', () => {
  it('reading across 1 MiB of bitmap with a 16 KiB bound never holds more than 16 KiB', async () => {
    const { cache } = cacheOver(new Uint8Array(1 << 20), { tracked: 8 << 20, chunkBytes: 4096, maxBytes: 16384 });
    let peak = 0;
    for (let bit = 0; bit < 8 << 20; bit += 4096 * 8) {
      await cache.findRun(bit, 8);
      peak = Math.max(peak, cache.cachedBytes);
    }
    expect(peak).toBe(16384);
    expect(cache.loads).toBe(256);
  });

  it('dirty chunks beyond the bound are written back (data flush first) before being evicted', async () => {
    const { cache, storage, file } = cacheOver(new Uint8Array(64 * 4096), {
      tracked: 64 * 4096 * 8,
      chunkBytes: 4096,
      maxBytes: 8192,
    });
    for (let chunk = 0; chunk < 64; chunk++) {
      await cache.setRange(chunk * 4096 * 8 + 5, 3, true);
      expect(cache.cachedBytes).toBeLessThanOrEqual(8192);
    }
    const firstBitmapWrite = storage.events.findIndex((e) => e.op === 'write');
    expect(firstBitmapWrite).toBeGreaterThan(0);
    expect(storage.events.slice(0, firstBitmapWrite).some((e) => e.op === 'flush')).toBe(true);
    // Everything evicted so far is on disk.
    const b = new Uint8Array(1);
    file.readAt(OFFSET + 0 * 4096, b);
    expect(b[0]).toBe(0b1110_0000);
  });

  it('a chunk is read from storage once while it stays cached', async () => {
    const { cache } = cacheOver(new Uint8Array(4096), { tracked: 4096 * 8, chunkBytes: 4096 });
    await Promise.all([cache.findRun(0, 10), cache.findRun(100, 10), cache.setRange(7, 1, true)]);
    await cache.findRun(0, 4096 * 8);
    expect(cache.loads).toBe(1);
  });
});

describe('streaming scans (findRun over many chunks)', () => {
  it('see dirty bits not yet written, stay right over uncached regions, and do not fill the cache', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ a: fc.nat(), n: fc.integer({ min: 1, max: 3000 }), value: fc.boolean() }), {
          maxLength: 10,
        }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 10 }),
        fc.constantFrom<CacheMode>('writeback', 'writethrough'),
        async (ops, queries, mode) => {
          // 256 chunks of 16 bytes (128 bits): scans of 32+ chunks stream.
          const bitmap = new Uint8Array(4096);
          for (let i = 0; i < bitmap.length; i += 97) bitmap[i] = (i * 31) & 0xff; // some bits on disk already
          const bits = bitmap.length * 8;
          const tracked = bits - 3;
          // The model holds every bit set, flushed or not: scans must agree with it, dirty bits included.
          const { cache } = cacheOver(bitmap, { tracked, chunkBytes: 16, maxBytes: 64, mode });
          const model = bitmap.slice();
          for (const op of ops) {
            const first = op.a % tracked;
            await cache.setRange(first, op.n, op.value);
            for (let i = first; i < Math.min(first + op.n, tracked); i++) {
              if (op.value) model[i >> 3]! |= 1 << (i & 7);
              else model[i >> 3]! &= ~(1 << (i & 7));
            }
          }
          const loads = cache.loads;
          for (const [a, b] of queries) {
            const first = a % bits;
            const count = 1 + (b % (bits - first + 8));
            expect(await cache.findRun(first, count)).toEqual(naiveRun(model, tracked, first, count));
          }
          // Long scans load no chunk into the cache (short ones, under 32 chunks, may).
          const longOnly = queries.every(([a, b]) => {
            const first = a % bits;
            const count = 1 + (b % (bits - first + 8));
            const last = Math.min(first + count, tracked) - 1;
            return first >= tracked || Math.floor(last / 128) - Math.floor(first / 128) >= 32;
          });
          if (longOnly) expect(cache.loads).toBe(loads);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a scan of a 1 MiB bitmap with dirty bits in writeback mode finds them before any flush', async () => {
    const { cache, storage } = cacheOver(new Uint8Array(1 << 20), { tracked: 8 << 20, chunkBytes: 4096 });
    await cache.setRange(5_000_000, 3, true); // chunk 152, dirty, not written
    expect(storage.count('write')).toBe(0);
    expect(await cache.findRun(0, 8 << 20)).toEqual({ set: false, count: 5_000_000 });
    expect(await cache.findRun(5_000_000, (8 << 20) - 5_000_000)).toEqual({ set: true, count: 3 });
    expect(await cache.findRun(5_000_003, (8 << 20) - 5_000_003)).toEqual({ set: false, count: (8 << 20) - 5_000_003 });
    expect(cache.loads).toBe(1); // only the chunk setRange needed; the scans streamed
    expect(cache.cachedBytes).toBe(4096);
    // Cleared again in memory (dirty): the scan sees that too.
    await cache.setRange(5_000_000, 3, false);
    expect(await cache.findRun(0, 8 << 20)).toEqual({ set: false, count: 8 << 20 });
  });
});

/**
 * A storage that reports every all-zero 8-byte block as a hole (as a sparse
 * file would, at a finer grain), from its current contents: a write into a
 * hole turns it into data at once.
 */
function holeyStorage(file: MemoryFile): Storage & { extentReads: number } {
  const inner = new MemoryStorage(file);
  const zeroBlock = (block: number): boolean => {
    const b = new Uint8Array(8);
    file.readAt(block * 8, b);
    return b.every((x) => x === 0);
  };
  const storage = Object.assign(Object.create(inner) as Storage, {
    extentReads: 0,
    extentAt(offset: number, length: number): Promise<StorageExtent> {
      storage.extentReads++;
      const hole = zeroBlock(Math.floor(offset / 8));
      let end = (Math.floor(offset / 8) + 1) * 8;
      while (end < offset + length && zeroBlock(end / 8) === hole) end += 8;
      return Promise.resolve({ data: !hole, length: Math.min(end, offset + length) - offset });
    },
  });
  return storage;
}

describe('streaming scans over a sparse bitmap file', () => {
  it('skip holes yet see every bit set on disk or only in memory, whatever writes, write-backs and evictions came between', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant('set' as const),
              a: fc.nat(),
              n: fc.integer({ min: 1, max: 2000 }),
              value: fc.boolean(),
            }),
            fc.record({ kind: fc.constant('writeBack' as const) }),
            fc.record({ kind: fc.constant('query' as const), a: fc.nat(), b: fc.nat() }),
          ),
          { maxLength: 20 },
        ),
        fc.array(fc.nat({ max: 4095 }), { maxLength: 6 }),
        fc.constantFrom<CacheMode>('writeback', 'writethrough'),
        async (ops, onDisk, mode) => {
          // 256 chunks of 16 bytes: scans of 32+ chunks stream; a few bits on disk, the rest holes.
          const bitmap = new Uint8Array(4096);
          for (const i of onDisk) bitmap[i] = 0x11;
          const file = new MemoryFile();
          file.writeAt(OFFSET, bitmap);
          const storage = holeyStorage(file);
          const bits = bitmap.length * 8;
          const tracked = bits - 3;
          const cache = new BitmapCache({
            storage,
            bitmapOffset: OFFSET,
            bitmapLength: bitmap.length,
            trackedBits: tracked,
            mode,
            chunkBytes: 16,
            maxBytes: 64,
          });
          const model = bitmap.slice();
          for (const op of ops) {
            if (op.kind === 'set') {
              const first = op.a % tracked;
              await cache.setRange(first, op.n, op.value);
              for (let i = first; i < Math.min(first + op.n, tracked); i++) {
                if (op.value) model[i >> 3]! |= 1 << (i & 7);
                else model[i >> 3]! &= ~(1 << (i & 7));
              }
            } else if (op.kind === 'writeBack') {
              await cache.writeBack();
            } else {
              const first = op.a % bits;
              const count = 1 + (op.b % (bits - first + 8));
              expect(await cache.findRun(first, count)).toEqual(naiveRun(model, tracked, first, count));
            }
          }
          expect(await cache.findRun(0, bits)).toEqual(naiveRun(model, tracked, 0, bits));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a scan over a bitmap that is one hole costs one extent lookup and no read', async () => {
    const file = new MemoryFile();
    file.truncate(OFFSET + (1 << 20));
    const storage = holeyStorage(file);
    const reads = vi.spyOn(storage, 'read');
    const cache = new BitmapCache({
      storage,
      bitmapOffset: OFFSET,
      bitmapLength: 1 << 20,
      trackedBits: 8 << 20,
      mode: 'writeback',
    });
    expect(await cache.findRun(0, 8 << 20)).toEqual({ set: false, count: 8 << 20 });
    expect(reads).not.toHaveBeenCalled();
    expect(storage.extentReads).toBe(1);
  });
});
