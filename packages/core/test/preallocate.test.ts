/** preallocate(): falloc and full on a storage that can reserve space, and one whose file system is too small. */
import { describe, expect, it } from 'vitest';
import { BlockError, MemoryFile, MemoryStorage, preallocate, type StorageCapabilities } from '@blk/core';
import { CountingStorage } from './fixtures/helpers.js';

/** A storage whose file system holds `capacity` bytes: allocate beyond it fails with ENOSPC, as posix_fallocate does. */
class SmallDisk extends CountingStorage {
  constructor(private readonly capacity: number) {
    super(new MemoryStorage(new MemoryFile(), '/disk.img'));
  }

  /** This filter adds allocate (the memory storage below has none): it says so. */
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    return { ...super.filterCapabilities(below), allocate: true };
  }

  override async allocate(offset: number, length: number): Promise<void> {
    this.ops.push(`allocate ${offset}+${length}`);
    if (offset + length > this.capacity) {
      throw new BlockError('io', 'fallocate failed: ENOSPC: no space left on device', {
        path: this.path,
        code: 'ENOSPC',
        offset,
      });
    }
    if ((await this.size()) < offset + length) await this.truncate(offset + length);
  }
}

describe('preallocate', () => {
  it('full: a size the file system cannot hold fails at once with ENOSPC, before writing any zeros', async () => {
    const disk = new SmallDisk(1 << 20);
    await expect(preallocate(disk, 0, 64 << 20, 'full')).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(disk.writes).toBe(0);
  });

  it('full: where the space can be reserved, zeros are still written over all of it (full means written)', async () => {
    const disk = new SmallDisk(8 << 20);
    await preallocate(disk, 4096, (2 << 20) + 100, 'full');
    expect(disk.ops[0]).toBe(`allocate 4096+${(2 << 20) + 100}`);
    expect(disk.writes).toBe(3);
    expect(await disk.size()).toBe(4096 + (2 << 20) + 100);
  });

  it('falloc: reserved without writing', async () => {
    const disk = new SmallDisk(8 << 20);
    await preallocate(disk, 0, 2 << 20, 'falloc');
    expect(disk.writes).toBe(0);
    expect(await disk.size()).toBe(2 << 20);
  });
});
