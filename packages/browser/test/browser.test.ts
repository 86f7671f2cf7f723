/**
 * blk in a real browser: Debian's chromium, headless, driven by playwright-core, with a
 * persistent profile (OPFS survives a reload and a restart). The page is served from
 * http://127.0.0.1 (a secure context) by a small static server with byte ranges, and the code
 * under test is bundled from the TypeScript sources with esbuild. In the browser: a cow chain
 * opened from picked File objects, from HTTP and from OPFS gives the bytes and data runs Node
 * reads from the same files; an OPFS overlay over an HTTP base keeps its writes across a reload and
 * a browser restart; the testkit read-after-write proof passes on OPFS storage; a second page
 * that tries to write an overlay another page writes gets `locked`, readers share.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost } from '@blk/images';
import { createHost as coreHost, gatherBackingFacts, NodeVfs } from '@blk/core';
import { cowDriver } from '@blk/cow';
import { rawDriver } from '@blk/raw';
import { pattern } from '@blk/testkit';
import { bundleBrowser } from '../demo/bundle.mjs';
import { startStaticServer } from '../demo/static-server.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) console.warn(`browser tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium)`);

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const MiB = 1 << 20;
const FORMATS = ['cow', 'cow', 'raw'];

let dir: string;
let server: Awaited<ReturnType<typeof startStaticServer>>;
let context: BrowserContext;
let page: Page;
let profile: string;
let expected: { size: number; digests: string[]; runs: number[] };
const files = () => ['base.raw', 'mid.cow', 'top.cow'].map((f) => path.join(dir, 'img', f));

/** A chain top.cow > mid.cow > base.raw whose backing names are relative (so they resolve anywhere). */
async function makeChain(imgDir: string): Promise<void> {
  const host = createHost();
  const vfs = new NodeVfs();
  const base = path.join(imgDir, 'base.raw');
  const mid = path.join(imgDir, 'mid.cow');
  const top = path.join(imgDir, 'top.cow');
  await host.createImage(base, { format: 'raw', size: 3 * MiB + 4096 });
  const b = await host.openImage(base, { format: 'raw' });
  await b.write(0, pattern(MiB, 1));
  await b.write(2 * MiB + 100, pattern(5000, 2));
  await b.close();
  await host.createImage(mid, { format: 'cow', backing: base });
  const m = await host.openImage(mid);
  await m.write(MiB - 4000, pattern(9000, 3));
  await m.setBackingReference({ path: 'base.raw', format: 'raw', facts: await gatherBackingFacts(vfs, base, b) });
  await m.close();
  await host.createImage(top, { format: 'cow', backing: { path: mid, format: 'cow' } });
  const t = await host.openImage(top, { backing: { format: (_r, d) => FORMATS[d] ?? 'raw' } });
  await t.write(3 * MiB, pattern(4096, 4));
  await t.write(12_345, pattern(777, 5));
  const midImage = t.chain()[1]!;
  await t.setBackingReference({
    path: 'mid.cow',
    format: 'cow',
    facts: await gatherBackingFacts(vfs, mid, { size: midImage.size, format: 'cow' }),
  });
  await t.close();
}

async function expectedOf(top: string) {
  // Core's NodeVfs reports no holes (no SEEK_DATA without the native addon), as File, HTTP and OPFS
  // storages do not: the data runs then match run for run.
  const host = coreHost({ drivers: [cowDriver, rawDriver], vfs: new NodeVfs() });
  const image = await host.openImage(top, { readOnly: true, backing: { format: (_r, d) => FORMATS[d] ?? 'raw' } });
  try {
    const all = await image.read(0, image.size);
    const digests: string[] = [];
    for (let at = 0; at < all.length; at += MiB) {
      digests.push(
        createHash('sha256')
          .update(all.subarray(at, at + MiB))
          .digest('hex'),
      );
    }
    const runs: number[] = [];
    for await (const r of image.map()) {
      if (r.zero || r.depth === undefined) continue;
      for (let at = r.start; at < r.start + r.length; at += MiB) runs.push(at, Math.min(MiB, r.start + r.length - at));
    }
    return { size: image.size, digests, runs };
  } finally {
    await image.close();
  }
}

async function launch(): Promise<void> {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  page = context.pages()[0] ?? (await context.newPage());
  await openPage(page);
}

async function openPage(p: Page): Promise<void> {
  p.on('pageerror', (e) => console.error('page error:', e));
  await p.goto(`${server.origin}/`);
  await p.waitForFunction(() => document.title === 'ready');
}

type Call = { value?: unknown; error?: { kind?: string; name?: string; message?: string } };
const call = (p: Page, op: string, ...args: unknown[]): Promise<Call> =>
  p.evaluate(([o, a]) => (window as any).blkTry(o, ...(a as unknown[])), [op, args] as const);
