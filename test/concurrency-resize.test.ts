/**
 * A resize issued among in-flight requests splits them in issue order: those
 * issued before it run at the old size, those issued after it are checked
 * against the new size (out-of-range errors where they no longer fit) and
 * never land past the end of a shrunk image. A model test with fast-check's
 * scheduler interleaves every storage call of writes, zero writes, reads and
 * resizes; results and the final file must equal the serial execution.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryVfs, createImage, isBlockError, openImage, type Image } from '@blk/images';
import { HookedVfs, taggedData, withTimeout, yielder } from '@blk/faults';
import { envInt } from './fixtures/env.js';

const breathe = yielder();
const SIZE = 16 * 1024;
const RUNS = envInt('BLK_CONCURRENCY_RUNS', 30);

type Op =
  | { kind: 'write'; offset: number; length: number; id: number }
  | { kind: 'zeroes'; offset: number; length: number; unmap: boolean }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'resize'; size: number };

// Offsets up to twice the starting size: some requests fit only after a grow, some no longer after a shrink.
const rangeArb = fc.tuple(fc.integer({ min: 0, max: 2 * SIZE - 1 }), fc.integer({ min: 1, max: 3000 }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: rangeArb.map(([offset, length]) => ({ kind: 'write' as const, offset, length, id: 0 })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(rangeArb, fc.boolean())
      .map(([[offset, length], unmap]) => ({ kind: 'zeroes' as const, offset, length, unmap })),
  },
  { weight: 3, arbitrary: rangeArb.map(([offset, length]) => ({ kind: 'read' as const, offset, length })) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 64 }).map((n) => ({ kind: 'resize' as const, size: n * 512 })) },
);

async function setup(format: 'raw' | 'cow'): Promise<{ vfs: MemoryVfs; path: string }> {
  const vfs = new MemoryVfs('/');
  if (format === 'raw') {
    vfs.put('/d/disk.raw', new Uint8Array(SIZE));
    return { vfs, path: '/d/disk.raw' };
  }
  // QEMU's layout (resizable whatever the backing file's size) over a base of zeros, larger than any size tried.
  vfs.put('/d/base.raw', new Uint8Array(4 * SIZE));
  await createImage('/d/top.cow', {
    vfs,
    format: 'cow',
    size: SIZE,
    backing: '/d/base.raw',
    driverOptions: { variant: 'v2-qemu-lp64' },
  });
  return { vfs, path: '/d/top.cow' };
}

function issue(image: Image, op: Op): Promise<Uint8Array | undefined> {
  switch (op.kind) {
    case 'write':
      return image.write(op.offset, taggedData(op.id, op.offset, op.length)).then(() => undefined);
    case 'zeroes':
      return image.writeZeroes(op.offset, op.length, { mayUnmap: op.unmap }).then(() => undefined);
    case 'read':
      return image.read(op.offset, op.length);
    case 'resize':
      return image.resize(op.size, { shrink: true }).then(() => undefined);
  }
}

describe('concurrency: resizes among in-flight requests', () => {
  for (const format of ['raw', 'cow'] as const) {
    it(`${format}: requests issued after a resize see its size, whatever the interleaving`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.scheduler(),
          fc.array(opArb, { minLength: 2, maxLength: 12 }),
          fc.boolean(),
          async (s, rawOps, closeFirst) => {
            await breathe();
            const ops = rawOps.map((op, i) => (op.kind === 'write' ? { ...op, id: i + 1 } : op));
            const { vfs, path } = await setup(format);
            const hooked = new HookedVfs(vfs, {
              before: (call) => s.schedule(Promise.resolve(), call).then(() => undefined),
            });
            hooked.enabled = false;
            const image = await openImage(path, {
              vfs: hooked,
              format,
              driverOptions: format === 'cow' ? { variant: 'v2-qemu-lp64' } : undefined,
            });
            hooked.enabled = true;
            // The serial model, in issue order: undefined marks a request that must fail as out of range.
            let model = new Uint8Array(SIZE);
            const expected: Array<Uint8Array | 'ok' | 'out-of-range'> = [];
            for (const op of ops) {
              if (op.kind === 'resize') {
                const next = new Uint8Array(op.size);
                next.set(model.subarray(0, Math.min(op.size, model.length)));
                model = next;
                expected.push('ok');
              } else if (op.offset + op.length > model.length) {
                expected.push('out-of-range');
              } else if (op.kind === 'read') {
                expected.push(model.slice(op.offset, op.offset + op.length));
              } else {
                model.set(
                  op.kind === 'write' ? taggedData(op.id, op.offset, op.length) : new Uint8Array(op.length),
                  op.offset,
                );
                expected.push('ok');
              }
            }
            const pending = ops.map((op) =>
              issue(image, op).then(
                (v) => v ?? ('ok' as const),
                (e: unknown) => {
                  if (isBlockError(e) && e.kind === 'out-of-range') return 'out-of-range' as const;
                  throw e;
                },
              ),
            );
            // Closed right after issuing: close waits for every request issued before it, queued behind a resize or not.
            const closing = closeFirst ? image.close() : Promise.resolve();
            await withTimeout(s.waitFor(Promise.allSettled([...pending, closing])), 10_000, 'scheduled run');
            await closing;
            const results = await Promise.all(pending);
            results.forEach((got, i) => {
              expect(got, `op ${i} ${JSON.stringify(ops[i])}`).toEqual(expected[i]);
            });
            expect(image.size).toBe(model.length);
            hooked.enabled = false;
            if (!closeFirst) await image.close();
            if (format === 'raw') expect(vfs.file(path).length).toBe(model.length);
            const again = await openImage(path, {
              vfs,
              format,
              driverOptions: format === 'cow' ? { variant: 'v2-qemu-lp64' } : undefined,
            });
            expect(again.size).toBe(model.length);
            expect(await again.read(0, model.length)).toEqual(model);
            // Nothing was written past the end: no bitmap bit past the last sector, no data past the data area.
            const check = await again.check();
            if (check)
              expect({ corruptions: check.corruptions, leaks: check.leaks, messages: check.messages }).toEqual({
                corruptions: 0,
                leaks: 0,
                messages: [],
              });
            await again.close();
          },
        ),
        { numRuns: RUNS, seed: envInt('BLK_SEED', 42) },
      );
    }, 300_000);
  }
});
