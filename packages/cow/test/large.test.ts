/** A 1 TiB overlay (256 MiB bitmap): opens in milliseconds with little memory, and works at both ends. */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, createImage, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '../src/index.js';
import { SS, pattern, sameBytes } from './helpers.js';

const TiB = 2 ** 40;

describe('1 TiB image', () => {
  it('opens in under 100 ms without loading the 256 MiB bitmap, and reads and writes at 512 GiB and the last sector', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/base.raw').truncate(TiB);
    const registry = new DriverRegistry([cowDriver, rawDriver]);
    await createImage('/ovl.cow', { registry, format: 'cow', backing: '/base.raw', vfs });
    expect(vfs.file('/ovl.cow').length).toBe(268_443_648 + TiB);

    const before = process.memoryUsage();
    const t0 = performance.now();
    const image = await openImage('/ovl.cow', { registry, vfs });
    const openMs = performance.now() - t0;
    const after = process.memoryUsage();
    expect(openMs).toBeLessThan(100);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(8 * 2 ** 20);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(32 * 2 ** 20);
    expect(image.size).toBe(TiB);

    const last = TiB - SS;
    const mid = TiB / 2;
    await image.write(last, pattern(last / SS, 1, 7));
    await image.write(mid, pattern(mid / SS, 8, 7));
    expect(await image.isAllocated(last, SS)).toEqual({ allocated: true, length: SS });
    expect(await image.isAllocated(last - SS, SS)).toEqual({ allocated: false, length: SS });
    expect(await image.isAllocated(mid, 16 * SS)).toEqual({ allocated: true, length: 8 * SS });
    expect(await image.isAllocated(mid + 8 * SS, 8 * SS)).toEqual({ allocated: false, length: 8 * SS });
    await image.close();

    // The overlay file stays sparse: a header chunk, two bitmap chunks, two data chunks (64 KiB each in MemoryFile).
    expect(vfs.file('/ovl.cow').allocatedBytes).toBeLessThanOrEqual(5 * 65536);

    const again = await openImage('/ovl.cow', { registry, vfs, readOnly: true });
    expect(sameBytes(await again.read(last, SS), pattern(last / SS, 1, 7))).toBe(true);
    expect(sameBytes(await again.read(mid, 8 * SS), pattern(mid / SS, 8, 7))).toBe(true);
    expect(await again.isAllocated(last, SS)).toEqual({ allocated: true, length: SS });
    // Unwritten sectors fall through to the (sparse, zero) backing file.
    expect((await again.read(mid - SS, SS)).every((b) => b === 0)).toBe(true);
    expect(again.info().formatSpecific).toMatchObject({ variant: 'v3', bitmapLength: 268_435_456, dataOffset: 268_443_648 });
    await again.close();
  });
});
