/** A 1 TiB overlay (256 MiB bitmap): opens reading a few KiB with little memory, and works at both ends. */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  ForwardingVfs,
  MemoryVfs,
  createImage,
  openImage,
  type Storage,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '../src/index.js';
import { SS, pattern, sameBytes } from './helpers.js';

const TiB = 2 ** 40;

/** Counts the bytes read through it: the measure of work an open does (wall-clock time is not, on a busy machine). */
class ReadCountingVfs extends ForwardingVfs {
  bytesRead = 0;
  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const s = await this.inner.open(path, options);
    const read = async (offset: number, into: Uint8Array) => {
      const n = await s.read(offset, into);
      this.bytesRead += n;
      return n;
    };
    // No readSync or extentAt: every read goes through the counted path.
    return {
      path: s.path,
      readOnly: s.readOnly,
      capabilities: { ...s.capabilities, syncRead: false, extents: false },
      read,
      write: (o, d) => s.write!(o, d),
      size: () => s.size(),
      truncate: (n) => s.truncate!(n),
      flush: () => s.flush!(),
      close: () => s.close(),
    };
  }
}

describe('1 TiB image', () => {
  it('opens reading a few KiB, without loading the 256 MiB bitmap, and reads and writes at 512 GiB and the last sector', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/base.raw').truncate(TiB);
    const registry = new DriverRegistry([cowDriver, rawDriver]);
    await createImage('/ovl.cow', { registry, format: 'cow', backing: '/base.raw', vfs });
    expect(vfs.file('/ovl.cow').length).toBe(268_443_648 + TiB);

    const counting = new ReadCountingVfs(vfs);
    const before = process.memoryUsage();
    const image = await openImage('/ovl.cow', { registry, vfs: counting });
    const after = process.memoryUsage();
    expect(counting.bytesRead).toBeLessThanOrEqual(16 * 1024); // the header and the probe window, not the bitmap
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
    expect(again.info().formatSpecific).toMatchObject({
      variant: 'v3',
      bitmapLength: 268_435_456,
      dataOffset: 268_443_648,
    });
    await again.close();
  });
});
