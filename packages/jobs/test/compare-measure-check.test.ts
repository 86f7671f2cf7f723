/**
 * The compare, measure and check jobs over MemoryVfs (portable): the results
 * the blk command prints, computed without a host file system.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createImage, DriverRegistry, Image, isBlockError, MemoryVfs, openImage } from '@blk/core';
import { cowDriver } from '@blk/cow';
import { rawDriver } from '@blk/raw';
import { checkAllocation, compareImages, dataBytes, measureImage } from '@blk/jobs';

const registry = new DriverRegistry([cowDriver, rawDriver]);
const KiB = 1024;
const SIZE = 256 * KiB;

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = ((i * 13 + seed) % 251) + 1;
  return out;
}

/** base.raw (data in [0, 64K)) <- top.cow (data in [128K, 160K)), and flat.raw with the same contents. */
async function images(): Promise<{ vfs: MemoryVfs; flat: Uint8Array }> {
  const vfs = new MemoryVfs();
  const base = new Uint8Array(SIZE);
  base.set(pattern(64 * KiB, 1));
  vfs.put('/base.raw', base);
  await createImage('/top.cow', { registry, vfs, format: 'cow', backing: '/base.raw' });
  const top = await openImage('/top.cow', { registry, vfs });
  await top.write(128 * KiB, pattern(32 * KiB, 2));
  await top.close();
  const flat = base.slice();
  flat.set(pattern(32 * KiB, 2), 128 * KiB);
  vfs.put('/flat.raw', flat);
  return { vfs, flat };
}

const open = (vfs: MemoryVfs, path: string, format?: string) =>
  openImage(path, { registry, vfs, readOnly: true, ...(format ? { format } : {}) });

afterEach(() => {
  vi.restoreAllMocks();
});

describe('compareImages', () => {
  it('finds a chain identical to its flat copy, reading each run from the layer that holds it', async () => {
    const { vfs } = await images();
    const a = await open(vfs, '/top.cow');
    const b = await open(vfs, '/flat.raw', 'raw');
    const reads: Array<{ path: string; offset: number }> = [];
    const original = Image.prototype.readInto;
    vi.spyOn(Image.prototype, 'readInto').mockImplementation(function (this: Image, offset, into, o) {
      reads.push({ path: this.path, offset });
      return original.call(this, offset, into, o);
    });
    expect(await compareImages(a, b)).toEqual({ kind: 'identical', sizesDiffer: false });
    // The base's data is read from the base, the overlay's from the overlay.
    expect(reads.filter((r) => r.path === '/top.cow').every((r) => r.offset >= 128 * KiB && r.offset < 160 * KiB)).toBe(
      true,
    );
    expect(reads.some((r) => r.path === '/base.raw')).toBe(true);
    await a.close();
    await b.close();
  });

  it('reports the sector of the first difference, size mismatches, and -s', async () => {
    const { vfs, flat } = await images();
    const changed = flat.slice();
    changed[130 * KiB + 700] ^= 0xff;
    vfs.put('/changed.raw', changed);
    const longer = new Uint8Array(SIZE + 4096);
    longer.set(flat);
    vfs.put('/longer.raw', longer);
    const a = await open(vfs, '/top.cow');
    const c = await open(vfs, '/changed.raw', 'raw');
    const l = await open(vfs, '/longer.raw', 'raw');
    expect(await compareImages(a, c)).toEqual({
      kind: 'content-mismatch',
      offset: 130 * KiB + 512,
      inTail: false,
      sizesDiffer: false,
    });
    expect(await compareImages(a, l)).toEqual({ kind: 'identical', sizesDiffer: true });
    expect(await compareImages(a, l, { strict: true })).toEqual({ kind: 'size-mismatch' });
    longer[SIZE + 1000] = 1;
    vfs.put('/longer2.raw', longer);
    const l2 = await open(vfs, '/longer2.raw', 'raw');
    expect(await compareImages(a, l2)).toEqual({
      kind: 'content-mismatch',
      offset: SIZE + 512,
      inTail: true,
      sizesDiffer: true,
    });
    for (const image of [a, c, l, l2]) await image.close();
  });

  it('stops with `aborted`', async () => {
    const { vfs } = await images();
    const a = await open(vfs, '/top.cow');
    const b = await open(vfs, '/flat.raw', 'raw');
    const controller = new AbortController();
    controller.abort();
    await expect(compareImages(a, b, { signal: controller.signal })).rejects.toSatisfy((e: unknown) =>
      isBlockError(e, 'aborted'),
    );
    await a.close();
    await b.close();
  });
});

describe('measureImage and dataBytes', () => {
  it("counts the chain's data at the driver's granularity and hands it to the driver", async () => {
    const { vfs } = await images();
    const a = await open(vfs, '/top.cow');
    // base.raw is data everywhere (a MemoryStorage has no holes to report): the whole size.
    expect(await dataBytes(a, 512)).toBe(SIZE);
    const viaJob = await measureImage(registry, { format: 'cow', source: a });
    const direct = await cowDriver.measure!({ size: a.size, dataBytes: (g) => dataBytes(a, g) });
    expect(viaJob).toEqual({ required: direct.required, fullyAllocated: direct.fullyAllocated });
    const bySize = await measureImage(registry, { format: 'cow', size: 1024 * KiB });
    expect(bySize).toEqual(
      await cowDriver.measure!({ size: 1024 * KiB }).then((r) => ({
        required: r.required,
        fullyAllocated: r.fullyAllocated,
      })),
    );
    await expect(measureImage(new DriverRegistry([]), { format: 'cow', size: 1 })).rejects.toSatisfy((e: unknown) =>
      isBlockError(e),
    );
    await a.close();
  });
});

describe('checkAllocation', () => {
  it("counts the image's own sectors and finds data said to lie past the end of the file", async () => {
    const { vfs } = await images();
    const a = await openImage('/top.cow', { registry, vfs, readOnly: true, backing: { mode: 'ignore' } });
    const fileSize = (await vfs.stat('/top.cow')).size;
    const ok = await checkAllocation(a, { fileSize, checkPastEof: true });
    expect(ok).toEqual({
      totalClusters: SIZE / 512,
      allocatedClusters: (32 * KiB) / 512,
      corruptions: 0,
      problems: [],
    });
    // As if the file ended 1 KiB before the end of the overlay's data: its last two sectors are missing.
    let dataEnd = 0;
    for await (const run of a.map()) if (run.depth === 0) dataEnd = run.hostOffset! + run.length;
    expect(dataEnd).toBeGreaterThan(0);
    const cut = await checkAllocation(a, { fileSize: dataEnd - 1024, checkPastEof: true });
    expect(cut.corruptions).toBe(2);
    expect(cut.problems).toHaveLength(1);
    expect(cut.problems[0]).toMatch(
      /^ERROR sectors \d+-\d+ \(offset \d+\): marked allocated, but the data lies past the end of the file/,
    );
    await a.close();
  });
});
