/**
 * Resource limits: a 1 TiB image (raw and cow) is handled with memory that
 * does not grow with its size; the bitmap cache stays under its bound;
 * backing chains are limited to DEFAULT_MAX_CHAIN_DEPTH (16) levels and a
 * 1000-level chain is refused with 'chain-too-deep' and no handle leaked, or
 * handled when the caller raises maxDepth; open files are one per layer.
 */
import { describe, expect, it } from 'vitest';
import {
  BlockError,
  DEFAULT_MAX_CHAIN_DEPTH,
  MemoryVfs,
  cowDriver,
  createImage,
  openImage,
  type Vfs,
} from '@blk/images';
import { FaultyVfs } from '@blk/faults';

const TiB = 2 ** 40;
const MiB = 2 ** 20;

function arrayBuffers(): number {
  return process.memoryUsage().arrayBuffers;
}

/** createImage's job for a cow overlay over a cow image, through the driver (see the createImage chain bug). */
async function createOverlay(vfs: Vfs, path: string, backing: string, variant = 'v3'): Promise<void> {
  const below = await openImage(backing, {
    vfs,
    format: backing.endsWith('.raw') ? 'raw' : 'cow',
    readOnly: true,
    backing: { mode: 'ignore' },
  });
  const size = below.size;
  await below.close();
  const st = await vfs.stat(backing);
  const storage = await vfs.open(path, { create: true, exclusive: true, truncate: true });
  await cowDriver.create!(storage, {
    size,
    backing: { path: backing, facts: { size, mtimeSec: st.mtimeSec } },
    driverOptions: { variant },
  });
  await storage.flush();
  await storage.close();
}

