import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { DriverRegistry, MemoryVfs, NodeVfs, createImage, openImage, type Image } from '@blk/core';
import { cowDriver } from '@blk/cow';
import { rawDriver } from '@blk/raw';
import { HttpStorage, HttpVfs, withHttp } from '@blk/http';
import { TestServer, pattern, sameBytes } from './server.js';

const registry = new DriverRegistry([cowDriver, rawDriver]);
const SIZE = 4 * 1024 * 1024;
const BASE = pattern(SIZE, 3);

let server: TestServer;
let other: TestServer;
let top: Uint8Array;
let expected: Uint8Array;

/** The file bytes of a MemoryVfs file. */
async function bytesOf(vfs: MemoryVfs, path: string): Promise<Uint8Array> {
  const s = await vfs.open(path, { readOnly: true });
  const out = new Uint8Array(await s.size());
  await s.read(0, out);
  await s.close();
  return out;
}

async function readAll(image: Image): Promise<Uint8Array> {
  return image.read(0, image.size);
}

/** A copy of a cow (v3) file whose backing name (offset 32, 4096 bytes, NUL-terminated) is `name`. */
function withBackingName(cow: Uint8Array, name: string): Uint8Array {
  const out = cow.slice();
  out.fill(0, 32, 32 + 4096);
  out.set(new TextEncoder().encode(name), 32);
  return out;
}

const httpDate = (sec: number) => new Date(sec * 1000).toUTCString();

beforeAll(async () => {
  server = await new TestServer().start();
  other = await new TestServer().start('127.0.0.2').catch(() => new TestServer().start('localhost'));
  // A cow over raw chain made in memory, then served.
  const vfs = new MemoryVfs();
  const base = await vfs.open('/d/base.raw', { create: true });
  await base.write!(0, BASE);
  await base.close();
  await createImage('/d/top.cow', { registry, vfs, format: 'cow', backing: { path: '/d/base.raw', format: 'raw' } });
  const image = await openImage('/d/top.cow', { registry, vfs });
  await image.write(1024 * 1024 + 512, pattern(70_000, 5));
  await image.close();
  expected = await readAll(await openImage('/d/top.cow', { registry, vfs, readOnly: true }));
  top = withBackingName(await bytesOf(vfs, '/d/top.cow'), 'base.raw'); // relative: resolved against the URL
  const mtime = (await vfs.stat('/d/base.raw')).mtimeSec;
  server.put('/d/base.raw', BASE, '"base"', httpDate(mtime));
  server.put('/d/top.cow', top, '"top"');
  other.put('/d/base.raw', BASE, '"base"', httpDate(mtime));
});
afterAll(async () => {
  await server.stop();
  await other.stop();
});
beforeEach(() => server.reset());

describe('HttpVfs', () => {
  it('opens a cow over raw chain by URL, relative backing name resolved against it, in few requests', async () => {
    const image = await openImage(server.url('/d/top.cow'), { registry, vfs: new HttpVfs(), readOnly: true });
    expect(image.format).toBe('cow');
    expect(sameBytes(await readAll(image), expected)).toBe(true);
    await image.close();
    expect(server.log.map((l) => l.path)).toContain('/d/base.raw');
    // The stat's request is the open's: one first request per file.
    expect(server.requests()).toBeLessThan(30);
  });

  it('a remote image cannot name a local file: file: URLs are refused, absolute paths stay on its server', async () => {
    const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'blk-http-'));
    const secret = nodePath.join(dir, 'secret.raw');
    fs.writeFileSync(secret, pattern(SIZE, 11));
    try {
      const vfs = withHttp(new NodeVfs());
      server.put('/d/file.cow', withBackingName(top, `file://${secret}`));
      await expect(openImage(server.url('/d/file.cow'), { registry, vfs, readOnly: true })).rejects.toMatchObject({
        kind: 'backing-forbidden',
      });
      // An absolute path names a file on the same server, never the local one.
      server.put('/d/abs.cow', withBackingName(top, secret));
      await expect(openImage(server.url('/d/abs.cow'), { registry, vfs, readOnly: true })).rejects.toMatchObject({
        kind: 'backing-missing',
      });
      expect(server.log.map((l) => l.path)).toContain(secret);
      // A local image still opens local files through the same Vfs.
      const local = await openImage(secret, { registry, vfs, readOnly: true, format: 'raw' });
      expect(local.size).toBe(SIZE);
      await local.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a local image cannot name a URL (only the user opens URLs)', async () => {
    const local = new MemoryVfs();
    await local.open('/top.cow', { create: true }).then(async (st) => {
      await st.write!(0, withBackingName(top, server.url('/d/base.raw')));
      await st.close();
    });
    const vfs = withHttp(local);
    await expect(openImage('/top.cow', { registry, vfs, readOnly: true })).rejects.toMatchObject({
      kind: 'backing-forbidden',
    });
    expect(server.requests()).toBe(0);
    // The user may still name URLs, relative paths stay local.
    const image = await openImage(server.url('/d/top.cow'), { registry, vfs, readOnly: true });
    expect(sameBytes(await readAll(image), expected)).toBe(true);
    await image.close();
    expect(vfs.resolve(vfs.cwd(), 'x.raw')).toBe('/x.raw');
  });

  it('a remote image cannot name another host unless crossOrigin allows it', async () => {
    server.put('/d/cross.cow', withBackingName(top, other.url('/d/base.raw')));
    await expect(
      openImage(server.url('/d/cross.cow'), { registry, vfs: new HttpVfs(), readOnly: true }),
    ).rejects.toMatchObject({ kind: 'backing-forbidden' });
    expect(other.requests()).toBe(0);
    const image = await openImage(server.url('/d/cross.cow'), {
      registry,
      vfs: new HttpVfs({ crossOrigin: true }),
      readOnly: true,
    });
    expect(sameBytes(await readAll(image), expected)).toBe(true);
    await image.close();
    expect(other.requests()).toBeGreaterThan(0);
  });

  it('is read-only, and reports a missing URL as ENOENT', async () => {
    const vfs = new HttpVfs();
    await expect(vfs.open(server.url('/d/top.cow'), { create: true })).rejects.toMatchObject({ kind: 'read-only' });
    await expect(vfs.remove(server.url('/d/top.cow'))).rejects.toMatchObject({ kind: 'read-only' });
    expect(await vfs.exists(server.url('/nope'))).toBe(false);
    await expect(openImage(server.url('/nope.cow'), { registry, vfs, readOnly: true })).rejects.toMatchObject({
      code: 'ENOENT',
    });
    await expect(openImage(server.url('/d/top.cow'), { registry, vfs })).rejects.toMatchObject({ kind: 'read-only' });
    expect(vfs.dirname('http://h/a/b.cow?x=1')).toBe('http://h/a/');
    expect(vfs.resolve('http://h/a/', '../c/d.raw')).toBe('http://h/c/d.raw');
    expect(await HttpStorage.open(server.url('/d/top.cow')).then((s) => s.size())).toBe(top.length);
  });
});
