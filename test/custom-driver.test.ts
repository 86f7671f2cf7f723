/**
 * The "register your own driver" case, end to end: a custom format (tiny,
 * test/fixtures/custom-driver.ts) registered through the public API, created,
 * found by probing, and proven with @blk/testkit.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, createImage, openImage } from '@blk/core';
import * as images from '@blk/images';
import { rawDriver } from '@blk/raw';
import { chainSubject, checkConcurrentWrites, checkReadAfterWrite } from '@blk/testkit';
import { TINY_HEADER_SIZE, encodeTinyHeader, tinyDriver } from './fixtures/custom-driver.js';

function registryWithTiny(): DriverRegistry {
  // A new registry, as an application would build one; raw stays the last resort.
  return new DriverRegistry([rawDriver]).register(tinyDriver);
}

describe('a custom driver (tiny)', () => {
  it('is created by createImage with its header and no data', async () => {
    const vfs = new MemoryVfs();
    await createImage('/disk.tiny', { registry: registryWithTiny(), vfs, format: 'tiny', size: 10_000 });
    expect(vfs.file('/disk.tiny').snapshot()).toEqual(encodeTinyHeader(10_000));
  });

  it('is found by probing: its score beats raw', async () => {
    const registry = registryWithTiny();
    const vfs = new MemoryVfs();
    await createImage('/disk.img', { registry, vfs, format: 'tiny', size: 10_000 });
    const storage = await vfs.open('/disk.img', { readOnly: true });
    const probed = await registry.probe(storage);
    await storage.close();
    expect(probed.driver.name).toBe('tiny');
    expect(probed.scores).toEqual([{ name: 'raw', score: 1 }, { name: 'tiny', score: 100 }]);
    const image = await openImage('/disk.img', { registry, vfs });
    expect(image.format).toBe('tiny');
    expect(image.size).toBe(10_000);
    expect(image.sectorSize).toBe(4096);
    await image.close();
  });

  it("is given to @blk/images' createHost and then probed among the built-in formats", async () => {
    const vfs = new images.MemoryVfs();
    const host = images.createHost({ drivers: [...images.builtinDrivers(), tinyDriver], vfs });
    await host.createImage('/disk.img', { format: 'tiny', size: 8192 });
    const image = await host.openImage('/disk.img');
    expect(image.format).toBe('tiny');
    const storage = await vfs.open('/disk.img', { readOnly: true });
    expect((await host.registry.probe(storage)).scores).toEqual([
      { name: 'cow', score: 0 }, { name: 'raw', score: 1 }, { name: 'tiny', score: 100 },
    ]);
    await storage.close();
    await image.close();
    // The default host (behind images.openImage) is not changed: it does not know tiny.
    expect(images.defaultHost().registry.get('tiny')).toBeUndefined();
    await expect(images.openImage('/disk.img', { vfs, format: 'tiny' })).rejects.toMatchObject({ kind: 'unknown-format' });
  });

  it('stores an unaligned write at header + offset, read-modify-writing whole 4096-byte sectors', async () => {
    const registry = registryWithTiny();
    const vfs = new MemoryVfs();
    await createImage('/disk.tiny', { registry, vfs, format: 'tiny', size: 3 * 4096 });
    const image = await openImage('/disk.tiny', { registry, vfs, format: 'tiny' });
    await image.write(4090, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    expect(await image.read(4088, 14)).toEqual(new Uint8Array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0]));
    await image.close();
    const file = vfs.file('/disk.tiny');
    // Sectors 0 and 1 were written whole; sector 2 never was.
    expect(file.length).toBe(TINY_HEADER_SIZE + 2 * 4096);
    expect(file.snapshot().subarray(TINY_HEADER_SIZE + 4090, TINY_HEADER_SIZE + 4100))
      .toEqual(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
  });

  it('gets capabilities derived from what it declares (4096-byte alignment and cluster, FUA by flush, zeroes by the core, no discard)', async () => {
    const registry = registryWithTiny();
    const vfs = new MemoryVfs();
    await createImage('/disk.tiny', { registry, vfs, format: 'tiny', size: 3 * 4096 });
    const image = await openImage('/disk.tiny', { registry, vfs, format: 'tiny' });
    expect(image.capabilities).toMatchObject({ write: true, flush: true, fua: 'emulated', writeZeroes: 'emulated', discard: 'none' });
    expect(image.capabilities.limits).toMatchObject({ requestAlignment: 4096, clusterSize: 4096, preferredTransfer: 4096 });
    await image.write(100, new Uint8Array([1, 2, 3]), { fua: true });
    await image.writeZeroes(4096, 4096, { mayUnmap: true });
    await expect(image.writeZeroes(0, 4096, { noFallback: true })).rejects.toMatchObject({ kind: 'not-supported', code: 'ENOTSUP' });
    await expect(image.discard(0, 4096)).rejects.toMatchObject({ kind: 'not-supported' });
    expect(await image.read(99, 5)).toEqual(new Uint8Array([0, 1, 2, 3, 0]));
    await image.close();
  });

  it('refuses a file with another version with kind unsupported-version', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/v2.tiny', encodeTinyHeader(4096, 2));
    await expect(openImage('/v2.tiny', { registry: registryWithTiny(), vfs }))
      .rejects.toMatchObject({ kind: 'unsupported-version', path: '/v2.tiny' });
  });

  it('passes the read-after-write proof', async () => {
    await checkReadAfterWrite(chainSubject({
      registry: registryWithTiny(),
      // Odd size: the last sector is partial; "random" fills it through the driver first.
      layers: [{ format: 'tiny', size: 5 * 4096 + 123 }],
    }), { numRuns: 200 });
  });

  it('passes the read-after-write proof starting empty (sparse, unallocated sectors)', async () => {
    await checkReadAfterWrite(chainSubject({
      registry: registryWithTiny(),
      layers: [{ format: 'tiny', size: 9 * 4096 - 1, fill: 'none' }],
    }), { numRuns: 200 });
  });

  it('passes the concurrency proof', async () => {
    await checkConcurrentWrites(chainSubject({
      registry: registryWithTiny(),
      layers: [{ format: 'tiny', size: 6 * 4096 + 5, fill: 3 }],
    }), { numRuns: 200, alignments: [4096] });
  });
});
