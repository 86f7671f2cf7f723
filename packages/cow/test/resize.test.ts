/** CowImage.resize / check / amend at the driver level: in-place size changes against a model, and their limits. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockError } from '@blk/core';
import { computeLayout, type CowImage, type CowVariant } from '../src/index.js';
import { SS, createFile, openFile, pattern } from './helpers.js';

const BELOW = 0xee;
const below = async (_offset: number, into: Uint8Array) => {
  into.fill(BELOW);
};
/** Model tag of a sector a grow added over a backing file: zeros, whatever the backing file holds. */
const ZEROS = -1;

/** Reads every sector and compares with the model (sector -> the tag written there). */
async function expectModel(image: CowImage, model: Map<number, number>): Promise<void> {
  const sectors = image.size / SS;
  const bytes = new Uint8Array(image.size);
  await image.read(0, bytes, below);
  for (let s = 0; s < sectors; s++) {
    const tag = model.get(s);
    const got = bytes.subarray(s * SS, (s + 1) * SS);
    if (tag === undefined)
      expect(
        got.every((b) => b === BELOW),
        `sector ${s} reads from below`,
      ).toBe(true);
    else if (tag === ZEROS)
      expect(
        got.every((b) => b === 0),
        `sector ${s} reads as zeros (added by a grow)`,
      ).toBe(true);
    else expect(got, `sector ${s} holds write ${tag}`).toEqual(pattern(s, 1, tag));
  }
}

