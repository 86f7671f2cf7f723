/**
 * The copy engine's write-behind: it flushes its target in the background
 * every `writeBehind` bytes written (one flush at a time), so that the disk
 * takes the data while the copy goes on, and a failed background flush fails
 * the copy.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BlockError, createImage, DriverRegistry, type Image, MemoryVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { copyImageData, WRITE_BEHIND } from '@blk/jobs';

const registry = new DriverRegistry([rawDriver]);
const KiB = 1024;
const SIZE = 1024 * KiB;

function pattern(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = ((i * 31) % 251) + 1; // never zero
  return out;
}

async function pair(): Promise<{ source: Image; target: Image; vfs: MemoryVfs }> {
  const vfs = new MemoryVfs();
  vfs.put('/src.raw', pattern(SIZE));
  await createImage('/dst.raw', { registry, vfs, format: 'raw', size: SIZE });
  const source = await openImage('/src.raw', { registry, vfs, format: 'raw', readOnly: true });
  const target = await openImage('/dst.raw', { registry, vfs, format: 'raw' });
  return { source, target, vfs };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('copy engine write-behind', () => {
  it('flushes the target behind the copy, every writeBehind bytes written, without the caller asking', async () => {
    const { source, target, vfs } = await pair();
    const writtenAtFlush: number[] = [];
    let written = 0;
    const write = target.write.bind(target);
    vi.spyOn(target, 'write').mockImplementation(async (offset, data, flags) => {
      await write(offset, data, flags);
      written += data.length;
    });
    const flush = target.flush.bind(target);
    vi.spyOn(target, 'flush').mockImplementation(() => {
      writtenAtFlush.push(written);
      return flush();
    });
    await copyImageData(source, target, { chunk: 16 * KiB, depth: 2, sparseSize: 4096, writeBehind: 128 * KiB });
    // 1 MiB written, a flush every 128 KiB at most (fewer when one is still running).
    expect(writtenAtFlush.length).toBeGreaterThanOrEqual(2);
    expect(writtenAtFlush.length).toBeLessThanOrEqual(SIZE / (128 * KiB));
    expect(writtenAtFlush[0]).toBeGreaterThanOrEqual(128 * KiB);
    await target.close();
    await source.close();
    const copied = new Uint8Array(SIZE);
    expect(vfs.files.get('/dst.raw')?.readAt(0, copied)).toBe(SIZE);
    expect(copied).toEqual(pattern(SIZE));
  });

  it('keeps at most one background flush running, and has none running when the copy returns', async () => {
    const { source, target } = await pair();
    let running = 0;
    let most = 0;
    let count = 0;
    vi.spyOn(target, 'flush').mockImplementation(async () => {
      running++;
      count++;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
    });
    await copyImageData(source, target, { chunk: 16 * KiB, depth: 4, sparseSize: 4096, writeBehind: 16 * KiB });
    expect(count).toBeGreaterThanOrEqual(1);
    expect(most).toBe(1);
    expect(running).toBe(0);
    await target.close();
    await source.close();
  });

  it('fails the copy when a background flush fails (a later fsync could succeed although the data is lost)', async () => {
    const { source, target } = await pair();
    vi.spyOn(target, 'flush').mockRejectedValue(new BlockError('io', 'flush failed: EIO', { code: 'EIO' }));
    await expect(
      copyImageData(source, target, { chunk: 16 * KiB, depth: 2, sparseSize: 4096, writeBehind: 64 * KiB }),
    ).rejects.toMatchObject({ kind: 'io', message: expect.stringContaining('flush failed') });
    await target.close().catch(() => undefined);
    await source.close();
  });

  it('never flushes with writeBehind 0, and by default flushes every WRITE_BEHIND bytes', async () => {
    const { source, target } = await pair();
    const flush = vi.spyOn(target, 'flush');
    await copyImageData(source, target, { chunk: 16 * KiB, depth: 2, sparseSize: 4096, writeBehind: 0 });
    expect(flush).not.toHaveBeenCalled();
    // 1 MiB is less than the default interval: no flush either (the caller's final flush does it all).
    expect(WRITE_BEHIND).toBeGreaterThan(SIZE);
    await copyImageData(source, target, { chunk: 16 * KiB, depth: 2, sparseSize: 4096 });
    expect(flush).not.toHaveBeenCalled();
    await target.close();
    await source.close();
  });
});
