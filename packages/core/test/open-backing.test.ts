import { describe, expect, it } from 'vitest';
import {
  BlockError,
  DEFAULT_MAX_CHAIN_DEPTH,
  DriverRegistry,
  MemoryVfs,
  createImage,
  openImage,
  type BackingReference,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { makeOverlayFile, overlayDriver } from './fixtures/overlay-driver.js';
import { ascii, bytes } from './fixtures/helpers.js';

const registry = new DriverRegistry([overlayDriver, rawDriver]);
/** Every test opens overlays by name: probing is the probe-guard tests' business. */
const open = (
  path: string,
  vfs: MemoryVfs,
  extra: Parameters<typeof openImage>[1] extends infer O ? Partial<O> : never = {},
) => openImage(path, { registry, vfs, format: 'ovl', ...extra });

/** An overlay file naming `backingPath` exactly as given (no size/mtime check unless `expect`). */
function putOverlay(
  vfs: MemoryVfs,
  path: string,
  backingPath: string,
  size = 4096,
  expect?: { size: number; mtimeSec: number },
) {
  vfs.put(path, makeOverlayFile({ size, backingPath, ...(expect ? { expect } : {}) }));
}

async function catchError(promise: Promise<unknown>): Promise<BlockError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BlockError);
  return err as BlockError;
}

describe('openImage: broken chains', () => {
  it("refuses a missing backing file with 'backing-missing', naming the overlay and the backing path", async () => {
    const vfs = new MemoryVfs();
    putOverlay(vfs, '/vm/top.ovl', '/vm/gone.raw');
    const err = await catchError(open('/vm/top.ovl', vfs));
    expect(err.kind).toBe('backing-missing');
    expect(err.path).toBe('/vm/top.ovl');
    expect(err.message).toContain('/vm/gone.raw');
  });

  it("refuses a dangling symlink as the backing file with 'backing-missing'", async () => {
    const vfs = new MemoryVfs();
    vfs.symlink('/vm/nowhere.raw', '/vm/link.raw');
    putOverlay(vfs, '/vm/top.ovl', '/vm/link.raw');
    expect((await catchError(open('/vm/top.ovl', vfs))).kind).toBe('backing-missing');
  });

  it("refuses a loop A -> B -> A with 'backing-loop'", async () => {
    const vfs = new MemoryVfs();
    putOverlay(vfs, '/vm/a.ovl', '/vm/b.ovl');
    putOverlay(vfs, '/vm/b.ovl', '/vm/a.ovl');
    const err = await catchError(open('/vm/a.ovl', vfs, { backing: { format: 'ovl' } }));
    expect(err.kind).toBe('backing-loop');
    expect(err.message).toContain('/vm/a.ovl');
  });

  it("refuses an image that is its own backing file, even through a symlink, with 'backing-loop'", async () => {
    const vfs = new MemoryVfs();
    putOverlay(vfs, '/vm/self.ovl', 'alias.ovl');
    vfs.symlink('/vm/self.ovl', '/vm/alias.ovl');
    expect((await catchError(open('/vm/self.ovl', vfs, { backing: { format: 'ovl' } }))).kind).toBe('backing-loop');
  });

  it("refuses a chain deeper than maxDepth with 'chain-too-deep' and accepts one exactly that deep", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/d/l0.raw', new Uint8Array(4096));
    for (let i = 1; i <= 4; i++) putOverlay(vfs, `/d/l${i}.ovl`, i === 1 ? '/d/l0.raw' : `/d/l${i - 1}.ovl`);
    const ovlAbove = { format: (_ref: BackingReference, depth: number) => (depth === 4 ? 'raw' : 'ovl') };
    const ok = await open('/d/l4.ovl', vfs, { backing: { ...ovlAbove, maxDepth: 4 } });
    expect(ok.chain()).toHaveLength(5);
    await ok.close();
    const err = await catchError(open('/d/l4.ovl', vfs, { backing: { ...ovlAbove, maxDepth: 3 } }));
    expect(err.kind).toBe('chain-too-deep');
    // Named at the level where the limit was hit: the overlay whose backing file would be one too many.
    expect(err.path).toBe('/d/l1.ovl');
    expect(err.message).toContain('limit of 3 levels');
  });

  it(`limits chains to ${DEFAULT_MAX_CHAIN_DEPTH} backing levels by default`, async () => {
    const vfs = new MemoryVfs();
    const top = DEFAULT_MAX_CHAIN_DEPTH + 1;
    vfs.put('/d/l0.raw', new Uint8Array(4096));
    for (let i = 1; i <= top; i++) putOverlay(vfs, `/d/l${i}.ovl`, i === 1 ? '/d/l0.raw' : `/d/l${i - 1}.ovl`);
    const formatAt = (from: number) => ({
      format: (_ref: BackingReference, depth: number) => (depth === from ? 'raw' : 'ovl'),
    });
    const deepest = await open(`/d/l${top - 1}.ovl`, vfs, { backing: formatAt(top - 1) });
    expect(deepest.chain()).toHaveLength(DEFAULT_MAX_CHAIN_DEPTH + 1);
    await deepest.close();
    expect((await catchError(open(`/d/l${top}.ovl`, vfs, { backing: formatAt(top) }))).kind).toBe('chain-too-deep');
  });
});

