/**
 * createHost: a host's formats are its own (a frozen copy of what it was
 * given), so two hosts never see each other's drivers and nobody changes a
 * host's formats behind its back, the default host of @blk/images included.
 */
import { describe, expect, it } from 'vitest';
import { BlockError, DriverRegistry, MemoryVfs, createHost, type BlockDriver } from '@blk/core/portable';
import * as images from '@blk/images';
import { rawDriver } from '@blk/raw';
import { makeOverlayFile, overlayDriver } from './fixtures/overlay-driver.js';

/** A format that claims files starting with `magic` (score 100), read as raw past 8 bytes. */
function magicDriver(name: string, magic: string): BlockDriver {
  const bytes = new TextEncoder().encode(magic.padEnd(8, '\0'));
  const driver: BlockDriver = {
    name,
    probeBytes: 8,
    probe: (head) => (head.length >= 8 && bytes.every((b, i) => head[i] === b) ? 100 : 0),
    // raw's image, reporting this driver (its format name).
    open: async (storage, options) =>
      Object.create(await rawDriver.open(storage, options), { driver: { value: driver } }),
  };
  return driver;
}

function vfsWith(files: Record<string, string>): MemoryVfs {
  const vfs = new MemoryVfs();
  for (const [path, text] of Object.entries(files)) vfs.put(path, new TextEncoder().encode(text.padEnd(4096, '\0')));
  return vfs;
}

