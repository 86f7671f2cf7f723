/**
 * The demo page (packages/browser/demo, `pnpm demo`): built as `pnpm demo` builds it, served by
 * its own server, loaded in chromium. It opens the sample image over HTTP and shows its info and
 * allocation map; an overlay created in OPFS takes a write, and after a reload the overlay is
 * listed and still holds it; the download (its fallback path: the merged image streamed into an
 * OPFS file, downloaded through a blob: URL) saves the bytes of the merged chain. The save-picker
 * path needs a user to answer the picker and is not exercised here.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost } from '@blk/images';
import { startDemo } from '../demo/serve.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) console.warn(`demo test skipped: no chromium at ${CHROMIUM} (apt-get install chromium)`);
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'];

let dir: string;
let server: { origin: string; close(): Promise<unknown> };
let context: BrowserContext;
let page: Page;

describe.skipIf(!haveChromium)('the demo page in chromium', () => {
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-demo-'));
    server = await startDemo({ port: 0, dir });
    context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      acceptDownloads: true,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => console.error('page error:', e));
    await page.goto(`${server.origin}/`);
    await page.waitForSelector('body[data-ready="1"]');
  });

  afterAll(async () => {
    await context?.close();
    await server?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('opens the sample image and shows its info and allocation map', async () => {
    await page.click('#sample');
    await expect.poll(() => page.textContent('#info')).toContain('file format: cow');
    const info = (await page.textContent('#info'))!;
    expect(info).toContain('virtual size: 16.0 MiB (16777216 bytes)');
    expect(info).toContain(`backing file 1: ${server.origin}/sample/sample.raw (raw)`);
    // Over HTTP the raw base cannot tell its holes: all 16 MiB count as data.
    expect(info).toContain('data (from the allocation map): 16.0 MiB');
    expect(await page.textContent('#legend')).toContain(`1: ${server.origin}/sample/sample.raw (raw)`);
    // The map is drawn: some pixels are not the background.
    const painted = await page.evaluate(() => {
      const c = document.getElementById('map') as HTMLCanvasElement;
      const px = c.getContext('2d')!.getImageData(0, 0, c.width, 1).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) if (px[i] !== 0xee) n++;
      return n;
    });
    expect(painted).toBeGreaterThan(50);
    await page.fill('#offset', '4096');
    await page.click('#readback');
    await expect.poll(() => page.textContent('#bytes')).toContain('This sentence lives in the overlay');
  });

  it('writes through an OPFS overlay that is still there after a reload', async () => {
    await page.click('#overlay');
    await expect.poll(() => page.textContent('#info')).toContain('image: /opfs/blk-demo/sample-overlay.cow');
    await page.fill('#offset', '100000');
    await page.fill('#text', 'written by the demo test');
    await page.click('#write');
    await expect.poll(() => page.textContent('#status')).toContain('wrote 24 bytes at 100000');
    await page.reload();
    await page.waitForSelector('body[data-ready="1"]');
    await expect.poll(() => page.textContent('#overlays')).toContain('/opfs/blk-demo/sample-overlay.cow');
    await page.click('#overlays button:text("open")');
    await expect.poll(() => page.textContent('#info')).toContain('image: /opfs/blk-demo/sample-overlay.cow');
    await page.fill('#offset', '100000');
    await page.click('#readback');
    await expect.poll(() => page.textContent('#bytes')).toContain('written by the demo test');
    await page.fill('#offset', '0');
    await page.click('#readback');
    await expect.poll(() => page.textContent('#bytes')).toContain('Hello from blk');
  });

  it('downloads the merged image: the file saved has the bytes of the merged chain', async () => {
    // Headless chromium has showSaveFilePicker but no one to answer it: take the OPFS fallback path.
    await page.evaluate(() => {
      (window as unknown as { showSaveFilePicker?: unknown }).showSaveFilePicker = undefined;
    });
    const download = page.waitForEvent('download');
    await page.click('#download');
    const saved = path.join(dir, 'merged.raw');
    await (await download).saveAs(saved);
    const host = createHost();
    const sample = await host.openImage(path.join(dir, 'sample', 'sample.cow'), { readOnly: true });
    const expected = Buffer.from(await sample.read(0, sample.size));
    await sample.close();
    expected.set(Buffer.from('written by the demo test'), 100000);
    const got = fs.readFileSync(saved);
    expect(got.length).toBe(expected.length);
    expect(got.equals(expected)).toBe(true);
  });

  it('downloads the overlay alone: a cow file over the sample URL holding the write', async () => {
    const download = page.waitForEvent('download');
    await page.click('#download-overlay');
    const saved = path.join(dir, 'overlay.cow');
    await (await download).saveAs(saved);
    const host = createHost();
    // Its backing file is the sample's URL: read it with the backing ignored (not opened).
    const overlay = await host.openImage(saved, { readOnly: true, format: 'cow', backing: { mode: 'ignore' } });
    try {
      expect(overlay.backingReference?.path).toBe(`${server.origin}/sample/sample.cow`);
      expect(Buffer.from(await overlay.read(100000, 24)).toString()).toBe('written by the demo test');
    } finally {
      await overlay.close();
    }
  });
});