describe('openImage: where backing paths lead', () => {
  it("resolves a relative backing path against the overlay's directory, not the working directory", async () => {
    const vfs = new MemoryVfs('/home/user');
    vfs.put('/images/base.raw', bytes(4096, 1));
    vfs.put('/home/user/base.raw', bytes(4096, 2));
    putOverlay(vfs, '/images/top.ovl', 'base.raw');
    const image = await open('../../images/top.ovl', vfs);
    expect(image.backing?.path).toBe('/images/base.raw');
    expect(await image.read(0, 4096)).toEqual(bytes(4096, 1));
    expect(image.info().backing).toMatchObject({ stored: 'base.raw', resolved: '/images/base.raw' });
  });

  it("resolves each level's relative path against that level's own directory", async () => {
    const vfs = new MemoryVfs('/');
    vfs.put('/a/b/base.raw', bytes(4096, 5));
    putOverlay(vfs, '/a/b/mid.ovl', 'base.raw');
    putOverlay(vfs, '/a/top.ovl', 'b/mid.ovl');
    const image = await open('/a/top.ovl', vfs, { backing: { format: (_r, depth) => (depth === 1 ? 'ovl' : 'raw') } });
    expect(image.chain().map((i) => i.path)).toEqual(['/a/top.ovl', '/a/b/mid.ovl', '/a/b/base.raw']);
    expect(await image.read(0, 4096)).toEqual(bytes(4096, 5));
  });

  it('opens backing files read-only and as raw unless the policy says otherwise', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/v/base.raw', bytes(4096, 3));
    putOverlay(vfs, '/v/mid.ovl', '/v/base.raw');
    const image = await open('/v/mid.ovl', vfs);
    expect(image.backing?.format).toBe('raw');
    expect(image.backing?.readOnly).toBe(true);
    expect(await image.read(0, 4096)).toEqual(bytes(4096, 3));
  });

  it("refuses a backing file that carries another format's header unless its format is named ('backing-format')", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/v/base.raw', bytes(4096));
    putOverlay(vfs, '/v/mid.ovl', '/v/base.raw');
    putOverlay(vfs, '/v/top.ovl', '/v/mid.ovl', 4096);
    // mid.ovl is an overlay, but the top image does not say so: neither read it as raw nor guess.
    await expect(open('/v/top.ovl', vfs)).rejects.toMatchObject({ kind: 'backing-format', path: '/v/mid.ovl' });
    // Naming raw reads the overlay's file as raw data, header and all.
    const image = await open('/v/top.ovl', vfs, { backing: { format: 'raw' } });
    expect(image.backing?.format).toBe('raw');
    expect(image.chain()).toHaveLength(2);
    expect((await image.read(0, 4)).slice()).toEqual(ascii('OVL1'));
  });

  it("opens backing files as their probed format with backing.format 'probe'", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/v/base.raw', bytes(4096));
    putOverlay(vfs, '/v/mid.ovl', '/v/base.raw');
    putOverlay(vfs, '/v/top.ovl', '/v/mid.ovl');
    const image = await open('/v/top.ovl', vfs, { backing: { format: 'probe' } });
    expect(image.chain().map((i) => i.format)).toEqual(['ovl', 'ovl', 'raw']);
    expect(await image.read(0, 4096)).toEqual(bytes(4096));
  });

  it('asks a backing.format function once per level with the stored reference and the depth', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/v/base.raw', bytes(4096));
    putOverlay(vfs, '/v/mid.ovl', 'base.raw');
    putOverlay(vfs, '/v/top.ovl', 'mid.ovl');
    const calls: Array<[string, number]> = [];
    const image = await open('/v/top.ovl', vfs, {
      backing: {
        format: (ref, depth) => {
          calls.push([ref.path, depth]);
          return depth === 1 ? 'ovl' : 'raw';
        },
      },
    });
    expect(calls).toEqual([
      ['mid.ovl', 1],
      ['base.raw', 2],
    ]);
    expect(image.chain().map((i) => i.format)).toEqual(['ovl', 'ovl', 'raw']);
  });

  it('uses overridePath instead of the stored path for the top image only', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/v/other.raw', bytes(4096, 9));
    putOverlay(vfs, '/v/top.ovl', '/v/missing.raw');
    const image = await open('/v/top.ovl', vfs, { backing: { overridePath: '/v/other.raw' } });
    expect(await image.read(0, 4096)).toEqual(bytes(4096, 9));
  });
});

