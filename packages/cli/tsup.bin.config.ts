/**
 * The `blk` executable as one self-contained program: dist/blk.js and its
 * lazily loaded command chunks carry @blk/* and commander inside, so that
 *
 * - the CLI tarball alone installs (`npm i -g ./blk-cli-X.tgz`): the @blk
 *   packages are not in the npm registry, and the bin needs none of them;
 * - start-up resolves and reads a few files instead of every package's
 *   modules (`blk info` loads dist/blk.js, one command chunk, shared chunks).
 *
 * The library entry (src/index.ts, built by the package's first tsup call)
 * keeps @blk/* external: a program importing @blk/cli and @blk/images gets
 * one copy of @blk/core (`instanceof BlockError` holds). The bin's private
 * copy never meets a library consumer's objects.
 *
 * The bundled @blk/native code loads its addon from ../build/Release beside
 * the chunk, i.e. this package's build/Release: the packed CLI builds it
 * there at install (scripts/pack.mjs adds @blk/native's sources and install
 * script); in the repository, build/ links to @blk/native's build/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { blk: 'src/blk.ts' },
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  outDir: 'dist',
  clean: false, // the library build (run first) cleans dist/
  sourcemap: true,
  splitting: true, // commands stay lazily loaded chunks
  noExternal: [/^@blk\//, 'commander'],
  // commander is CommonJS: its require() calls of node: modules need a real require in an ES module.
  banner: {
    js: "import { createRequire as __blkCreateRequire } from 'node:module'; const require = __blkCreateRequire(import.meta.url);",
  },
  async onSuccess() {
    const link = path.resolve('build');
    const target = path.join('..', 'native', 'build');
    if (fs.existsSync(path.resolve('..', 'native', 'package.json')) && !fs.lstatSync(link, { throwIfNoEntry: false })) {
      fs.symlinkSync(target, link);
    }
  },
});
