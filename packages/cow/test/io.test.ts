/** Reads, writes and block status: where bytes go, what falls through, how many storage calls it takes. */
import { describe, expect, it } from 'vitest';
import { BlockError, MemoryFile, MemoryStorage } from '@blk/core';
import { encodeHeader, type CowVariant } from '../src/index.js';
import {
  MiB,
  RecordingStorage,
  SS,
  bitmapByte,
  createFile,
  openFile,
  pattern,
  recordingBelow,
  sameBytes,
  sha256,
} from './helpers.js';

const WRITABLE: CowVariant[] = ['v3', 'v2-qemu-lp64', 'v2-qemu-ilp32', 'v2-uml', 'v1'];

describe('writes', () => {
  for (const variant of WRITABLE) {
    it(`${variant}: sector n lands at dataOffset + n*512 and sets bit n`, async () => {
      const file = await createFile({ variant });
      const image = await openFile(file);
      const { dataOffset, bitmapOffset } = image.layout;
      await image.write(1000 * SS, pattern(1000, 2));
      await image.close();
      const onDisk = new Uint8Array(2 * SS);
      file.readAt(dataOffset + 1000 * SS, onDisk);
      expect(onDisk).toEqual(pattern(1000, 2));
      expect(bitmapByte(file, bitmapOffset, 125)).toBe(0b11); // sectors 1000, 1001
      expect(bitmapByte(file, bitmapOffset, 124)).toBe(0);
      expect(bitmapByte(file, bitmapOffset, 126)).toBe(0);
    });
  }

  it('a 1 MiB aligned write is one storage write of data', async () => {
    const storage = new RecordingStorage(new MemoryStorage(await createFile()));
    const image = await openFile(storage);
    storage.clear();
    await image.write(4 * MiB, pattern(8192, 2048));
    const writes = storage.events.filter((e) => e.op === 'write');
    expect(writes).toEqual([{ op: 'write', offset: image.layout.dataOffset + 4 * MiB, length: MiB }]);
    await image.close();
  });

  it('in writeback mode a write leaves the bitmap alone until flush', async () => {
    const file = await createFile();
    const image = await openFile(file);
    await image.write(0, pattern(0, 1));
    expect(bitmapByte(file, 8192, 0)).toBe(0);
    await image.flush();
    expect(bitmapByte(file, 8192, 0)).toBe(1);
    await image.close();
  });

  it('rewriting allocated sectors in writethrough mode writes no bitmap bytes', async () => {
    const storage = new RecordingStorage(new MemoryStorage(await createFile()));
    const image = await openFile(storage, { cache: 'writethrough' });
    await image.write(0, pattern(0, 8));
    storage.clear();
    await image.write(0, pattern(0, 8, 2));
    expect(storage.events.filter((e) => e.op === 'write' && e.offset < image.layout.dataOffset)).toEqual([]);
    await image.close();
  });

  it('a QEMU-created file grows when a write lands past its end', async () => {
    const file = await createFile({ variant: 'v2-qemu-lp64' });
    const image = await openFile(file);
    await image.write(10 * SS, pattern(10, 1));
    expect(file.length).toBe(image.layout.dataOffset + 11 * SS);
    await image.close();
  });

  it('a read-only image refuses writes with read-only', async () => {
    const image = await openFile(await createFile(), { readOnly: true });
    await expect(image.write(0, pattern(0, 1))).rejects.toMatchObject({ kind: 'read-only' });
    await image.close();
  });

  it('an image refuses use after close with closed', async () => {
    const image = await openFile(await createFile());
    await image.close();
    await expect(image.read(0, new Uint8Array(SS), recordingBelow().below)).rejects.toMatchObject({ kind: 'closed' });
  });
});

describe('reads', () => {
  it('unallocated sectors are read through below, allocated ones from the data area', async () => {
    const image = await openFile(await createFile());
    await image.write(3 * SS, pattern(3, 1));
    const { calls, below } = recordingBelow();
    const out = new Uint8Array(6 * SS);
    await image.read(0, out, below);
    expect(calls).toEqual([
      [0, 3 * SS],
      [4 * SS, 2 * SS],
    ]);
    expect(out.subarray(0, 3 * SS).every((b) => b === 0xee)).toBe(true);
    expect(out.subarray(3 * SS, 4 * SS)).toEqual(pattern(3, 1));
    expect(out.subarray(4 * SS).every((b) => b === 0xee)).toBe(true);
    await image.close();
  });

  it('a 1 MiB read over a fully allocated range is one storage read', async () => {
    const storage = new RecordingStorage(new MemoryStorage(await createFile()));
    const image = await openFile(storage);
    await image.write(MiB, pattern(2048, 2048));
    storage.clear();
    const out = new Uint8Array(MiB);
    const { calls, below } = recordingBelow();
    await image.read(MiB, out, below);
    expect(storage.events).toEqual([{ op: 'read', offset: image.layout.dataOffset + MiB, length: MiB }]);
    expect(calls).toEqual([]);
    expect(sameBytes(out, pattern(2048, 2048))).toBe(true);
    await image.close();
  });

  it('one below call per unallocated run, one storage read per allocated run', async () => {
    const storage = new RecordingStorage(new MemoryStorage(await createFile()));
    const image = await openFile(storage);
    // Allocated: 0..99, 200..299 (a run crossing byte boundaries at odd bits).
    await image.write(0, pattern(0, 100));
    await image.write(200 * SS, pattern(200, 100));
    storage.clear();
    const { calls, below } = recordingBelow();
    await image.read(0, new Uint8Array(400 * SS), below);
    expect(calls).toEqual([
      [100 * SS, 100 * SS],
      [300 * SS, 100 * SS],
    ]);
    expect(storage.events.filter((e) => e.op === 'read')).toEqual([
      { op: 'read', offset: image.layout.dataOffset, length: 100 * SS },
      { op: 'read', offset: image.layout.dataOffset + 200 * SS, length: 100 * SS },
    ]);
    await image.close();
  });

  it('allocated sectors past the end of a QEMU file read as zeros', async () => {
    const file = await createFile({ variant: 'v2-qemu-lp64' });
    file.writeAt(1056, new Uint8Array([0x01])); // sector 0 allocated, data area absent
    const image = await openFile(file);
    const out = new Uint8Array(SS).fill(0x77);
    await image.read(0, out, recordingBelow().below);
    expect(out.every((b) => b === 0)).toBe(true);
    await image.close();
  });

  it('bits are read back after reopen', async () => {
    const file = await createFile();
    const image = await openFile(file);
    await image.write(77 * SS, pattern(77, 3, 9));
    await image.close();
    const again = await openFile(file, { readOnly: true });
    const out = new Uint8Array(3 * SS);
    const { calls, below } = recordingBelow();
    await again.read(77 * SS, out, below);
    expect(calls).toEqual([]);
    expect(out).toEqual(pattern(77, 3, 9));
    await again.close();
  });
});

