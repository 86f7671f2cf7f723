/**
 * Layout detection must never depend on bytes a guest controls: whatever a
 * guest writes into an overlay blk created (its bitmap bits follow the
 * sectors it writes, its data lands after the header, the file grows as it
 * writes the last sectors), the overlay reopens as the layout blk wrote, and
 * reads back exactly what was written.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryVfs, createImage, openImage } from '@blk/images';
import { computeLayout, detectVariant, type CowVariant } from '../src/index.js';

const CREATED: ReadonlyArray<Exclude<CowVariant, 'v3-broken'>> = [
  'v3',
  'v2-qemu-lp64',
  'v2-qemu-ilp32',
  'v2-uml',
  'v1',
];

const be64 = (n: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return [...b];
};
const be32 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];

/**
 * Byte strings that look like (parts of) a COW header, each with the file
 * offset where some layout would read it as header fields: v2-uml's size and
 * sector size, lp64's and ilp32's, a sector size alone, a magic and version.
 */
const HEADERISH: ReadonlyArray<[number, number[]]> = [
  [4108, [...be64(512), ...be32(512)]],
  [4108, [...be64(4096), ...be32(512)]],
  [4116, be32(512)],
  [1036, [0, 0, 0, 0, ...be64(1024 * 1024), ...be32(512), 0, 0, 0, 0]],
  [1036, [...be64(65536), ...be32(512)]],
  [1044, be32(512)],
  [1048, [0, 0, 2, 0, 0, 0, 0, 0]],
  [0, [0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 2]],
  [0, [0x4d, 0x4f, 0x4f, 0x4f, 1, 0, 0, 0]],
  [32, [0, 0, 0, 0]],
];

interface GuestWrite {
  at: number;
  bytes: Uint8Array;
}

/**
 * A guest write: header-looking bytes where a header field would be (if
 * that offset is guest data in this file at all) or anywhere, random bytes
 * anywhere, or a whole sector (which sets its bitmap bit: guests choose the
 * bitmap's bit patterns too).
 */
function guestWrite(size: number, dataOffset: number): fc.Arbitrary<GuestWrite> {
  const clamp = (at: number, len: number) => Math.min(size - len, Math.max(0, at));
  const targeted = fc
    .constantFrom(...HEADERISH)
    .map(([file, bytes]) => ({ at: clamp(file - dataOffset, bytes.length), bytes: Uint8Array.from(bytes) }));
  const anywhere = fc
    .tuple(fc.constantFrom(...HEADERISH), fc.nat())
    .map(([[, bytes], n]) => ({ at: clamp(n % size, bytes.length), bytes: Uint8Array.from(bytes) }));
  const random = fc
    .tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: Math.min(1536, size) }))
    .map(([n, bytes]) => ({ at: clamp(n % size, bytes.length), bytes }));
  const sector = fc
    .nat({ max: size / 512 - 1 })
    .map((s) => ({ at: s * 512, bytes: new Uint8Array(512).fill((s % 251) + 1) }));
  return fc.oneof({ arbitrary: targeted, weight: 3 }, anywhere, random, { arbitrary: sector, weight: 2 });
}

async function makeOverlay(variant: Exclude<CowVariant, 'v3-broken'>, size: number) {
  const vfs = new MemoryVfs();
  await createImage('/base.img', { format: 'raw', size, vfs });
  await createImage('/o.cow', { format: 'cow', backing: '/base.img', vfs, driverOptions: { variant } });
  const image = await openImage('/o.cow', { vfs, format: 'cow', driverOptions: { variant } });
  const dataOffset = image.info().formatSpecific.dataOffset as number;
  await image.close();
  return { vfs, dataOffset };
}

describe('COW layout detection ignores what guests write', () => {
  it('reopens a QEMU-layout v2 overlay as QEMU\'s after its guest writes a v2-uml "header" at guest offset 2572', async () => {
    // The adversarial review's case: 1 MiB lp64 overlay, data at 1536, so guest offset 2572 is file offset
    // 4108, where v2-uml keeps its size and sector size. It used to reopen as v2-uml with a size of 512.
    const { vfs, dataOffset } = await makeOverlay('v2-qemu-lp64', 1024 * 1024);
    expect(dataOffset).toBe(1536);
    const image = await openImage('/o.cow', { vfs });
    await image.write(4108 - dataOffset, Uint8Array.from([...be64(512), ...be32(512)]));
    await image.close();
    const reopened = await openImage('/o.cow', { vfs });
    expect(reopened.info().formatSpecific.variant).toBe('v2-qemu-lp64');
    expect(reopened.size).toBe(1024 * 1024);
    expect([...(await reopened.read(2572, 12))]).toEqual([...be64(512), ...be32(512)]);
    await reopened.close();
  });

  it.each(CREATED)(
    '%s: arbitrary guest writes, header-looking bytes included, never change the layout on reopen',
    async (variant) => {
      const uml = variant === 'v1' || variant === 'v2-uml';
      const sizeArb = uml
        ? fc.integer({ min: 1, max: 512 }).map((n) => n * 4096)
        : fc.integer({ min: 1, max: 4096 }).map((n) => n * 512);
      const scenario = sizeArb.chain((size) => {
        const { dataOffset } = computeLayout({ variant, size, sectorSize: 512, alignment: 4096 });
        return fc.tuple(fc.constant(size), fc.array(guestWrite(size, dataOffset), { minLength: 1, maxLength: 12 }));
      });
      await fc.assert(
        fc.asyncProperty(scenario, async ([size, writes]) => {
          const { vfs } = await makeOverlay(variant, size);
          const model = new Uint8Array(size);
          const image = await openImage('/o.cow', { vfs });
          expect(image.info().formatSpecific.variant).toBe(variant);
          for (const w of writes) {
            await image.write(w.at, w.bytes);
            model.set(w.bytes, w.at);
          }
          await image.close();
          const file = vfs.file('/o.cow').snapshot();
          const found = detectVariant(file.subarray(0, 4136), file.length);
          expect(found.ok && found.variant).toBe(variant);
          const reopened = await openImage('/o.cow', { vfs });
          expect(reopened.info().formatSpecific.variant).toBe(variant);
          expect(reopened.size).toBe(size);
          expect(Buffer.from(await reopened.read(0, size)).equals(Buffer.from(model))).toBe(true);
          await reopened.close();
        }),
        { numRuns: Number(process.env.BLK_PROPERTY_RUNS ?? 60) },
      );
    },
  );
});