describe('CowImage.resize', () => {
  for (const variant of ['v3', 'v2-qemu-lp64', 'v2-qemu-ilp32'] as const satisfies readonly CowVariant[]) {
    it(`${variant}: writes and in-place resizes, reopened after each, read as a model says (random sequences)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 600 }),
          fc.array(
            fc.oneof(
              fc.record({ op: fc.constant('write' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 9 }) }),
              fc.record({ op: fc.constant('resize' as const), to: fc.nat() }),
            ),
            { maxLength: 12 },
          ),
          async (startSectors, ops) => {
            const uml = variant === 'v3';
            const size0 = startSectors * SS;
            const file = await createFile({
              variant,
              size: size0,
              backing: uml ? { path: '/b.img', size: size0, mtimeSec: 1 } : undefined,
            });
            let image = await openFile(file);
            const model = new Map<number, number>();
            let tag = 0;
            for (const o of ops) {
              const sectors = image.size / SS;
              if (o.op === 'write') {
                const at = o.at % sectors;
                const count = Math.min(o.count, sectors - at);
                tag++;
                await image.write(at * SS, pattern(at, count, tag));
                for (let s = at; s < at + count; s++) model.set(s, tag);
                continue;
              }
              const { min, max } = image.inPlaceSizes();
              const to = Math.max(min, Math.min(max, SS * (1 + (o.to % 800))));
              const from = image.size / SS;
              await image.resize(to, { backingSize: to });
              for (const s of [...model.keys()]) if (s >= to / SS) model.delete(s);
              if (uml) for (let s = from; s < to / SS; s++) model.set(s, ZEROS);
              await image.close();
              image = await openFile(file);
              expect(image.size).toBe(to);
              const layout = computeLayout({ variant, size: to, sectorSize: SS, alignment: uml ? 4096 : undefined });
              expect(image.layout.dataOffset).toBe(layout.dataOffset);
              const check = await image.check({ leaks: false, corruptions: false });
              expect(check).toMatchObject({ corruptions: 0, leaks: 0 });
              await expectModel(image, model);
            }
            await expectModel(image, model);
            await image.close();
          },
        ),
        { numRuns: Number(process.env.BLK_PROPERTY_RUNS ?? 40) },
      );
    });
  }

  it("a grow over a longer backing file adds zeros, not the backing file's data (nor data dropped by an earlier shrink), as QEMU", async () => {
    for (const backingSize of [1 << 20, undefined]) {
      const file = await createFile({
        variant: 'v2-qemu-lp64',
        size: 256 * SS,
        backing: { path: '/b.img', size: 1 << 20, mtimeSec: 1 },
      });
      const image = await openFile(file);
      await image.write(0, pattern(0, 256, 7));
      await image.resize(64 * SS, { backingSize });
      await image.resize(300 * SS, { backingSize });
      const got = new Uint8Array(300 * SS);
      await image.read(0, got, below);
      expect(got.subarray(0, 64 * SS)).toEqual(pattern(0, 64, 7));
      expect(
        got.subarray(64 * SS).every((b) => b === 0),
        'the grown sectors read as zeros',
      ).toBe(true);
      expect(await image.check({ leaks: false, corruptions: false })).toMatchObject({ corruptions: 0, leaks: 0 });
      await image.close();
    }
    // With preallocation, the grown part is allocated on disk and still reads as zeros.
    const pre = await createFile({
      variant: 'v2-qemu-lp64',
      size: 16 * SS,
      backing: { path: '/b.img', size: 1 << 20, mtimeSec: 1 },
    });
    const preImage = await openFile(pre);
    await preImage.resize(1024 * SS, { backingSize: 1 << 20, preallocation: 'full' });
    expect(pre.allocatedBytes).toBeGreaterThanOrEqual(1008 * SS);
    const grown = new Uint8Array(1008 * SS);
    await preImage.read(16 * SS, grown, below);
    expect(grown.every((b) => b === 0)).toBe(true);
    await preImage.close();
    // Past the end of a known, shorter backing file nothing needs allocating: those sectors read as zeros anyway.
    const file = await createFile({
      variant: 'v2-qemu-lp64',
      size: 16 * SS,
      backing: { path: '/b.img', size: 32 * SS, mtimeSec: 1 },
    });
    const image = await openFile(file);
    await image.resize(64 * SS, { backingSize: 32 * SS });
    const runs = await image.blockStatus(0, 64 * SS);
    expect(runs).toMatchObject({ allocated: false, length: 16 * SS });
    expect(await image.blockStatus(16 * SS, 48 * SS)).toMatchObject({ allocated: true, length: 16 * SS });
    expect(await image.blockStatus(32 * SS, 32 * SS)).toMatchObject({ allocated: false, length: 32 * SS });
    await image.close();
  });

  it('refuses a size that moves the data area, one that is not whole sectors, and a UML size its backing file lacks', async () => {
    const file = await createFile({ variant: 'v2-qemu-lp64', size: 1 << 20, backing: undefined });
    const image = await openFile(file, { path: '/q.cow' });
    const err = await image.resize(4 << 20, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'not-supported', path: '/q.cow', field: 'size' });
    await expect(image.resize(1000, {})).rejects.toMatchObject({ kind: 'invalid-argument' });
    await expect(image.resize(1 << 20, { preallocation: 'bogus' as never })).rejects.toMatchObject({
      kind: 'invalid-argument',
    });
    await image.close();
    const v3 = await openFile(
      await createFile({ variant: 'v3', size: 1 << 20, backing: { path: '/b', size: 1 << 20, mtimeSec: 1 } }),
    );
    await expect(v3.resize(2 << 20, { backingSize: 1 << 20 })).rejects.toMatchObject({ kind: 'not-supported' });
    await expect(v3.resize(2 << 20, {})).rejects.toMatchObject({ kind: 'not-supported' });
    await v3.resize(2 << 20, { backingSize: 2 << 20 });
    expect(v3.size).toBe(2 << 20);
    await v3.close();
    const v1 = await openFile(
      await createFile({ variant: 'v1', size: 1 << 20, backing: { path: '/b', size: 1 << 20, mtimeSec: 1 } }),
    );
    await expect(v1.resize((1 << 20) + 512, { backingSize: (1 << 20) + 512 })).rejects.toMatchObject({
      kind: 'not-supported',
    });
    await v1.close();
  });
});