describe('blockStatus', () => {
  it('reports runs of equal state, with hostOffset for allocated runs', async () => {
    const image = await openFile(await createFile());
    await image.write(8 * SS, pattern(8, 24));
    expect(await image.blockStatus(0, 64 * SS)).toEqual({ allocated: false, length: 8 * SS });
    expect(await image.blockStatus(8 * SS, 64 * SS)).toEqual({
      allocated: true,
      length: 24 * SS,
      hostOffset: image.layout.dataOffset + 8 * SS,
    });
    expect(await image.blockStatus(10 * SS, 4 * SS)).toEqual({
      allocated: true,
      length: 4 * SS,
      hostOffset: image.layout.dataOffset + 10 * SS,
    });
    expect(await image.blockStatus(32 * SS, image.size - 32 * SS)).toEqual({
      allocated: false,
      length: image.size - 32 * SS,
    });
    await image.close();
  });

  it('an empty 64 MiB image is one unallocated run', async () => {
    const image = await openFile(await createFile());
    expect(await image.blockStatus(0, image.size)).toEqual({ allocated: false, length: image.size });
    await image.close();
  });
});

describe('bytes the bitmap does not own', () => {
  // 64 MiB + 3 sectors: 131075 sectors, so the last bitmap byte has 5 bits for sectors that do not exist.
  const size = 64 * MiB + 3 * SS;

  it("v3: garbage in the last byte's spare bits and in pad B is ignored and kept", async () => {
    const file = await createFile({ size });
    const image0 = await openFile(file, { readOnly: true });
    const { bitmapOffset, bitmapLength } = image0.layout;
    await image0.close();
    file.writeAt(bitmapOffset + bitmapLength - 1, new Uint8Array([0xf8, 0xff, 0xff]));
    const image = await openFile(file);
    expect(await image.blockStatus(131072 * SS, 3 * SS)).toEqual({ allocated: false, length: 3 * SS });
    await image.write(131074 * SS, pattern(131074, 1));
    await image.close();
    expect(bitmapByte(file, bitmapOffset, bitmapLength - 1)).toBe(0xf8 | 0x04);
    expect(bitmapByte(file, bitmapOffset, bitmapLength)).toBe(0xff);
  });

  /** A v2-uml file with the rounding bug (create refuses such sizes), pad B full of 0xFF. */
  function roundingBugFile(): MemoryFile {
    const header = encodeHeader({
      variant: 'v2-uml',
      magicOrder: 'be',
      version: 2,
      backingFile: '/b',
      mtime: 0,
      size,
      sectorSize: 512,
    });
    const file = new MemoryFile(header);
    file.truncate(20992 + size);
    file.writeAt(4120 + 16384, new Uint8Array(20992 - 4120 - 16384).fill(0xff));
    return file;
  }

  it('v2-uml rounding bug: the last 3 sectors read through below even though pad B has their "bits"', async () => {
    const image = await openFile(roundingBugFile());
    expect(image.layout.trackedSectors).toBe(131072);
    const { calls, below } = recordingBelow();
    await image.read(131070 * SS, new Uint8Array(5 * SS), below);
    expect(calls).toEqual([[131070 * SS, 5 * SS]]);
    expect(await image.blockStatus(131072 * SS, 3 * SS)).toEqual({ allocated: false, length: 3 * SS });
    await image.close();
  });

  it('v2-uml rounding bug: a write to an untracked sector is not-supported and writes nothing', async () => {
    const file = roundingBugFile();
    const before = sha256(file.snapshot());
    const image = await openFile(file);
    const err = await image.write(131072 * SS, pattern(0, 1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'not-supported' });
    expect((err as Error).message).toMatch(/rounding bug/);
    await image.close();
    expect(sha256(file.snapshot())).toBe(before);
  });
});
