// Browser rows (@blk/browser): random 4 KiB writes through a cow overlay kept in OPFS, in
// headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core, persistent profile:
// the off-the-record profile's OPFS is far slower), against the bare OPFS sync access handle at
// the same offsets; and the gzip size of the @blk/browser bundle (esbuild, minified).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'];

export default (ctx) => ({
  id: 'browser',
  rows: ['opfs-overlay-write', 'browser-bundle-gzip'],
  async run() {
    const { bundleBrowser } = await import(path.join(REPO, 'packages/browser/demo/bundle.mjs'));
    const work = path.join(ctx.dir, 'browser-bench');
    fs.mkdirSync(work, { recursive: true });

    // The bundle an application gets for `import ... from '@blk/browser'`.
    fs.writeFileSync(path.join(work, 'entry.ts'), "export * from '@blk/browser';\n");
    await bundleBrowser({ entries: { blk: path.join(work, 'entry.ts') }, outdir: path.join(work, 'bundle') });
    const min = fs.readFileSync(path.join(work, 'bundle', 'blk.js'));
    const gz = gzipSync(min, { level: 9 }).length;
    ctx.addRow({
      id: 'browser-bundle-gzip',
      info: true,
      title: '  (info) @blk/browser bundle (esbuild, minified, platform browser), gzip -9',
      unit: 'KiB',
      blk: +(gz / 1024).toFixed(1),
      note: `${(min.length / 1024).toFixed(1)} KiB minified; raw + cow + HTTP + OPFS + streams, no Node built-ins`,
    });

    if (!fs.existsSync(CHROMIUM)) {
      ctx.addRow({
        id: 'opfs-overlay-write',
        title: 'OPFS overlay random 4 KiB writes',
        note: `no chromium at ${CHROMIUM}`,
      });
      return;
    }
    const { chromium } = await import('playwright-core');
    const { startStaticServer } = await import(path.join(REPO, 'packages/browser/demo/static-server.mjs'));
    const www = path.join(work, 'www');
    const fixtures = path.join(REPO, 'packages/browser/test/fixtures');
    await bundleBrowser({
      entries: {
        'test-page': path.join(fixtures, 'test-page.ts'),
        'test-worker': path.join(fixtures, 'test-worker.ts'),
      },
      outdir: www,
    });
    fs.writeFileSync(
      path.join(www, 'index.html'),
      '<!doctype html><title>loading</title><input type="file" id="files"><script type="module" src="test-page.js"></script>',
    );
    const server = await startStaticServer({ root: www });
    const context = await chromium.launchPersistentContext(path.join(work, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
    });
    const count = ctx.QUICK ? 2000 : 20000;
    const sizeMiB = ctx.QUICK ? 64 : 256;
    const out = { 'blk cow overlay in OPFS': [], 'OPFS sync handle': [] };
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      await page.goto(`${server.origin}/`);
      await page.waitForFunction(() => document.title === 'ready');
      const reps = ctx.QUICK ? 2 : 5;
      for (let i = 0; i < reps; i++) {
        const r = await page.evaluate(
          ([c, s, seed]) => window.blkCall('benchWrites', c, s, seed),
          [count, sizeMiB, i + 1],
        );
        out['blk cow overlay in OPFS'].push({ value: r.count / (r.blkMs / 1000), unit: 'IOPS' });
        out['OPFS sync handle'].push({ value: r.count / (r.rawMs / 1000), unit: 'IOPS' });
        ctx.log(
          `  rep ${i + 1}: blk ${r.blkMs.toFixed(0)} ms, sync handle ${r.rawMs.toFixed(0)} ms for ${r.count} writes`,
        );
      }
    } finally {
      await context.close();
      await server.close();
    }
    const b = ctx.best(out['blk cow overlay in OPFS'], true);
    const bl = ctx.best(out['OPFS sync handle'], true);
    ctx.addRow({
      id: 'opfs-overlay-write',
      title: `OPFS overlay random 4 KiB writes (${count} over ${sizeMiB} MiB, Chromium, then flush)`,
      unit: 'IOPS',
      blk: b?.value,
      baseline: bl?.value,
      baselineName: 'bare OPFS sync handle, same offsets',
      goal: { min: 0.5 },
      note: 'cow overlay in OPFS over an OPFS raw base, Image.write + flush, in a dedicated worker; best of runs',
      samples: out,
    });
  },
});