async function ok<T>(p: Page, op: string, ...args: unknown[]): Promise<T> {
  const r = await call(p, op, ...args);
  if (r.error) throw new Error(`${op}: ${r.error.kind ?? r.error.name}: ${r.error.message}`);
  return r.value as T;
}

describe.skipIf(!haveChromium)('blk in chromium', () => {
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-browser-'));
    profile = path.join(dir, 'profile');
    fs.mkdirSync(path.join(dir, 'img'));
    fs.mkdirSync(path.join(dir, 'www'));
    await makeChain(path.join(dir, 'img'));
    expected = await expectedOf(path.join(dir, 'img', 'top.cow'));
    await bundleBrowser({
      entries: {
        'test-page': path.join(HERE, 'fixtures', 'test-page.ts'),
        'test-worker': path.join(HERE, 'fixtures', 'test-worker.ts'),
      },
      outdir: path.join(dir, 'www'),
      minify: false,
    });
    fs.writeFileSync(
      path.join(dir, 'www', 'index.html'),
      '<!doctype html><title>loading</title><input type="file" id="files" multiple><script type="module" src="test-page.js"></script>',
    );
    server = await startStaticServer({
      root: path.join(dir, 'www'),
      routes: Object.fromEntries(files().map((f) => [`/img/${path.basename(f)}`, f])),
      // CORS, so that a page on another origin (localhost) could read it: what the origin rule must refuse.
      headers: {
        'Access-Control-Allow-Origin': '*',
        'Access-Control-Allow-Headers': 'Range',
        'Access-Control-Expose-Headers': 'Content-Range, Content-Length, ETag, Last-Modified, Accept-Ranges',
      },
    });
    await launch();
  });

  afterAll(async () => {
    await context?.close();
    await server?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('opens a cow chain from picked File objects: bytes and data runs as in Node', async () => {
    await page.setInputFiles('#files', files());
    const got = await page.evaluate(() =>
      (window as any).blkTry('digest', '/files/top.cow', ['cow', 'cow', 'raw'], (window as any).files()),
    );
    expect(got.error).toBeUndefined();
    expect(got.value.size).toBe(expected.size);
    expect(got.value.digests).toEqual(expected.digests);
    expect(got.value.runs).toEqual(expected.runs);
    expect(got.value.chain).toEqual(['/files/top.cow', '/files/mid.cow', '/files/base.raw']);
    // In a worker a picked file reads synchronously (FileReaderSync): an honest syncRead.
    expect(await ok(page, 'capabilities', '/files/base.raw')).toMatchObject({
      syncRead: true,
      write: false,
      flush: false,
      readSyncIsSync: true,
    });
  });

  it('opens the same chain over HTTP (ranges from the static server), backing names resolved against the URL', async () => {
    const got = await ok<{ digests: string[]; runs: number[]; chain: string[] }>(
      page,
      'digest',
      `${server.origin}/img/top.cow`,
      FORMATS,
    );
    expect(got.digests).toEqual(expected.digests);
    expect(got.runs).toEqual(expected.runs);
    expect(got.chain).toEqual(['top.cow', 'mid.cow', 'base.raw'].map((f) => `${server.origin}/img/${f}`));
  });

  it('opens the chain copied into OPFS, through synchronous access handles', async () => {
    await page.setInputFiles('#files', files());
    expect(
      await page.evaluate(() => (window as any).blkCall('copyToOpfs', (window as any).files(), '/opfs/chain')),
    ).toBe(3);
    // The copies have new mtimes, which UML cow records: accept them (onMismatch 'accept').
    const refused = await call(page, 'digest', '/opfs/chain/top.cow', FORMATS);
    expect(refused.error?.kind).toBe('backing-mismatch');
    const got = await ok<{ digests: string[]; runs: number[] }>(
      page,
      'digest',
      '/opfs/chain/top.cow',
      FORMATS,
      [],
      true,
    );
    expect(got.digests).toEqual(expected.digests);
    expect(got.runs).toEqual(expected.runs);
    // The core's synchronous read path applies over OPFS, and over HTTP once the range is in
    // HttpStorage's block cache (the first read fetched it).
    expect(await ok(page, 'syncFastPath', '/opfs/chain/top.cow', FORMATS, [], true)).toEqual({
      filledSynchronously: true,
      filledAfterAwait: true,
    });
    expect(await ok(page, 'syncFastPath', `${server.origin}/img/top.cow`, FORMATS)).toEqual({
      filledSynchronously: true,
      filledAfterAwait: true,
    });
    const caps = await ok<Record<string, unknown>>(page, 'capabilities', '/opfs/chain/base.raw');
    expect(caps).toMatchObject({ syncRead: true, write: false, remote: false, readSyncIsSync: true });
  });

  it('an OPFS overlay over an HTTP base keeps its writes across a reload and a browser restart', async () => {
    const base = `${server.origin}/img/base.raw`;
    await ok(page, 'createOverlay', '/opfs/ov/top.cow', base);
    const writes: Array<[number, number, number]> = [
      [512, 1024, 11],
      [2 * MiB + 1, 70_000, 12],
    ];
    await ok(page, 'writePatterns', '/opfs/ov/top.cow', writes);
    const baseBytes = fs.readFileSync(files()[0]!);
    const check = async () => {
      for (const [o, n, seed] of writes) {
        const got = await ok<number[]>(page, 'read', '/opfs/ov/top.cow', o, n);
        expect(Buffer.from(got).equals(Buffer.from(pattern(n, seed)))).toBe(true);
      }
      // Untouched: the HTTP base shows through.
      const under = await ok<number[]>(page, 'read', '/opfs/ov/top.cow', MiB - 100, 200);
      expect(Buffer.from(under).equals(baseBytes.subarray(MiB - 100, MiB + 100))).toBe(true);
    };
    await page.reload();
    await page.waitForFunction(() => document.title === 'ready');
    await check();
    await context.close();
    await launch();
    await check();
    // An OPFS image may not name a URL of another origin (only the page's own by default).
    await ok(page, 'createOverlay', '/opfs/ov/foreign.cow', base.replace('127.0.0.1', 'localhost'));
    expect((await call(page, 'read', '/opfs/ov/foreign.cow', 0, 1)).error?.kind).toBe('backing-forbidden');
  });

  it('the testkit read-after-write proof passes on OPFS storage (raw, and cow over raw)', async () => {
    const r = await ok<{ ms: number; opfsOpens: number }>(page, 'readAfterWrite', 12, 20261206);
    expect(r.opfsOpens).toBeGreaterThan(24);
  });

  it('two pages contend for one overlay: the Web Lock refuses the second writer, readers share', async () => {
    const other = await context.newPage();
    await openPage(other);
    const ov = '/opfs/ov/top.cow';
    try {
      expect(await ok(page, 'hold', 'a', ov, false)).toBe(true);
      // The other page sees the first one's Web Lock, and is refused by it (not by the OPFS handle).
      expect(await ok(other, 'locks')).toEqual([`exclusive blk:${ov}`]);
      const refused = await call(other, 'hold', 'b', ov, false);
      expect(refused.error).toMatchObject({ kind: 'locked', message: expect.stringMatching(/Web Lock/) });
      expect((await call(other, 'hold', 'b', ov, true)).error?.kind).toBe('locked');
      await ok(page, 'release', 'a');
      expect(await ok(page, 'hold', 'a', ov, true)).toBe(false);
      expect(await ok(other, 'hold', 'b', ov, true)).toBe(false);
      expect(await ok(other, 'locks')).toEqual([`shared blk:${ov}`, `shared blk:${ov}`]);
      expect((await call(other, 'hold', 'c', ov, false)).error?.kind).toBe('locked');
      await ok(page, 'release', 'a');
      await ok(other, 'release', 'b');
      expect(await ok(other, 'hold', 'c', ov, false)).toBe(true);
      await ok(other, 'release', 'c');
    } finally {
      await other.close();
    }
  });

  it('an OPFS overlay over a picked file: needs the file picked again after a reload, then reads its writes', async () => {
    await page.setInputFiles('#files', files()[0]!);
    await page.evaluate(() => (window as any).blkCall('pick', (window as any).files()));
    await ok(page, 'createOverlay', '/opfs/blob/top.cow', '/files/base.raw');
    await ok(page, 'writePatterns', '/opfs/blob/top.cow', [[4096, 8192, 21]]);
    await page.reload();
    await page.waitForFunction(() => document.title === 'ready');
    const missing = await call(page, 'read', '/opfs/blob/top.cow', 4096, 16);
    expect(missing.error?.kind).toBe('backing-missing');
    await page.setInputFiles('#files', files()[0]!);
    await page.evaluate(() => (window as any).blkCall('pick', (window as any).files()));
    const got = await ok<number[]>(page, 'read', '/opfs/blob/top.cow', 4096, 8192);
    expect(Buffer.from(got).equals(Buffer.from(pattern(8192, 21)))).toBe(true);
    const below = await ok<number[]>(page, 'read', '/opfs/blob/top.cow', 0, 4096);
    expect(Buffer.from(below).equals(fs.readFileSync(files()[0]!).subarray(0, 4096))).toBe(true);
  });
});