describe('openImage: backing policy', () => {
  it("refuses an image that names a backing file under mode 'forbid' with 'backing-forbidden'", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/v/base.raw', bytes(4096));
    putOverlay(vfs, '/v/top.ovl', '/v/base.raw');
    const err = await catchError(open('/v/top.ovl', vfs, { backing: { mode: 'forbid' } }));
    expect(err.kind).toBe('backing-forbidden');
    expect(err.message).toContain('/v/base.raw');
  });

  it("opens an image without a backing file under mode 'forbid'", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/v/plain.ovl', makeOverlayFile({ size: 4096 }));
    const image = await open('/v/plain.ovl', vfs, { backing: { mode: 'forbid' } });
    expect(image.backing).toBeUndefined();
  });

  it("does not even look for the backing file under mode 'ignore'", async () => {
    const vfs = new MemoryVfs();
    putOverlay(vfs, '/v/top.ovl', '/v/does-not-exist.raw');
    const image = await open('/v/top.ovl', vfs, { backing: { mode: 'ignore' } });
    expect(image.backing).toBeUndefined();
    expect(image.info().backing?.opened).toBe(false);
  });

  it('accepts a backing file inside allowedDirs', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/safe/base.raw', bytes(4096));
    putOverlay(vfs, '/vm/top.ovl', '/safe/base.raw');
    const image = await open('/vm/top.ovl', vfs, { backing: { allowedDirs: ['/safe'] } });
    expect(await image.read(0, 4096)).toEqual(bytes(4096));
  });

  it("refuses a backing file outside allowedDirs with 'backing-forbidden', also when reached through '..'", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/etc/shadow', bytes(4096));
    putOverlay(vfs, '/safe/a.ovl', '/etc/shadow');
    putOverlay(vfs, '/safe/b.ovl', '../etc/shadow');
    for (const top of ['/safe/a.ovl', '/safe/b.ovl']) {
      const err = await catchError(open(top, vfs, { backing: { allowedDirs: ['/safe'] } }));
      expect(err.kind).toBe('backing-forbidden');
      expect(err.path).toBe(top);
    }
  });

  it("refuses a symlink inside allowedDirs that leads out of them with 'backing-forbidden'", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/etc/shadow', bytes(4096));
    vfs.symlink('/etc/shadow', '/safe/innocent.raw');
    putOverlay(vfs, '/safe/top.ovl', 'innocent.raw');
    const err = await catchError(open('/safe/top.ovl', vfs, { backing: { allowedDirs: ['/safe'] } }));
    expect(err.kind).toBe('backing-forbidden');
    expect(err.message).toContain('symlink');
  });

  it('refuses a symlinked directory component that leads out of allowedDirs', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/outside/base.raw', bytes(4096));
    vfs.symlink('/outside', '/safe/dir');
    putOverlay(vfs, '/safe/top.ovl', '/safe/dir/base.raw');
    expect((await catchError(open('/safe/top.ovl', vfs, { backing: { allowedDirs: ['/safe'] } }))).kind).toBe(
      'backing-forbidden',
    );
  });

  it('accepts a symlink that stays inside allowedDirs, and an allowed directory given through a symlink', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/real/base.raw', bytes(4096));
    vfs.symlink('/real', '/allowed');
    vfs.symlink('base.raw', '/real/link.raw');
    putOverlay(vfs, '/vm/top.ovl', '/allowed/link.raw');
    const image = await open('/vm/top.ovl', vfs, { backing: { allowedDirs: ['/allowed'] } });
    expect(await image.read(0, 4096)).toEqual(bytes(4096));
  });

  it('applies allowedDirs at every level of the chain', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/outside/base.raw', bytes(4096));
    putOverlay(vfs, '/safe/mid.ovl', '/outside/base.raw');
    putOverlay(vfs, '/safe/top.ovl', '/safe/mid.ovl');
    const err = await catchError(
      open('/safe/top.ovl', vfs, { backing: { allowedDirs: ['/safe'], format: (_r, d) => (d === 1 ? 'ovl' : 'raw') } }),
    );
    expect(err.kind).toBe('backing-forbidden');
    expect(err.path).toBe('/safe/mid.ovl');
  });
});