describe('createHost', () => {
  it("two hosts with different drivers do not see each other's drivers", async () => {
    const vfs = vfsWith({ '/a.img': 'AAAA', '/b.img': 'BBBB' });
    const a = createHost({ drivers: [magicDriver('fmt-a', 'AAAA'), rawDriver], vfs });
    const b = createHost({ drivers: [magicDriver('fmt-b', 'BBBB'), rawDriver], vfs });
    expect(a.registry.names()).toEqual(['fmt-a', 'raw']);
    expect(b.registry.names()).toEqual(['fmt-b', 'raw']);
    expect((await a.probe('/a.img')).driver.name).toBe('fmt-a');
    expect((await a.probe('/b.img')).driver.name).toBe('raw'); // a does not know fmt-b
    expect((await b.probe('/b.img')).driver.name).toBe('fmt-b');
    const image = await b.openImage('/b.img', { readOnly: true });
    expect(image.format).toBe('fmt-b');
    await image.close();
    await expect(a.openImage('/b.img', { format: 'fmt-b', readOnly: true })).rejects.toMatchObject({
      kind: 'unknown-format',
    });
  });

  it('holds a frozen copy: registering into what it was given, or into its registry, changes nothing', async () => {
    const vfs = vfsWith({ '/x.img': 'XXXX' });
    const given = new DriverRegistry([rawDriver]);
    const list: BlockDriver[] = [rawDriver];
    const fromRegistry = createHost({ drivers: given, vfs });
    const fromList = createHost({ drivers: list, vfs });
    given.register(magicDriver('fmt-x', 'XXXX'));
    list.push(magicDriver('fmt-x', 'XXXX'));
    for (const host of [fromRegistry, fromList]) {
      expect(host.registry.names()).toEqual(['raw']);
      expect((await host.probe('/x.img')).driver.name).toBe('raw');
      expect(host.registry.frozen).toBe(true);
      const err = (() => {
        try {
          host.registry.register(magicDriver('fmt-x', 'XXXX'));
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(BlockError);
      expect((err as BlockError).kind).toBe('invalid-argument');
      expect(() => host.registry.unregister('raw')).toThrow(/frozen/);
      expect(() => (host.drivers as BlockDriver[]).push(rawDriver)).toThrow(TypeError);
      expect(host.registry.names()).toEqual(['raw']);
    }
  });

  it('opens and creates on its vfs with its defaults; a call may name another vfs', async () => {
    const vfs = new MemoryVfs();
    const host = createHost({ drivers: [overlayDriver, rawDriver], vfs, backing: { mode: 'ignore' } });
    await host.createImage('/base.raw', { format: 'raw', size: 8192 });
    vfs.put('/top.ovl', makeOverlayFile({ size: 8192, backingPath: '/missing.raw' }));
    // The host's backing policy (ignore) applies: the missing backing file is not opened.
    const top = await host.openImage('/top.ovl', { readOnly: true });
    expect(top.format).toBe('ovl');
    expect(top.backing).toBeUndefined();
    await top.close();
    // A policy given to the call replaces the host's.
    await expect(host.openImage('/top.ovl', { readOnly: true, backing: { mode: 'open' } })).rejects.toMatchObject({
      kind: 'backing-missing',
    });
    const other = new MemoryVfs();
    await host.createImage('/elsewhere.raw', { format: 'raw', size: 4096, vfs: other });
    expect(await other.exists('/elsewhere.raw')).toBe(true);
    expect(await vfs.exists('/elsewhere.raw')).toBe(false);
  });

  it('probe and inspect name a foreign format; probe throws for it, inspect does not', async () => {
    const vfs = new MemoryVfs();
    const qcow2 = new Uint8Array(4096);
    qcow2.set([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
    vfs.put('/q.img', qcow2);
    const host = createHost({ drivers: [rawDriver], vfs });
    expect((await host.inspect('/q.img'))?.foreign?.format).toBe('qcow2');
    await expect(host.probe('/q.img')).rejects.toMatchObject({ kind: 'unsupported-format', path: '/q.img' });
    await expect(host.probe('/none.img')).rejects.toBeInstanceOf(BlockError);
  });

  it('refuses options without drivers or a vfs', () => {
    expect(() => createHost({ drivers: [rawDriver] } as never)).toThrow(
      expect.objectContaining({ kind: 'invalid-argument', field: 'vfs' }),
    );
    expect(() => createHost({ vfs: new MemoryVfs() } as never)).toThrow(
      expect.objectContaining({ kind: 'invalid-argument', field: 'drivers' }),
    );
  });
});

describe('@blk/images: no shared mutable registry', () => {
  it('exports no registry to register into; its default host is frozen and holds the built-in formats', () => {
    expect((images as Record<string, unknown>).registry).toBeUndefined();
    const host = images.defaultHost();
    expect(host.registry.names()).toEqual(['cow', 'qcow2', 'raw']);
    expect(() => host.registry.register(magicDriver('mine', 'MINE'))).toThrow(
      expect.objectContaining({ kind: 'invalid-argument' }),
    );
    expect(images.defaultHost()).toBe(host);
  });

  it('a host with a driver of its own does not change the default host (behind openImage)', async () => {
    const vfs = vfsWith({ '/m.img': 'MINE' });
    const mine = images.createHost({ drivers: [...images.builtinDrivers(), magicDriver('mine', 'MINE')], vfs });
    const own = await mine.openImage('/m.img', { readOnly: true });
    expect(own.format).toBe('mine');
    await own.close();
    expect(images.defaultHost().registry.names()).toEqual(['cow', 'qcow2', 'raw']);
    const image = await images.openImage('/m.img', { vfs, readOnly: true });
    expect(image.format).toBe('raw');
    await image.close();
    // builtinDrivers() hands out a new array: changing it changes no host.
    const drivers = images.builtinDrivers();
    drivers.pop();
    expect(images.builtinDrivers().map((d) => d.name)).toEqual(['cow', 'qcow2', 'raw']);
  });
});

describe('the portable openImage has no default file system', () => {
  it('openImage and createImage of @blk/core/portable without a vfs: invalid-argument naming vfs', async () => {
    const portable = await import('@blk/core/portable');
    const registry = new DriverRegistry([rawDriver]);
    await expect(portable.openImage('/x.img', { registry } as never)).rejects.toMatchObject({
      kind: 'invalid-argument',
      field: 'vfs',
    });
    await expect(portable.createImage('/x.img', { registry, format: 'raw', size: 512 } as never)).rejects.toMatchObject(
      { kind: 'invalid-argument', field: 'vfs' },
    );
  });
});
