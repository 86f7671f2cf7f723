/**
 * Overlapping in-flight requests from one process are serialised where they
 * overlap (as QEMU's tracked requests) and run in parallel where they do
 * not. A model test with fast-check's scheduler interleaves every storage
 * call of concurrent reads, writes, discards and flushes in random orders;
 * the results must equal the serial execution in issue order (reads see
 * exactly the writes issued before them), and after close + reopen the image
 * holds the final state (no bitmap bit lost to a race).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryVfs, createImage, openImage, type Image } from '@blk/images';
import { HookedVfs, taggedData, withTimeout, yielder } from '@blk/faults';
import { envInt } from './fixtures/env.js';

const breathe = yielder();

const SIZE = 16 * 1024;
const RUNS = envInt('BLK_CONCURRENCY_RUNS', 100);

type Op =
  | { kind: 'write'; offset: number; length: number; id: number }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'discard'; offset: number; sectors: number }
  | { kind: 'flush' };

const rangeArb = fc
  .tuple(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: 2048 }))
  .map(([offset, length]) => ({ offset, length: Math.min(length, SIZE - offset) }));
// Bias towards a few hot sectors so that requests overlap often.
const hotArb = fc
  .tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 511 }), fc.integer({ min: 1, max: 900 }))
  .map(([s, within, length]) => ({ offset: s * 512 + within, length: Math.min(length, SIZE - s * 512 - within) }));

const opArb: fc.Arbitrary<Omit<Op, 'id'> | Op> = fc.oneof(
  { weight: 4, arbitrary: fc.oneof(rangeArb, hotArb).map((r) => ({ kind: 'write' as const, ...r, id: 0 })) },
  { weight: 3, arbitrary: fc.oneof(rangeArb, hotArb).map((r) => ({ kind: 'read' as const, ...r })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: SIZE / 512 - 1 }), fc.integer({ min: 1, max: 4 }))
      .map(([s, n]) => ({ kind: 'discard' as const, offset: s * 512, sectors: Math.min(n, SIZE / 512 - s) })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
);

async function setup(format: 'raw' | 'cow'): Promise<{ vfs: MemoryVfs; path: string; base: Uint8Array }> {
  const vfs = new MemoryVfs('/');
  const base = taggedData(0, 0, SIZE);
  if (format === 'raw') {
    vfs.put('/d/disk.raw', base);
    return { vfs, path: '/d/disk.raw', base };
  }
  vfs.put('/d/base.raw', base);
  await createImage('/d/top.cow', { vfs, format: 'cow', backing: '/d/base.raw' });
  return { vfs, path: '/d/top.cow', base };
}

let runs = 0;

describe('concurrency: overlapping requests equal their serial order', () => {
  for (const format of ['cow', 'raw'] as const) {
    for (const cache of format === 'cow' ? (['writeback', 'writethrough'] as const) : (['writeback'] as const)) {
      it(`${format} ${cache}: random interleavings of every storage call`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.scheduler(), fc.array(opArb, { minLength: 2, maxLength: 14 }), async (s, rawOps) => {
            runs++;
            await breathe();
            const ops: Op[] = rawOps.map((op, i) => (op.kind === 'write' ? { ...op, id: i + 1 } : op)) as Op[];
            const { vfs, path, base } = await setup(format);
            const hooked = new HookedVfs(vfs, {
              before: (call) => s.schedule(Promise.resolve(), call).then(() => undefined),
            });
            hooked.enabled = false;
            const image = await openImage(path, { vfs: hooked, format, cache });
            hooked.enabled = true;
            // Serial model in issue order.
            const model = base.slice();
            const expected: Array<Uint8Array | undefined> = [];
            for (const op of ops) {
              if (op.kind === 'write') model.set(taggedData(op.id, op.offset, op.length), op.offset);
              else if (op.kind === 'discard' && format === 'cow')
                model.set(base.subarray(op.offset, op.offset + op.sectors * 512), op.offset);
              expected.push(op.kind === 'read' ? model.slice(op.offset, op.offset + op.length) : undefined);
            }
            // Issue everything at once, in order.
            const pending = ops.map((op) => issue(image, op, format));
            await withTimeout(s.waitFor(Promise.allSettled(pending)), 10_000, 'scheduled run');
            const results = await Promise.all(pending);
            results.forEach((got, i) => {
              if (expected[i]) expect(got, `op ${i} ${JSON.stringify(ops[i])}`).toEqual(expected[i]);
            });
            hooked.enabled = false;
            await image.close();
            const again = await openImage(path, { vfs, format, readOnly: true });
            const content = await again.read(0, SIZE);
            await again.close();
            expect(content).toEqual(model);
          }),
          { numRuns: RUNS, seed: envInt('BLK_SEED', 42) },
        );
      }, 300_000);
    }
  }

  it('reports the figure', () => {
    console.log(`FIGURE concurrency: ${runs} scheduled runs (every storage call interleaved by fc.scheduler)`);
  });
});

function issue(image: Image, op: Op, format: string): Promise<Uint8Array | undefined> {
  switch (op.kind) {
    case 'write':
      return image.write(op.offset, taggedData(op.id, op.offset, op.length)).then(() => undefined);
    case 'read':
      return image.read(op.offset, op.length);
    case 'discard':
      return format === 'cow'
        ? image.discard(op.offset, op.sectors * 512).then(() => undefined)
        : Promise.resolve(undefined);
    case 'flush':
      return image.flush().then(() => undefined);
  }
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('concurrency: parallel where requests do not overlap', () => {
  for (const format of ['raw', 'cow'] as const) {
    it(`${format}: a write to other sectors proceeds while an earlier write is stuck in storage`, async () => {
      const { vfs, path } = await setup(format);
      const secondStarted = deferred();
      let writes = 0;
      const hooked = new HookedVfs(vfs, {
        before: async (call) => {
          if (call !== 'write') return;
          writes++;
          if (writes === 1)
            await secondStarted.promise; // the first write waits for the second
          else secondStarted.resolve();
        },
      });
      const image = await openImage(path, { vfs: hooked, format });
      const a = image.write(0, new Uint8Array(512).fill(1));
      const b = image.write(4096, new Uint8Array(512).fill(2));
      await withTimeout(Promise.all([a, b]), 2000, 'disjoint writes (deadlock means they were serialised)');
      await image.close();
    });

    it(`${format}: a write overlapping an earlier one waits for it, and the later data wins`, async () => {
      const { vfs, path } = await setup(format);
      const release = deferred();
      const trace: string[] = [];
      let first = true;
      const hooked = new HookedVfs(vfs, {
        before: async (call, _p, offset, length) => {
          if (call !== 'write') return;
          trace.push(`start ${offset}+${length}`);
          if (first) {
            first = false;
            await release.promise;
          }
        },
        after: (call, _p, offset) => {
          if (call === 'write') trace.push(`end ${offset}`);
        },
      });
      const image = await openImage(path, { vfs: hooked, format });
      const a = image.write(0, new Uint8Array(1024).fill(1));
      const b = image.write(512, new Uint8Array(1024).fill(2));
      await new Promise((r) => setTimeout(r, 20));
      expect(trace.length).toBe(1); // b has not reached storage while a is in flight
      release.resolve();
      await Promise.all([a, b]);
      expect(trace.filter((t) => t.startsWith('start')).length).toBeGreaterThanOrEqual(2);
      expect(trace.indexOf(trace.find((t) => t.startsWith('end'))!)).toBeLessThan(
        trace.lastIndexOf(trace.filter((t) => t.startsWith('start'))[1]!),
      );
      const got = await image.read(0, 1536);
      expect(got.subarray(0, 512).every((x) => x === 1)).toBe(true);
      expect(got.subarray(512).every((x) => x === 2)).toBe(true);
      await image.close();
    });
  }
});
