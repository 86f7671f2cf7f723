/** Raw images through Image.resize, create's preallocation and rawDriver.measure, on a memory Vfs with faults. */
import { describe, expect, it } from 'vitest';
import { BlockError, DriverRegistry, MemoryVfs, createImage, openImage } from '@blk/core';
import { FaultyVfs } from '@blk/faults';
import { rawDriver } from '../src/index.js';

const registry = new DriverRegistry([rawDriver]);
const KiB = 1024;

describe('raw resize, preallocation and measure', () => {
  it('resize grows (new bytes read as zeros) and shrinks only when asked', async () => {
    const vfs = new MemoryVfs();
    await createImage('/a.img', { registry, vfs, format: 'raw', size: 1000 });
    const image = await openImage('/a.img', { registry, vfs, format: 'raw' });
    await image.write(0, new Uint8Array(1000).fill(7));
    await image.resize(3000, { preallocation: 'full' });
    // The file as long as asked, the disk whole sectors (as qemu-img resize: 3000 bytes are 3072).
    expect(vfs.file('/a.img').length).toBe(3000);
    expect(image.size).toBe(3072);
    expect((await image.read(990, 20)).slice()).toEqual(Uint8Array.from([...Array(10).fill(7), ...Array(10).fill(0)]));
    await expect(image.resize(10)).rejects.toMatchObject({ kind: 'invalid-argument', path: '/a.img' });
    await image.resize(10, { shrink: true });
    expect(image.size).toBe(512);
    await expect(image.read(0, 513)).rejects.toMatchObject({ kind: 'out-of-range' });
    await expect(image.resize(0, { shrink: true })).rejects.toMatchObject({ kind: 'invalid-argument' });
    await expect(image.resize(1000, { preallocation: 'metadata' })).rejects.toMatchObject({ kind: 'not-supported' });
    await image.close();
    const ro = await openImage('/a.img', { registry, vfs, format: 'raw', readOnly: true });
    await expect(ro.resize(100)).rejects.toMatchObject({ kind: 'read-only' });
    await ro.close();
  });

  it('a preallocation that runs out of space leaves the file at its old length', async () => {
    const memory = new MemoryVfs();
    await createImage('/b.img', { registry, vfs: memory, format: 'raw', size: 4 * KiB });
    // The third write fails: preallocation writes 1 MiB zero chunks, so the grow is cut midway.
    const vfs = new FaultyVfs(memory, [{ call: 'write', nth: 3, fault: 'ENOSPC', path: '/b.img' }]);
    const image = await openImage('/b.img', { registry, vfs, format: 'raw' });
    const err = await image.resize(8 * 1024 * KiB, { preallocation: 'full' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'io', code: 'ENOSPC' });
    expect(image.size).toBe(4 * KiB);
    await image.close();
    expect((await memory.stat('/b.img')).size).toBe(4 * KiB);
  });

  it("measure: the whole disk in whole sectors, allocated or not (as QEMU's raw_measure)", async () => {
    expect(await rawDriver.measure!({ size: 1000 })).toEqual({ required: 1024, fullyAllocated: 1024 });
    expect(await rawDriver.measure!({ size: 4096, dataBytes: async () => 0 })).toEqual({
      required: 4096,
      fullyAllocated: 4096,
    });
    await expect(rawDriver.measure!({ size: 1, driverOptions: { x: 1 } })).rejects.toMatchObject({
      kind: 'invalid-argument',
    });
  });
});
