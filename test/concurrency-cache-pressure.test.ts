/**
 * Cache pressure: more concurrent requests touching distinct bitmap chunks
 * than the bitmap cache holds must all complete. A chunk loaded for a
 * request stays cached until that request used it; otherwise concurrent
 * loads evict each other's chunks before their waiters run, forever, and
 * since the loads resolve in microtasks no timer could ever stop it.
 *
 * The guard is therefore inside the storage: every storage call checks the
 * wall clock and fails once the deadline passed, so a livelock becomes a
 * failed request (and a failed test) instead of a hung suite.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryVfs, createImage, openImage } from '@blk/images';
import { HookedVfs, taggedData, testTimeScale } from '@blk/faults';
import { envInt } from './fixtures/env.js';

const MiB = 1024 * 1024;
/** Disk bytes one 4 KiB bitmap chunk covers (4096 * 8 sectors of 512 bytes). */
const CHUNK_SPAN = 16 * MiB;
const CHUNK_BYTES = 4096;
const CHUNKS = 8;
const SIZE = CHUNKS * CHUNK_SPAN;
const RUNS = envInt('BLK_CACHE_PRESSURE_RUNS', 40);

class Livelock extends Error {}

/**
 * A hook that fails every storage call once `ms` passed (a livelock spins in microtasks: no timer fires).
 * Wall-clock time, so stretched on a busy machine (testTimeScale); a livelock never ends, so a generous
 * limit costs nothing when all is well.
 */
function deadline(idleMs: number): () => void {
  const ms = Math.round(idleMs * testTimeScale());
  const until = Date.now() + ms;
  return () => {
    if (Date.now() > until) throw new Livelock(`storage still busy after ${ms} ms: livelock`);
  };
}

async function overlay(): Promise<{ vfs: MemoryVfs; base: Uint8Array }> {
  const vfs = new MemoryVfs('/');
  // A backing file with a tag per chunk, so that each read says where it came from.
  const base = new Uint8Array(SIZE);
  for (let c = 0; c < CHUNKS; c++) base.set(taggedData(100 + c, c * CHUNK_SPAN, 4096), c * CHUNK_SPAN);
  vfs.put('/d/base.raw', base);
  await createImage('/d/top.cow', { vfs, format: 'cow', backing: '/d/base.raw' });
  return { vfs, base };
}

describe('cache pressure: concurrency past every bitmap cache size', () => {
  it('two concurrent reads of different chunks complete with a one-chunk cache', async () => {
    const { vfs, base } = await overlay();
    const guard = deadline(5_000);
    const hooked = new HookedVfs(vfs, { before: async () => guard() });
    const image = await openImage('/d/top.cow', {
      vfs: hooked,
      format: 'cow',
      readOnly: true,
      driverOptions: { bitmapCacheBytes: CHUNK_BYTES },
    });
    try {
      const [a, b] = await Promise.all([image.read(0, 4096), image.read(CHUNK_SPAN, 4096)]);
      expect(a).toEqual(base.subarray(0, 4096));
      expect(b).toEqual(base.subarray(CHUNK_SPAN, CHUNK_SPAN + 4096));
    } finally {
      hooked.enabled = false;
      await image.close();
    }
  });

  it('random completion orders of reads and writes over more chunks than the cache holds all complete, with the serial result', async () => {
    // Not fc.scheduler: it releases one call at a time and lets each settle for 50 microtask ticks,
    // so two chunk loads never complete together, which is exactly what starts the livelock. Each
    // storage call here is instead delayed by a generated number of microtask ticks, so calls
    // complete in every relative order, ties included.
    const opArb = fc.record({
      write: fc.boolean(),
      chunk: fc.integer({ min: 0, max: CHUNKS - 1 }),
      sector: fc.integer({ min: 0, max: 3 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 2, maxLength: 12 }),
        fc.integer({ min: 1, max: CHUNKS - 1 }),
        fc.constantFrom('writeback', 'writethrough') as fc.Arbitrary<'writeback' | 'writethrough'>,
        fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 1, maxLength: 16 }),
        async (ops, cacheChunks, cache, delays) => {
          const { vfs, base } = await overlay();
          const guard = deadline(10_000); // a run takes 0.1-0.3 s (0.3 s at a load of 17 on 2 cores)
          let calls = 0;
          const hooked = new HookedVfs(vfs, {
            before: async () => {
              guard();
              for (let t = delays[calls++ % delays.length]!; t > 0; t--) await Promise.resolve();
            },
          });
          hooked.enabled = false;
          const image = await openImage('/d/top.cow', {
            vfs: hooked,
            format: 'cow',
            cache,
            driverOptions: { bitmapCacheBytes: cacheChunks * CHUNK_BYTES },
          });
          hooked.enabled = true;
          const model = new Map<number, Uint8Array>();
          const expected: Array<Uint8Array | undefined> = [];
          const pending = ops.map((op, i) => {
            const offset = op.chunk * CHUNK_SPAN + op.sector * 512;
            if (op.write) {
              const data = taggedData(i + 1, offset, 512);
              model.set(offset, data);
              expected.push(undefined);
              return image.write(offset, data).then(() => undefined);
            }
            expected.push(model.get(offset) ?? base.slice(offset, offset + 512));
            return image.read(offset, 512);
          });
          try {
            const results = await Promise.all(pending);
            results.forEach((got, i) => {
              if (expected[i]) expect(got, `op ${i} ${JSON.stringify(ops[i])}`).toEqual(expected[i]);
            });
          } finally {
            hooked.enabled = false;
            await Promise.allSettled(pending);
            await image.close();
          }
          // No lost bit either: the writes are all there after reopening.
          const again = await openImage('/d/top.cow', { vfs, format: 'cow', readOnly: true });
          for (const [offset, data] of model) expect(await again.read(offset, 512)).toEqual(data);
          await again.close();
        },
      ),
      { numRuns: RUNS, seed: envInt('BLK_SEED', 42), endOnFailure: true },
    );
  }, 120_000);

  it('as many concurrent writes as the default cache has chunks, and more, complete', async () => {
    // The default cache holds 2048 chunks (8 MiB); 2100 writes 16 MiB apart need 2100.
    const writes = 2100;
    const vfs = new MemoryVfs('/');
    vfs.put('/d/base.raw', new Uint8Array(0));
    // A QEMU-style overlay may be larger than its (here empty) backing file.
    await createImage('/d/big.cow', {
      vfs,
      format: 'cow',
      size: writes * CHUNK_SPAN,
      backing: '/d/base.raw',
      driverOptions: { variant: 'v2-qemu-lp64' },
    });
    const guard = deadline(20_000);
    const hooked = new HookedVfs(vfs, { before: async () => guard() });
    const image = await openImage('/d/big.cow', { vfs: hooked, format: 'cow' });
    const data = new Uint8Array(512).fill(7);
    try {
      await Promise.all(Array.from({ length: writes }, (_, i) => image.write(i * CHUNK_SPAN, data)));
    } finally {
      hooked.enabled = false;
      await image.close();
    }
    const again = await openImage('/d/big.cow', { vfs, format: 'cow', readOnly: true });
    expect(await again.read((writes - 1) * CHUNK_SPAN, 512)).toEqual(data);
    expect(await again.read(0, 512)).toEqual(data);
    await again.close();
  }, 60_000);
});
