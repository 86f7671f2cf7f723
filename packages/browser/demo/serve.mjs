#!/usr/bin/env node
// `pnpm demo` (from the repository root): builds the packages, bundles the demo page with esbuild
// and serves it on http://127.0.0.1:8080 (a secure context, as OPFS needs), with a sample cow
// chain under /sample/. Options: --port N (0: any free port), --dir DIR (where the build goes,
// default .tmp/demo). Stop with Ctrl-C.
import { copyFileSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundleBrowser, REPO } from './bundle.mjs';
import { startStaticServer } from './static-server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Bundles demo.ts and worker.ts into `outdir` and copies index.html. */
export async function buildDemo(outdir) {
  mkdirSync(outdir, { recursive: true });
  await bundleBrowser({
    entries: { demo: path.join(HERE, 'demo.ts'), worker: path.join(HERE, 'worker.ts') },
    outdir,
    sourcemap: true,
  });
  copyFileSync(path.join(HERE, 'index.html'), path.join(outdir, 'index.html'));
}

/**
 * The sample: sample.cow (cow, 16 MiB) over sample.raw, with text at 0 in the base, text at
 * 4096 in the overlay and some data further on; the overlay names its base by a relative name, so
 * it resolves against the URL it is served from.
 */
export async function makeSample(dir) {
  const { createHost, NodeVfs, gatherBackingFacts } = await import('@blk/images');
  mkdirSync(dir, { recursive: true });
  const host = createHost();
  const base = path.join(dir, 'sample.raw');
  const top = path.join(dir, 'sample.cow');
  const MiB = 1 << 20;
  await host.createImage(base, { format: 'raw', size: 16 * MiB, overwrite: true });
  const b = await host.openImage(base, { format: 'raw' });
  await b.write(0, new TextEncoder().encode('Hello from blk: this is the base image (sample.raw).'));
  const block = new Uint8Array(MiB).map((_, i) => (i * 31) & 0xff);
  await b.write(2 * MiB, block);
  await b.write(9 * MiB, block);
  await b.close();
  await host.createImage(top, { format: 'cow', backing: base, overwrite: true });
  const t = await host.openImage(top);
  await t.write(4096, new TextEncoder().encode('This sentence lives in the overlay (sample.cow).'));
  await t.write(12 * MiB, block.subarray(0, 512 * 1024));
  await t.setBackingReference({
    path: 'sample.raw',
    format: 'raw',
    facts: await gatherBackingFacts(new NodeVfs(), base, { size: 16 * MiB, format: 'raw' }),
  });
  await t.close();
  return { base, top };
}

/** Builds the demo and the sample under `dir` and serves them. Resolves to the static server. */
export async function startDemo({ port = 8080, dir = path.join(REPO, '.tmp', 'demo') } = {}) {
  const www = path.join(dir, 'www');
  await buildDemo(www);
  const sample = await makeSample(path.join(dir, 'sample'));
  return startStaticServer({
    root: www,
    port,
    routes: { '/sample/sample.cow': sample.top, '/sample/sample.raw': sample.base },
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const server = await startDemo({
    port: Number(arg('--port') ?? process.env.PORT ?? 8080),
    ...(arg('--dir') ? { dir: path.resolve(arg('--dir')) } : {}),
  });
  console.log(`blk demo: ${server.origin}/ (Ctrl-C to stop)`);
}
