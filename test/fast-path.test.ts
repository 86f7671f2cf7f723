/**
 * The synchronous read fast path (Image.readInto → DriverImage.read completing at once →
 * Storage.readSync): same results as the tracked asynchronous path, taken only
 * when nothing is in flight, and the usual errors.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryVfs, createImage, openImage, type Image } from '@blk/core';
import { DriverRegistry, builtinDrivers } from '@blk/images';

/** The built-in formats (cow, raw), as @blk/images' default host has them. */
const registry = new DriverRegistry(builtinDrivers());

const SS = 512;
const SIZE = 256 * 1024 + 5 * SS;

/** raw base (pattern) ← cow middle ← cow top, with writes in both overlays. */
async function chain(seed: number): Promise<Image> {
  const vfs = new MemoryVfs();
  const base = new Uint8Array(SIZE - 3 * SS); // a shorter base: the tail falls through to zeros
  for (let i = 0; i < base.length; i++) base[i] = (i * 7 + (i >> 9)) & 0xff;
  vfs.put('/base.raw', base);
  await createImage('/mid.cow', {
    registry,
    format: 'cow',
    backing: { path: '/base.raw', format: 'raw' },
    size: SIZE,
    vfs,
    driverOptions: { variant: 'v2-qemu-lp64' },
  });
  const rnd = fc.sample(fc.tuple(fc.nat(SIZE / SS - 1), fc.integer({ min: 1, max: 40 }), fc.boolean()), {
    numRuns: 30,
    seed,
  });
  // The middle layer is written before the top is created (UML checks the backing file's mtime).
  for (const upper of [false, true]) {
    if (upper)
      await createImage('/top.cow', { registry, format: 'cow', backing: { path: '/mid.cow', format: 'cow' }, vfs });
    const image = await openImage(upper ? '/top.cow' : '/mid.cow', { registry, vfs, backing: { format: 'probe' } });
    for (const [sector, count, top] of rnd) {
      if (top !== upper) continue;
      const n = Math.min(count, SIZE / SS - sector);
      await image.write(sector * SS, new Uint8Array(n * SS).fill((upper ? 0xa0 : 0x10) + (sector & 15)));
    }
    await image.close();
  }
  return openImage('/top.cow', { registry, vfs, readOnly: true, backing: { format: 'probe' } });
}

describe('synchronous read fast path', () => {
  it('gives the same bytes as the asynchronous path for random reads on a cow chain', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 64 }), fc.boolean()), { minLength: 1, maxLength: 40 }),
        async (seed, reads) => {
          const image = await chain(seed);
          for (const [a, n, aligned] of reads) {
            const length = aligned ? Math.min(n, SIZE / SS) * SS : Math.min(n * 97, SIZE);
            const offset = aligned ? (a % (SIZE / SS - length / SS + 1)) * SS : a % (SIZE - length + 1);
            const fast = new Uint8Array(length).fill(0xee);
            const slow = new Uint8Array(length).fill(0xdd);
            const p = image.readInto(offset, fast);
            await p;
            await image.readInto(offset, slow, { sync: false });
            expect(Buffer.from(fast).equals(Buffer.from(slow))).toBe(true);
          }
          // Once the bitmap chunks are cached, an aligned read completes before its promise is awaited.
          const again = new Uint8Array(SS).fill(0xee);
          await image.readInto(0, new Uint8Array(SS));
          void image.readInto(0, again);
          expect(again.some((b) => b !== 0xee)).toBe(true);
          await image.close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it('is not taken while a write is in flight: a read issued after a write sees it', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/base.raw', new Uint8Array(64 * 1024));
    await createImage('/top.cow', { registry, format: 'cow', backing: { path: '/base.raw', format: 'raw' }, vfs });
    const image = await openImage('/top.cow', { registry, vfs });
    await image.read(0, 64 * 1024); // every bitmap chunk cached: the fast path is possible
    const data = new Uint8Array(8 * SS).fill(0x5a);
    const into = new Uint8Array(8 * SS);
    const write = image.write(4 * SS, data);
    const read = image.readInto(4 * SS, into);
    expect(into.every((b) => b === 0)).toBe(true); // not read synchronously, before the write
    await Promise.all([write, read]);
    expect(into.every((b) => b === 0x5a)).toBe(true);
    // Nothing in flight any more: the next read completes synchronously.
    const next = new Uint8Array(8 * SS);
    const p = image.readInto(4 * SS, next);
    expect(next.every((b) => b === 0x5a)).toBe(true);
    await p;
    await image.close();
  });

  it('still rejects closed images and out-of-range requests', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/base.raw', new Uint8Array(16 * SS));
    const image = await openImage('/base.raw', { registry, vfs, format: 'raw' });
    await expect(image.readInto(15 * SS, new Uint8Array(2 * SS))).rejects.toMatchObject({ kind: 'out-of-range' });
    await expect(image.readInto(-SS, new Uint8Array(SS))).rejects.toMatchObject({ kind: 'out-of-range' });
    await image.close();
    await expect(image.readInto(0, new Uint8Array(SS))).rejects.toMatchObject({ kind: 'closed' });
  });
});
