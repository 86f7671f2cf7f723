/**
 * The parts of @blk/browser that run in Node too (Node 20 has Blob and File): BlobStorage reads,
 * BlobVfs, the backing-name rules of BrowserVfs, the Web Lock helper without navigator.locks, and
 * a cow chain opened from Blobs through browserHost.
 */
import { describe, expect, it } from 'vitest';
import { createHost, MemoryVfs } from '@blk/core';
import { cowDriver } from '@blk/cow';
import { rawDriver } from '@blk/raw';
import { acquireLock, BlobStorage, BlobVfs, BrowserVfs, browserHost, OpfsStorage, OpfsVfs } from '@blk/browser';
import { pattern } from '@blk/testkit';

describe('BlobStorage', () => {
  it('reads slices, short at the end, nothing past it; read-only; no readSync without FileReaderSync', async () => {
    const data = pattern(10_000, 1);
    const s = new BlobStorage(new Blob([data]), 'b');
    expect(s.capabilities).toMatchObject({ write: false, syncRead: false, extents: false, remote: false });
    const into = new Uint8Array(300).fill(7);
    expect(await s.read(9_800, into)).toBe(200);
    expect(into.subarray(0, 200)).toEqual(data.subarray(9_800));
    expect(into[200]).toBe(7);
    expect(await s.read(20_000, into)).toBe(0);
    expect(await s.size()).toBe(10_000);
    expect(() => s.readSync(0, into)).toThrow(/worker/);
    await expect(s.read(-1, into)).rejects.toMatchObject({ kind: 'out-of-range' });
    await s.close();
    await expect(s.read(0, into)).rejects.toMatchObject({ kind: 'closed' });
  });
});

describe('BrowserVfs backing rules', () => {
  const vfs = new BrowserVfs({ backingOrigins: ['https://disks.example'] });
  it('an OPFS image may name OPFS files, picked files and URLs of allowed origins only', () => {
    expect(vfs.resolveBacking('/opfs/a/top.cow', 'base.raw')).toBe('/opfs/a/base.raw');
    expect(vfs.resolveBacking('/opfs/a/top.cow', '/files/base.raw')).toBe('/files/base.raw');
    expect(vfs.resolveBacking('/opfs/a/top.cow', 'https://disks.example/x/base.raw')).toBe(
      'https://disks.example/x/base.raw',
    );
    expect(() => vfs.resolveBacking('/opfs/a/top.cow', 'https://evil.example/base.raw')).toThrow(/not allowed/);
    try {
      vfs.resolveBacking('/opfs/a/top.cow', 'http://127.0.0.1:1/x');
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ kind: 'backing-forbidden' });
    }
  });
  it('a picked file may name only picked files; a remote image only URLs of its origin', () => {
    expect(vfs.resolveBacking('/files/top.cow', 'base.raw')).toBe('/files/base.raw');
    expect(() => vfs.resolveBacking('/files/top.cow', '../opfs/secret.cow')).toThrow(/only name other picked files/);
    expect(() => vfs.resolveBacking('/files/top.cow', '/opfs/secret.cow')).toThrow(/only name other picked files/);
    expect(() => vfs.resolveBacking('/files/top.cow', 'https://disks.example/a')).toThrow(/cannot name a URL/);
    expect(vfs.resolveBacking('https://disks.example/d/top.cow', 'base.raw')).toBe('https://disks.example/d/base.raw');
    expect(() => vfs.resolveBacking('https://disks.example/d/top.cow', '/opfs/x')).not.toThrow(); // a path on that server
    expect(vfs.resolveBacking('https://disks.example/d/top.cow', '/opfs/x')).toBe('https://disks.example/opfs/x');
    // Another origin named by a remote image resolves; the core's backing policy (checkOrigin) refuses
    // to open it unless allowOrigins says so (packages/http/test/http-vfs.test.ts).
    expect(vfs.resolveBacking('https://disks.example/d/top.cow', 'https://other.example/x')).toBe(
      'https://other.example/x',
    );
  });
  it('paths the user types: URLs as given, others under /opfs, none of the image-name rules', () => {
    expect(vfs.resolve('/files', '/opfs/a.cow')).toBe('/opfs/a.cow');
    expect(vfs.resolve('/opfs/a', 'https://evil.example/x')).toBe('https://evil.example/x');
    expect(vfs.resolve(vfs.cwd(), 'https://anywhere.example/a.img')).toBe('https://anywhere.example/a.img');
    expect(vfs.resolve(vfs.cwd(), 'disks/a.cow')).toBe('/opfs/disks/a.cow');
    expect(vfs.resolve(vfs.cwd(), '/files/a.cow')).toBe('/files/a.cow');
  });
  it('OPFS paths outside the mount are refused, and OPFS needs a browser', async () => {
    const opfs = new OpfsVfs();
    expect(() => opfs.parts('/opfs/../etc/passwd')).toThrow(/not an OPFS path/);
    expect(opfs.parts('/opfs/a/./b/../c.cow').names).toEqual(['a', 'c.cow']);
    await expect(opfs.open('/opfs/a.cow')).rejects.toMatchObject({ kind: 'not-supported' });
    await expect(OpfsStorage.open({} as FileSystemFileHandle, '/opfs/x')).rejects.toThrow(/dedicated workers/);
  });
});