describe('limits: 1 TiB images', () => {
  it('raw: a 1 TiB sparse image is created, written at both ends and read back in little memory', async () => {
    const vfs = new MemoryVfs('/');
    await createImage('/big.raw', { vfs, format: 'raw', size: TiB });
    const image = await openImage('/big.raw', { vfs, format: 'raw' });
    expect(image.size).toBe(TiB);
    await image.write(0, new Uint8Array(512).fill(1));
    await image.write(TiB - 512, new Uint8Array(512).fill(2));
    expect((await image.read(TiB - 512, 512))[511]).toBe(2);
    expect((await image.read(TiB / 2, 4096)).every((b) => b === 0)).toBe(true);
    await image.close();
    expect(vfs.file('/big.raw').allocatedBytes).toBeLessThanOrEqual(2 * 64 * 1024);
  });

  it('cow v3 over a 1 TiB base: open costs one header read; writes across the disk keep the bitmap cache under its bound', async () => {
    const vfs = new MemoryVfs('/');
    await createImage('/base.raw', { vfs, format: 'raw', size: TiB });
    await createImage('/top.cow', { vfs, format: 'cow', backing: '/base.raw' });
    const info = await openImage('/top.cow', { vfs, format: 'cow', readOnly: true });
    const fs = info.info().formatSpecific as { bitmapLength: number; dataOffset: number };
    await info.close();
    expect(fs.bitmapLength).toBe(256 * MiB); // what UML would hold in RAM
    const bound = 1 * MiB;
    const file = vfs.file('/top.cow');
    const fileBefore = file.allocatedBytes;
    const before = arrayBuffers();
    const image = await openImage('/top.cow', { vfs, format: 'cow', driverOptions: { bitmapCacheBytes: bound } });
    // 600 writes 1.8 GiB apart: one 4 KiB bitmap chunk each, 2.3 MiB of chunks in all.
    const step = Math.floor(TiB / 600 / 512) * 512;
    for (let i = 0; i < 600; i++) await image.write(i * step, new Uint8Array(512).fill((i % 250) + 1));
    // The cache's own count (CowImage.bitmap.cachedBytes, reached past Image's private field).
    const cached = (image as unknown as { driverImage: { bitmap: { cachedBytes: number; loads: number } } }).driverImage
      .bitmap;
    expect(cached.cachedBytes).toBeLessThanOrEqual(bound + 4096);
    // What the driver holds: growth of array buffers minus what the in-memory file itself grew by.
    const during = arrayBuffers() - before - (file.allocatedBytes - fileBefore);
    await image.flush();
    for (let i = 0; i < 600; i += 37) expect((await image.read(i * step, 512))[0]).toBe((i % 250) + 1);
    await image.close();
    const again = await openImage('/top.cow', { vfs, format: 'cow', readOnly: true });
    for (let i = 0; i < 600; i += 53) expect((await again.read(i * step, 512))[7]).toBe((i % 250) + 1);
    await again.close();
    console.log(
      `FIGURE limits: 1 TiB cow, 600 scattered writes, bitmap cache bound ${bound} B, bitmap cache holds ${cached.cachedBytes} B after ${cached.loads} chunk loads, array buffers grew ${(during / MiB).toFixed(2)} MiB before GC (UML would hold 256 MiB)`,
    );
    expect(during).toBeLessThan(16 * MiB);
  });

  it('refuses sizes past 2^53 - 1 with a typed error', async () => {
    const vfs = new MemoryVfs('/');
    vfs.put('/base.raw', new Uint8Array(512));
    const err = await createImage('/x.cow', { vfs, format: 'cow', size: 2 ** 60 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
  });
});

describe('limits: chain depth and open files', () => {
  const DEPTH = 1000;
  let vfs: MemoryVfs;

  it(`builds a ${DEPTH}-level cow chain`, async () => {
    vfs = new MemoryVfs('/');
    vfs.put('/c/l0.raw', new Uint8Array(64 * 1024).fill(7));
    let below = '/c/l0.raw';
    for (let i = 1; i <= DEPTH; i++) {
      const path = `/c/l${i}.cow`;
      await createOverlay(vfs, path, below, 'v2-qemu-lp64');
      below = path;
    }
    expect(vfs.files.size).toBe(DEPTH + 1);
  }, 120_000);

  const policy = { format: (ref: { path: string }) => (ref.path.endsWith('.raw') ? 'raw' : 'cow') };

  it(`refuses the ${DEPTH}-level chain under the default limit (${DEFAULT_MAX_CHAIN_DEPTH}) with chain-too-deep, leaking no handle`, async () => {
    const counting = new FaultyVfs(vfs);
    const err = await openImage(`/c/l${DEPTH}.cow`, { vfs: counting, format: 'cow', backing: policy }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).kind).toBe('chain-too-deep');
    expect(counting.counts.open).toBe(DEFAULT_MAX_CHAIN_DEPTH + 1); // it stopped at the limit
    expect(counting.openHandles).toBe(0);
  });

  it(`opens exactly ${DEFAULT_MAX_CHAIN_DEPTH} levels below the top, one open file per layer`, async () => {
    const counting = new FaultyVfs(vfs);
    const image = await openImage(`/c/l${DEFAULT_MAX_CHAIN_DEPTH + 1}.cow`, {
      vfs: counting,
      format: 'cow',
      backing: policy,
    }).catch(() => undefined);
    // l17 -> l1 is 16 cow levels and then l0.raw: 17 below the top, one too many.
    expect(image).toBeUndefined();
    const ok = await openImage(`/c/l${DEFAULT_MAX_CHAIN_DEPTH}.cow`, { vfs: counting, format: 'cow', backing: policy });
    expect(ok.chain().length).toBe(DEFAULT_MAX_CHAIN_DEPTH + 1);
    expect(counting.openHandles).toBe(DEFAULT_MAX_CHAIN_DEPTH + 1);
    await ok.close();
    expect(counting.openHandles).toBe(0);
  });

  it(`handles the ${DEPTH}-level chain when maxDepth is raised: reads fall through every level`, async () => {
    const counting = new FaultyVfs(vfs);
    const t0 = performance.now();
    const image = await openImage(`/c/l${DEPTH}.cow`, {
      vfs: counting,
      format: 'cow',
      backing: { ...policy, maxDepth: DEPTH },
    });
    const opened = performance.now() - t0;
    expect(image.chain().length).toBe(DEPTH + 1);
    expect(counting.openHandles).toBe(DEPTH + 1);
    const t1 = performance.now();
    const data = await image.read(1000, 3000);
    const readMs = performance.now() - t1;
    expect(data.every((b) => b === 7)).toBe(true);
    await image.write(512, new Uint8Array(512).fill(9));
    expect((await image.read(512, 512))[0]).toBe(9);
    await image.close();
    expect(counting.openHandles).toBe(0);
    console.log(
      `FIGURE limits: ${DEPTH}-level chain opened in ${opened.toFixed(0)} ms with maxDepth ${DEPTH}, a read through all levels took ${readMs.toFixed(1)} ms`,
    );
  }, 120_000);

  // Regression (bug found by these tests, fixed in core): createImage opened the backing's
  // own chain with the default policy, so cow on cow on cow failed with backing-mismatch.
  it('createImage builds a 4-level chain (cow on cow on cow on raw) through the public API', async () => {
    const v = new MemoryVfs('/');
    v.put('/k/base.raw', new Uint8Array(64 * 1024));
    await createImage('/k/a.cow', { vfs: v, format: 'cow', backing: '/k/base.raw' });
    await createImage('/k/b.cow', { vfs: v, format: 'cow', backing: { path: '/k/a.cow', format: 'cow' } });
    await createImage('/k/c.cow', { vfs: v, format: 'cow', backing: { path: '/k/b.cow', format: 'cow' } });
    const image = await openImage('/k/c.cow', { vfs: v, format: 'cow', backing: { format: 'probe' } });
    expect(image.chain().length).toBe(4);
    await image.close();
  });
});
