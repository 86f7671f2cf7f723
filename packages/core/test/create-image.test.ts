import { describe, expect, it } from 'vitest';
import { BlockError, DriverRegistry, MemoryVfs, createImage, openImage, type BlockDriver } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { overlayDriver } from './fixtures/overlay-driver.js';
import { bytes } from './fixtures/helpers.js';

const registry = new DriverRegistry([overlayDriver, rawDriver]);

/** A driver whose create writes some bytes, then fails. */
const failingDriver: BlockDriver = {
  name: 'failing',
  probeBytes: 0,
  probe: () => 0,
  open: () => Promise.reject(new Error('not used')),
  async create(storage) {
    await storage.write(0, new Uint8Array(100).fill(1));
    throw new BlockError('io', 'disk full', { code: 'ENOSPC' });
  },
};

describe('createImage', () => {
  it("refuses to overwrite an existing file with 'exists' and leaves it as it was", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/disk.img', bytes(100));
    const err = await createImage('/disk.img', { registry, vfs, format: 'raw', size: 4096 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'exists', path: '/disk.img' });
    expect(vfs.file('/disk.img').snapshot()).toEqual(bytes(100));
  });

  it('replaces an existing file when overwrite is set', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/disk.img', bytes(100));
    await createImage('/disk.img', { registry, vfs, format: 'raw', size: 4096, overwrite: true });
    expect(vfs.file('/disk.img').snapshot()).toEqual(new Uint8Array(4096));
  });

  it("leaves no file behind when the driver's create fails, and names the file in the error", async () => {
    const vfs = new MemoryVfs();
    const err = await createImage('/new.img', {
      registry: new DriverRegistry([failingDriver]),
      vfs,
      format: 'failing',
      size: 4096,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'io', path: '/new.img', code: 'ENOSPC' });
    expect(await vfs.exists('/new.img')).toBe(false);
  });

  it('does not delete a file that another writer created between its existence check and its exclusive open', async () => {
    // The race, made deterministic: exists() says "no", then the file is there at open().
    class RacingVfs extends MemoryVfs {
      override async exists(path: string): Promise<boolean> {
        if (path === '/race.img') {
          this.put('/race.img', bytes(64));
          return false;
        }
        return super.exists(path);
      }
    }
    const vfs = new RacingVfs();
    await expect(createImage('/race.img', { registry, vfs, format: 'raw', size: 4096 })).rejects.toMatchObject({
      kind: 'exists',
    });
    expect(vfs.file('/race.img').snapshot()).toEqual(bytes(64));
  });

  it('with overwrite, leaves the existing file in place when opening it fails', async () => {
    class DeniedVfs extends MemoryVfs {
      override async open(path: string, options?: Parameters<MemoryVfs['open']>[1]) {
        if (options?.create) throw new BlockError('io', 'permission denied', { path, code: 'EACCES' });
        return super.open(path, options);
      }
    }
    const vfs = new DeniedVfs();
    vfs.put('/keep.img', bytes(64));
    await expect(
      createImage('/keep.img', { registry, vfs, format: 'raw', size: 4096, overwrite: true }),
    ).rejects.toMatchObject({ kind: 'io', code: 'EACCES' });
    expect(vfs.file('/keep.img').snapshot()).toEqual(bytes(64));
  });

  it("refuses a missing backing file with 'backing-missing' and creates nothing", async () => {
    const vfs = new MemoryVfs();
    await expect(createImage('/top.ovl', { registry, vfs, format: 'ovl', backing: '/nope.raw' })).rejects.toMatchObject(
      { kind: 'backing-missing', path: '/top.ovl' },
    );
    expect(await vfs.exists('/top.ovl')).toBe(false);
  });

  it("refuses a backing file for raw with 'not-supported' and leaves no file", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/base.raw', bytes(4096));
    await expect(createImage('/top.raw', { registry, vfs, format: 'raw', backing: '/base.raw' })).rejects.toMatchObject(
      { kind: 'not-supported', path: '/top.raw' },
    );
    expect(await vfs.exists('/top.raw')).toBe(false);
  });

  it('records the backing file as an absolute path, with its size and mtime, and takes its size by default', async () => {
    const vfs = new MemoryVfs('/work');
    vfs.put('/work/base.raw', bytes(5000));
    await createImage('sub/top.ovl', { registry, vfs, format: 'ovl', backing: 'base.raw' });
    const image = await openImage('/work/sub/top.ovl', { registry, vfs, format: 'ovl' });
    // A 5000-byte raw file is a disk of whole sectors (5120 bytes, as in QEMU); the overlay
    // records the file's length, which is what UML compares.
    expect(image.size).toBe(5120);
    expect(image.backingReference).toEqual({
      path: '/work/base.raw',
      expect: { size: 5000, mtimeSec: vfs.file('/work/base.raw').mtimeSec },
    });
    const expected = new Uint8Array(5120);
    expected.set(bytes(5000));
    expect(await image.read(0, 5120)).toEqual(expected);
  });

  it('creates an overlay over an overlay whose own backing file is an overlay (the backing chain is not opened)', async () => {
    // Only the backing file's size is needed; opening its chain with the default
    // policy would read l1.ovl as raw and refuse it as 'backing-mismatch'.
    const vfs = new MemoryVfs();
    vfs.put('/c/base.raw', bytes(8192));
    await createImage('/c/l1.ovl', { registry, vfs, format: 'ovl', backing: '/c/base.raw' });
    await createImage('/c/l2.ovl', { registry, vfs, format: 'ovl', backing: { path: '/c/l1.ovl', format: 'ovl' } });
    await createImage('/c/l3.ovl', { registry, vfs, format: 'ovl', backing: { path: '/c/l2.ovl', format: 'ovl' } });
    const image = await openImage('/c/l3.ovl', { registry, vfs, format: 'ovl', backing: { format: 'probe' } });
    expect(image.chain().map((i) => i.format)).toEqual(['ovl', 'ovl', 'ovl', 'raw']);
    expect(image.size).toBe(8192);
    expect(await image.read(0, 8192)).toEqual(bytes(8192));
  });

  it("needs a size when there is no backing file: 'invalid-argument', nothing created", async () => {
    const vfs = new MemoryVfs();
    await expect(createImage('/x.raw', { registry, vfs, format: 'raw' })).rejects.toMatchObject({
      kind: 'invalid-argument',
    });
    await expect(createImage('/x.raw', { registry, vfs, format: 'raw', size: -1 })).rejects.toMatchObject({
      kind: 'out-of-range',
    });
    expect(await vfs.exists('/x.raw')).toBe(false);
  });

  it("refuses an unknown format with 'unknown-format' and a format that cannot create with 'not-supported'", async () => {
    const vfs = new MemoryVfs();
    await expect(createImage('/x', { registry, vfs, format: 'qcow9', size: 1 })).rejects.toMatchObject({
      kind: 'unknown-format',
    });
    const noCreate: BlockDriver = {
      name: 'ro',
      probeBytes: 0,
      probe: () => 0,
      open: () => Promise.reject(new Error('x')),
    };
    await expect(
      createImage('/x', { registry: new DriverRegistry([noCreate]), vfs, format: 'ro', size: 1 }),
    ).rejects.toMatchObject({ kind: 'not-supported' });
    expect(await vfs.exists('/x')).toBe(false);
  });
});
