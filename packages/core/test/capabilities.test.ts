/** Image.capabilities (issue 12): computed once per open from what the driver declares; the core derives the rest. */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, Image, MemoryVfs, createImage, openImage, type DriverImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { overlayDriver } from './fixtures/overlay-driver.js';
import { flagDriver, type FlagDriverOptions } from './fixtures/flag-driver.js';

const registry = new DriverRegistry([overlayDriver, rawDriver]);

async function openFlags(o: FlagDriverOptions, options: { readOnly?: boolean; size?: number } = {}) {
  const vfs = new MemoryVfs();
  vfs.put('/f.img', new Uint8Array(options.size ?? 8192));
  return openImage('/f.img', {
    registry: new DriverRegistry([flagDriver(o)]),
    vfs,
    format: 'flags',
    readOnly: options.readOnly ?? false,
  });
}

describe('Image.capabilities', () => {
  it('raw over memory: writes, flushes, FUA by flush, zeroes by buffer, discard reads zeros, byte alignment, no cluster', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/d.raw', new Uint8Array(4096));
    const image = await openImage('/d.raw', { registry, vfs, format: 'raw' });
    expect(image.capabilities).toEqual({
      write: true,
      flush: true,
      fua: 'emulated',
      writeZeroes: 'emulated',
      discard: 'zero',
      blockStatus: true,
      multiConn: true,
      limits: {
        requestAlignment: 1,
        preferredTransfer: 4096,
        maxTransfer: 32 * 1024 * 1024,
        discardAlignment: 1,
        zeroAlignment: 1,
      },
    });
    expect(image.sectorSize).toBe(1);
  });

  it('is frozen, limits included, and the same object on every read', async () => {
    const image = await openFlags({});
    const caps = image.capabilities;
    expect(Object.isFrozen(caps)).toBe(true);
    expect(Object.isFrozen(caps.limits)).toBe(true);
    expect(() => {
      (caps as { write: boolean }).write = false;
    }).toThrow(TypeError);
    expect(image.capabilities).toBe(caps);
  });

  it('a read-only open has no write, zeroes, discard or FUA (nbdkit: none of them without write), but keeps flush', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/d.raw', new Uint8Array(4096));
    const image = await openImage('/d.raw', { registry, vfs, format: 'raw', readOnly: true });
    expect(image.capabilities).toMatchObject({
      write: false,
      fua: 'none',
      writeZeroes: 'none',
      discard: 'none',
      flush: true,
    });
  });

  it("an overlay with a backing file: discard falls through ('backing'), 512-byte alignment and discard unit", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/img/base.raw', new Uint8Array(4096));
    await createImage('/img/top.ovl', { registry, vfs, format: 'ovl', backing: '/img/base.raw' });
    const image = await openImage('/img/top.ovl', { registry, vfs, format: 'ovl' });
    expect(image.capabilities).toMatchObject({ discard: 'backing', writeZeroes: 'emulated', fua: 'emulated' });
    expect(image.capabilities.limits).toMatchObject({
      requestAlignment: 512,
      discardAlignment: 512,
      zeroAlignment: 512,
    });
  });

  it('takes what the driver declares: native FUA and zeroes, cluster size (preferred transfer and discard unit follow it), limits rounded to the alignment', async () => {
    const image = await openFlags({
      requestAlignment: 512,
      writeZeroes: true,
      capabilities: { fua: 'native', blockStatus: false, limits: { clusterSize: 65536, maxTransfer: 1000 * 1000 } },
    });
    expect(image.capabilities).toMatchObject({
      fua: 'native',
      writeZeroes: 'native',
      blockStatus: false,
      discard: 'none',
    });
    expect(image.capabilities.limits).toEqual({
      requestAlignment: 512,
      clusterSize: 65536,
      preferredTransfer: 65536,
      maxTransfer: 1000448,
      discardAlignment: 65536,
      zeroAlignment: 512,
    });
  });

  it('derives discard from the driver: none without discard, zero without a backing file, backing with one', async () => {
    expect((await openFlags({})).capabilities.discard).toBe('none');
    expect((await openFlags({ discard: true })).capabilities.discard).toBe('zero');
    expect((await openFlags({ discard: true, capabilities: { discard: 'any' } })).capabilities.discard).toBe('any');
  });

  it('a driver with nothing to flush: no FUA to emulate, no multi-connection guarantee', async () => {
    const image = await openFlags({ capabilities: { flush: false } });
    expect(image.capabilities).toMatchObject({ write: true, flush: false, fua: 'none', multiConn: false });
    await expect(image.write(0, new Uint8Array(1), { fua: true })).rejects.toMatchObject({
      kind: 'not-supported',
      code: 'ENOTSUP',
    });
  });

  it("refuses a declared limit that is not a positive integer with 'invalid-argument'", async () => {
    await expect(openFlags({ capabilities: { limits: { discardAlignment: 0 } } })).rejects.toMatchObject({
      kind: 'invalid-argument',
      driver: 'flags',
    });
    await expect(openFlags({ capabilities: { limits: { preferredTransfer: 1.5 } } })).rejects.toMatchObject({
      kind: 'invalid-argument',
    });
  });

  it('info() shows the request alignment and the cluster size as their own fields (sectorSize stays, as the alignment)', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/img/base.raw', new Uint8Array(4096));
    await createImage('/img/top.ovl', { registry, vfs, format: 'ovl', backing: '/img/base.raw' });
    const raw = await openImage('/img/base.raw', { registry, vfs, format: 'raw', readOnly: true });
    expect(raw.info()).toMatchObject({ requestAlignment: 1, sectorSize: 1 });
    expect(raw.info().clusterSize).toBeUndefined();
    const flags = await openFlags({ requestAlignment: 512, capabilities: { limits: { clusterSize: 4096 } } });
    expect(flags.info()).toMatchObject({ requestAlignment: 512, sectorSize: 512, clusterSize: 4096 });
  });
});

describe('formats that cannot write', () => {
  it("refuse a writable open up front with 'not-supported' (before the backing file is looked for); a read-only open works", async () => {
    // The image names a backing file that does not exist: refused for the format, not for the missing file.
    await expect(openFlags({ write: false, backing: '/nowhere.img' })).rejects.toMatchObject({
      kind: 'not-supported',
      driver: 'flags',
      path: '/f.img',
      code: 'ENOTSUP',
    });
    const ro = await openFlags({ write: false }, { readOnly: true });
    expect(ro.capabilities.write).toBe(false);
    expect(await ro.read(0, 4)).toEqual(new Uint8Array(4));
  });

  it('a driver that declares write: false is refused even with a write method', async () => {
    await expect(openFlags({ capabilities: { write: false } })).rejects.toMatchObject({ kind: 'not-supported' });
  });

  it('new Image({ readOnly: false }) over such a driver image throws too', () => {
    const driverImage = {
      driver: rawDriver,
      requestAlignment: 1,
      size: 1,
      read: async () => undefined,
      flush: async () => undefined,
    } as unknown as DriverImage;
    expect(() => new Image({ path: '/x', driverImage, readOnly: false })).toThrow(
      expect.objectContaining({ kind: 'not-supported' }),
    );
    expect(new Image({ path: '/x', driverImage, readOnly: true }).capabilities.write).toBe(false);
  });
});