describe('openImage: backing file changed since the overlay was made', () => {
  async function overlayThenTouchBase(change: 'mtime' | 'size') {
    const vfs = new MemoryVfs();
    vfs.put('/v/base.raw', bytes(4096));
    await createImage('/v/top.ovl', { registry, vfs, format: 'ovl', backing: '/v/base.raw' });
    const base = vfs.file('/v/base.raw');
    if (change === 'mtime') base.writeAt(0, new Uint8Array([1]));
    else base.truncate(8192);
    return vfs;
  }

  it("refuses an mtime mismatch with 'backing-mismatch' by default", async () => {
    const vfs = await overlayThenTouchBase('mtime');
    const err = await catchError(open('/v/top.ovl', vfs));
    expect(err.kind).toBe('backing-mismatch');
    expect(err.path).toBe('/v/top.ovl');
    expect(err.message).toContain('mtime');
  });

  it("refuses a size mismatch with 'backing-mismatch' by default", async () => {
    const vfs = await overlayThenTouchBase('size');
    const err = await catchError(open('/v/top.ovl', vfs));
    expect(err.kind).toBe('backing-mismatch');
    expect(err.message).toContain('size 8192');
  });

  it("opens anyway with onMismatch 'accept' and leaves the overlay untouched", async () => {
    const vfs = await overlayThenTouchBase('size');
    const before = vfs.file('/v/top.ovl').snapshot();
    const image = await open('/v/top.ovl', vfs, { backing: { onMismatch: 'accept' } });
    await image.close();
    expect(vfs.file('/v/top.ovl').snapshot()).toEqual(before);
    await expect(open('/v/top.ovl', vfs)).rejects.toMatchObject({ kind: 'backing-mismatch' });
  });

  it("rewrites the recorded size and mtime with onMismatch 'update', so that the next default open succeeds", async () => {
    const vfs = await overlayThenTouchBase('mtime');
    const image = await open('/v/top.ovl', vfs, { backing: { onMismatch: 'update' } });
    await image.close();
    const again = await open('/v/top.ovl', vfs);
    expect(again.backingReference?.expect).toEqual({ size: 4096, mtimeSec: vfs.file('/v/base.raw').mtimeSec });
    await again.close();
  });

  it("cannot update a read-only overlay: 'backing-mismatch'", async () => {
    const vfs = await overlayThenTouchBase('mtime');
    await expect(open('/v/top.ovl', vfs, { readOnly: true, backing: { onMismatch: 'update' } })).rejects.toMatchObject({
      kind: 'backing-mismatch',
    });
  });
});
