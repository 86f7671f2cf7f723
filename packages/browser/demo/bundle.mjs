// Bundles browser entry points with esbuild (the project's bundler), resolving @blk/* packages to
// their TypeScript sources as vitest and scripts/check-browser.mjs do, for `platform: 'browser'`.
// A Node built-in reached from a browser entry fails the build.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function blkSources() {
  return {
    name: 'blk-sources',
    setup(build) {
      build.onResolve({ filter: /^@blk\// }, (a) => {
        const [, pkg, sub] = /^@blk\/([^/]+)(?:\/(.+))?$/.exec(a.path) ?? [];
        const file = path.join(REPO, 'packages', pkg, 'src', `${sub ?? 'index'}.ts`);
        if (existsSync(file)) return { path: file };
        return undefined;
      });
    },
  };
}

/**
 * Bundles `entries` ({ outName: sourceFile }) into `outdir` as ES modules (minified unless
 * `minify: false`). Returns esbuild's metafile-less result.
 */
export async function bundleBrowser({ entries, outdir, minify = true, sourcemap = false }) {
  return esbuild.build({
    entryPoints: entries,
    outdir,
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify,
    sourcemap,
    conditions: ['browser', 'import'],
    logLevel: 'silent',
    plugins: [blkSources()],
  });
}