describe('BlobVfs mounts', () => {
  it('a mount of / holds every path (not only names starting with //)', async () => {
    const vfs = new BlobVfs({ mount: '/' });
    expect(vfs.put('/disk.img', new Blob([pattern(1024, 3)]))).toBe('/disk.img');
    const s = await vfs.open('/disk.img');
    expect(await s.size()).toBe(1024);
    await s.close();
    expect(await vfs.exists('/disk.img')).toBe(true);
    expect(await vfs.exists('/other.img')).toBe(false);
    expect(vfs.cwd()).toBe('/');
  });

  it('names outside a mount are ENOENT, and exists() says false for them', async () => {
    const vfs = new BlobVfs({ mount: '/files' });
    await expect(vfs.stat('/filesx/a.img')).rejects.toMatchObject({ kind: 'io', code: 'ENOENT' });
    expect(await vfs.exists('/elsewhere/a.img')).toBe(false);
    expect(await vfs.lstat('/files')).toMatchObject({ isDirectory: true });
  });
});

describe('acquireLock without Web Locks (Node)', () => {
  it('holds nothing by default, and refuses when locks are required', async () => {
    const l = await acquireLock('/opfs/x', 'exclusive');
    l.release();
    await expect(acquireLock('/opfs/x', 'exclusive', { required: true })).rejects.toMatchObject({
      kind: 'not-supported',
    });
  });
});

describe('a cow chain from Blobs through browserHost', () => {
  it('opens, reads and maps; a picked file cannot be opened for writing', async () => {
    // Make the chain in memory, then hand its bytes over as Files.
    const mem = new MemoryVfs();
    const h = createHost({ drivers: [cowDriver, rawDriver], vfs: mem });
    await h.createImage('/files/base.raw', { format: 'raw', size: 1 << 20 });
    const b = await h.openImage('/files/base.raw', { format: 'raw' });
    await b.write(0, pattern(4096, 2));
    await b.close();
    await h.createImage('/files/top.cow', { format: 'cow', backing: '/files/base.raw' });
    const t = await h.openImage('/files/top.cow');
    await t.write(8192, pattern(512, 3));
    const expected = await t.read(0, 16384);
    await t.close();
    const files = new BlobVfs();
    for (const name of ['base.raw', 'top.cow']) {
      const f = mem.file(`/files/${name}`);
      const bytes = new Uint8Array(f.length);
      f.readAt(0, bytes);
      files.put(name, new File([bytes], name, { lastModified: f.mtimeSec * 1000 }));
    }
    const host = browserHost({ files });
    const image = await host.openImage('/files/top.cow', { readOnly: true });
    expect(image.chain().map((i) => i.path)).toEqual(['/files/top.cow', '/files/base.raw']);
    expect(await image.read(0, 16384)).toEqual(expected);
    await image.close();
    await expect(host.openImage('/files/top.cow')).rejects.toMatchObject({ kind: 'read-only' });
  });
});
