import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { BlockError, DriverRegistry, MemoryVfs, NodeVfs, createImage, openImage, type Image } from '@blk/core';
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
let baseMtime = 0;

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
  baseMtime = mtime;
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

  describe('a remote image names only files below its own URL directory unless backing.allowOrigins says more', () => {
    let dir = '';
    let secret = '';
    beforeAll(() => {
      dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'blk-http-'));
      secret = nodePath.join(dir, 'secret.raw');
      fs.writeFileSync(secret, BASE);
      fs.utimesSync(secret, baseMtime, baseMtime); // the facts the cow recorded: only the origin rule may refuse
      server.put('/base-at-root.raw', BASE, '"root"', httpDate(baseMtime));
      server.put('/d/etc.cow', withBackingName(top, '/etc/passwd'));
      server.put('/d/root.cow', withBackingName(top, '/base-at-root.raw'));
      server.put('/d/file.cow', withBackingName(top, `file://${secret}`));
      server.put('/d/e/f/up.cow', withBackingName(top, '../../base.raw'));
      server.put('/d/cross.cow', withBackingName(top, other.url('/d/base.raw')));
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
    const vfs = () => withHttp(new NodeVfs());
    const open = (path: string, allowOrigins?: readonly string[] | ((a: string, b: string) => boolean)) =>
      openImage(server.url(path), {
        registry,
        vfs: vfs(),
        readOnly: true,
        ...(allowOrigins !== undefined ? { backing: { allowOrigins } } : {}),
      });

    it('refused by default, with a clear error and no request for the backing file', async () => {
      const cases: Array<[string, RegExp]> = [
        [
          '/d/etc.cow',
          /backing file http:\/\/[^ ]+\/etc\/passwd lies outside the directory http:\/\/[^ ]+\/d\/ of the remote image/,
        ],
        ['/d/root.cow', /lies outside the directory/],
        [
          '/d/file.cow',
          /a remote image \(http:\/\/127\.0\.0\.1:\d+\) cannot name a local file .*allowOrigins: \['local'\]/,
        ],
        [
          '/d/e/f/up.cow',
          /backing file http:\/\/[^ ]+\/d\/base\.raw lies outside the directory http:\/\/[^ ]+\/d\/e\/f\//,
        ],
        [
          '/d/cross.cow',
          /is on another origin than the image .*allowOrigins: \['http:\/\/(127\.0\.0\.2|localhost):\d+'\]/,
        ],
      ];
      for (const [path, message] of cases) {
        server.reset();
        const err = await open(path).then(
          async (image) => {
            await image.close();
            return new Error('opened');
          },
          (e: unknown) => e,
        );
        expect(err instanceof BlockError ? err.kind : String(err), path).toBe('backing-forbidden');
        expect(err, path).toMatchObject({ kind: 'backing-forbidden', path: server.url(path) });
        expect((err as Error).message, path).toMatch(message);
        expect(new Set(server.log.map((l) => l.path)), path).toEqual(new Set([path])); // the image only
      }
      expect(other.requests()).toBe(0);
    });

    it("allowed with the explicit policy: the server's absolute paths, .., a local file, another host", async () => {
      // An absolute name is the server's path, never the local file of that name.
      server.reset();
      await expect(open('/d/etc.cow', [server.origin])).rejects.toMatchObject({ kind: 'backing-missing' });
      expect(server.log.map((l) => l.path)).toContain('/etc/passwd');
      for (const [path, allow] of [
        ['/d/root.cow', [server.origin]],
        ['/d/e/f/up.cow', ['*']],
        ['/d/file.cow', ['local']],
        ['/d/cross.cow', [other.origin]],
        ['/d/cross.cow', (from: string, to: string) => from === server.origin && to === other.origin],
      ] as const) {
        const image = await open(path, allow);
        expect(sameBytes(await readAll(image), expected), path).toBe(true);
        await image.close();
      }
      expect(other.requests()).toBeGreaterThan(0);
      // Listing another origin does not lift the directory rule on the image's own.
      await expect(open('/d/e/f/up.cow', [other.origin])).rejects.toMatchObject({ kind: 'backing-forbidden' });
    });

    it('a local image still opens local files through the same Vfs', async () => {
      const local = await openImage(secret, { registry, vfs: vfs(), readOnly: true, format: 'raw' });
      expect(local.size).toBe(SIZE);
      await local.close();
    });
  });

  it('a local image names a URL only when backing.allowOrigins allows it', async () => {
    const local = new MemoryVfs();
    await local.open('/top.cow', { create: true }).then(async (st) => {
      await st.write!(0, withBackingName(top, server.url('/d/base.raw')));
      await st.close();
    });
    const vfs = withHttp(local);
    // (Not `rejects.toMatchObject`: an Image that opened would be pretty-printed whole.)
    const refused = await openImage('/top.cow', { registry, vfs, readOnly: true }).then(
      async (image) => {
        await image.close();
        return 'opened';
      },
      (e: unknown) => (e instanceof BlockError ? e.kind : String(e)),
    );
    expect(refused).toBe('backing-forbidden');
    expect(server.requests()).toBe(0);
    const allowed = await openImage('/top.cow', {
      registry,
      vfs,
      readOnly: true,
      backing: { allowOrigins: (from) => from === 'local' },
    });
    expect(sameBytes(await readAll(allowed), expected)).toBe(true);
    await allowed.close();
    // The user may still name URLs, relative paths stay local.
    const image = await openImage(server.url('/d/top.cow'), { registry, vfs, readOnly: true });
    expect(sameBytes(await readAll(image), expected)).toBe(true);
    await image.close();
    expect(vfs.resolve(vfs.cwd(), 'x.raw')).toBe('/x.raw');
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
    expect(vfs.resolveBacking('http://h/a/b.cow', '../c/d.raw')).toBe('http://h/c/d.raw');
    expect(vfs.resolveBacking('http://h/a/b.cow', '/etc/passwd')).toBe('http://h/etc/passwd');
    expect(vfs.resolveBacking('s3://bucket/a/b.cow', 'c.raw')).toBe('s3://bucket/a/c.raw');
    expect(await HttpStorage.open(server.url('/d/top.cow')).then((s) => s.size())).toBe(top.length);
  });
});
