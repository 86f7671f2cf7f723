/**
 * The `blk` executable as one self-contained program: dist/blk-main.cjs
 * carries @blk/*, commander and fzstd inside, so that
 *
 * - the CLI tarball alone installs (`npm i -g ./blk-cli-X.tgz`): the @blk
 *   packages are not in the npm registry, and the bin needs none of them;
 * - start-up reads one file and resolves no module graph: the bundle is one
 *   CommonJS function whose commands (imported dynamically in src/program.ts)
 *   initialise only when they run, and dist/blk.cjs (src/launcher.ts) runs
 *   it from V8's code cache, so that nothing is parsed or compiled twice.
 *   dist/blk.js, the path tests and scripts spawn, only requires blk.cjs;
 *   the package's bin is blk.cjs itself (no ES module loader at start).
 *
 * The library entry (src/index.ts, built by the package's first tsup call)
 * keeps @blk/* external: a program importing @blk/cli and @blk/images gets
 * one copy of @blk/core (`instanceof BlockError` holds). The bin's private
 * copy never meets a library consumer's objects.
 *
 * The bundled @blk/native code loads its addon from ../build/Release beside
 * the bundle, i.e. this package's build/Release: the packed CLI builds it
 * there at install (scripts/pack.mjs adds @blk/native's sources and install
 * script); in the repository, build/ links to @blk/native's build/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defineConfig, type Options } from 'tsup';

const version = (JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version?: string }).version ?? 'unknown';

/**
 * commander requires node:child_process when it loads (for executable subcommands, which blk has
 * none of), and child_process pulls in net, dgram and the stream modules: milliseconds at every
 * start. In the bundle that require becomes a proxy that loads the module on first use. Commander's
 * require is the one right after its EventEmitter's (lib/command.js); others (blk serve --fork's,
 * inside a command that initialises only when it runs) stay as they are. The build fails if
 * commander's line is not found (a new commander: look again).
 */
function lazyChildProcess(file: string): void {
  const text = fs.readFileSync(file, 'utf8');
  const eager = /(require\("events"\)\.EventEmitter,[\w$]+=)require\("child_process"\)/g;
  const count = text.match(eager)?.length ?? 0;
  if (count !== 1) throw new Error(`${file}: expected commander's one require of child_process, found ${count}`);
  const lazy =
    'new Proxy({}, { get: (_t, k) => require("node:child_process")[k], '
    + 'has: (_t, k) => k in require("node:child_process") })';
  fs.writeFileSync(
    file,
    text.replace(eager, (_m, before: string) => before + lazy),
  );
}

/**
 * esbuild turns every `import * as fs from 'node:fs'` of the sources into its own `__toESM(require("fs"),
 * 1)`: a new namespace object with a getter per export of the module, copied property by property (fs
 * has about a hundred), once per importing module: 30-odd copies of fs, path, os... at every start,
 * about 2 ms of `blk info`'s CPU time. The helper is rewritten to make one namespace per module object
 * in node mode (the getters read the module live, and nothing writes to a namespace, so sharing one
 * changes nothing); other calls are as before. The build fails if the helper is not found (a new
 * esbuild: look again).
 */
function sharedNamespaces(file: string): void {
  const text = fs.readFileSync(file, 'utf8');
  const helper =
    /var ([\w$]+)=\(t,e,i\)=>\(i=t!=null\?([\w$]+)\(([\w$]+)\(t\)\):\{\},([\w$]+)\(e\|\|!t\|\|!t\.__esModule\?([\w$]+)\(i,"default",\{value:t,enumerable:!0\}\):i,t\)\);/g;
  const count = text.match(helper)?.length ?? 0;
  if (count !== 1) throw new Error(`${file}: expected esbuild's one __toESM helper, found ${count}`);
  fs.writeFileSync(
    file,
    text.replace(
      helper,
      (_m, name: string, create: string, protoOf: string, copy: string, define: string) =>
        `var ${name}=((seen)=>(t,e,i)=>{if(e&&t!=null&&typeof t=="object"){let n=seen.get(t);`
        + `if(n===void 0)seen.set(t,n=${copy}(${define}(i=${create}(${protoOf}(t)),"default",{value:t,enumerable:!0}),t));return n}`
        + `return(i=t!=null?${create}(${protoOf}(t)):{},${copy}(e||!t||!t.__esModule?${define}(i,"default",{value:t,enumerable:!0}):i,t))})(new WeakMap);`,
    ),
  );
}

/** The launcher reads the bundle as latin1 (src/launcher.ts): any byte above 0x7f would be misread. */
function asciiOnly(file: string): void {
  const bytes = fs.readFileSync(file);
  const at = bytes.findIndex((b) => b > 0x7f);
  if (at >= 0) throw new Error(`${file}: a non-ASCII byte at ${at} (the launcher reads the bundle as latin1)`);
}

const common: Options = {
  format: ['cjs'],
  target: 'node20',
  platform: 'node',
  outDir: 'dist',
  clean: false, // the library build (run first) cleans dist/
  sourcemap: true,
  splitting: false,
  outExtension: () => ({ js: '.cjs' }),
};

export default defineConfig([
  {
    ...common,
    entry: { 'blk-main': 'src/blk.ts' },
    noExternal: [/^@blk\//, 'commander', 'fzstd'], // fzstd: @blk/qcow2's zstd decoder
    // A third of the bytes to read and hand to V8 at every start; function and class names kept
    // (messages and stack traces use them; the source map has the rest).
    minifyWhitespace: true,
    minifySyntax: true,
    minifyIdentifiers: true,
    keepNames: true,
    async onSuccess() {
      lazyChildProcess(path.resolve('dist', 'blk-main.cjs'));
      sharedNamespaces(path.resolve('dist', 'blk-main.cjs'));
      asciiOnly(path.resolve('dist', 'blk-main.cjs'));
    },
    // One function expression, which the launcher compiles with vm.Script (and V8's code cache).
    banner: {
      js:
        "(function (exports, require, module, __filename, __dirname) {'use strict';\n"
        + "const __blkImportMetaUrl = require('node:url').pathToFileURL(__filename).href;",
    },
    footer: { js: '})' },
    define: { 'import.meta.url': '__blkImportMetaUrl', __BLK_VERSION__: JSON.stringify(version) },
  },
  {
    ...common,
    entry: { blk: 'src/launcher.ts' },
    sourcemap: false,
    async onSuccess() {
      // dist/blk.js: the path tests and scripts run (an ES module in this "type": "module" package).
      fs.writeFileSync(
        path.resolve('dist', 'blk.js'),
        "#!/usr/bin/env node\nimport { createRequire } from 'node:module';\ncreateRequire(import.meta.url)('./blk.cjs');\n",
        { mode: 0o755 },
      );
      fs.chmodSync(path.resolve('dist', 'blk.cjs'), 0o755);
      const link = path.resolve('build');
      const target = path.join('..', 'native', 'build');
      if (
        fs.existsSync(path.resolve('..', 'native', 'package.json'))
        && !fs.lstatSync(link, { throwIfNoEntry: false })
      ) {
        fs.symlinkSync(target, link);
      }
    },
  },
]);
