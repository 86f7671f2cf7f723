// Checks that the portable packages really run in a browser:
//  1. bundles each of them with esbuild for `--platform=browser` and fails on any import of a
//     Node built-in (fs, node:path, ...), static or dynamic, naming the file that imports it;
//  2. type-checks them with `types: []` (no @types/node: no process, Buffer, NodeJS.*) and
//     `lib: ["ES2022", "WebWorker"]`.
// The packages: @blk/core/portable, @blk/raw, @blk/cow, @blk/qcow2, @blk/testkit, @blk/http, @blk/nbd, @blk/stream,
// @blk/browser, and @blk/jobs when it exists.
//
// Usage: node scripts/check-browser.mjs [--dist] [--no-types] [--entry NAME=FILE ...]
//   (default) bundles the TypeScript sources (@blk/* resolved to packages/*/src, as vitest does);
//   --dist     bundles the built packages as an application would (package.json exports, `browser`
//              and `import` conditions; run `pnpm run build` first);
//   --entry    adds an entry to bundle (the test uses it to prove that a Node import fails);
//   --no-types skips the type check.
// Exit status 0 when every check passes; 1 with one line per problem otherwise.
import { builtinModules } from 'node:module';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const dist = args.includes('--dist');
const types = !args.includes('--no-types');
const extra = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] !== '--entry') continue;
  const [name, file] = (args[++i] ?? '').split('=');
  if (!name || !file) throw new Error('--entry NAME=FILE');
  extra.push({ name, file: path.resolve(file) });
}

/** The portable packages: [import specifier, package folder, source entry]. */
const PORTABLE = [
  ['@blk/core/portable', 'core', 'src/portable.ts'],
  ['@blk/raw', 'raw', 'src/index.ts'],
  ['@blk/cow', 'cow', 'src/index.ts'],
  ['@blk/qcow2', 'qcow2', 'src/index.ts'],
  ['@blk/testkit', 'testkit', 'src/index.ts'],
  ['@blk/jobs', 'jobs', 'src/index.ts'],
  ['@blk/nbd', 'nbd', 'src/index.ts'],
  ['@blk/http', 'http', 'src/index.ts'],
  ['@blk/stream', 'stream', 'src/index.ts'],
  ['@blk/browser', 'browser', 'src/index.ts'],
].filter(([, dir]) => existsSync(path.join(REPO, 'packages', dir, 'package.json')));

/** Node-only modules that live in a portable package behind a separate entry (never imported by the portable one). */
const NODE_ONLY = [
  'nbd/src/node.ts',
  'nbd/src/tls-node.ts',
  'nbd/src/zero-copy-node.ts',
  'stream/src/node.ts',
  'http/src/node.ts',
  'http/src/node-transport.ts',
  'http/src/index.node.ts',
];

/** Every @blk/* specifier resolved to its TypeScript source (the Node entries too, so that reaching one is seen). */
const SOURCES = {
  '@blk/core': 'core/src/index.ts',
  '@blk/core/portable': 'core/src/portable.ts',
  '@blk/raw': 'raw/src/index.ts',
  '@blk/cow': 'cow/src/index.ts',
  '@blk/qcow2': 'qcow2/src/index.ts',
  '@blk/testkit': 'testkit/src/index.ts',
  '@blk/jobs': 'jobs/src/index.ts',
  '@blk/nbd': 'nbd/src/index.ts',
  '@blk/nbd/node': 'nbd/src/node.ts',
  '@blk/http': 'http/src/index.ts',
  '@blk/http/node': 'http/src/node.ts',
  '@blk/stream': 'stream/src/index.ts',
  '@blk/stream/node': 'stream/src/node.ts',
  '@blk/browser': 'browser/src/index.ts',
  '@blk/images': 'images/src/index.ts',
  '@blk/faults': 'faults/src/index.ts',
  '@blk/native': 'native/src/index.ts',
};

const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const isBuiltin = (spec) => spec.startsWith('node:') || BUILTINS.has(spec) || BUILTINS.has(spec.split('/')[0]);
const rel = (file) => path.relative(REPO, file);

/** Records each Node built-in import (and marks it external, so every one is found, not just the first). */
function nodeImports(found) {
  return {
    name: 'node-imports',
    setup(build) {
      build.onResolve({ filter: /.*/ }, (a) => {
        if (isBuiltin(a.path)) {
          found.push(`${rel(a.importer)} imports ${a.path}${a.kind === 'dynamic-import' ? ' (dynamic import)' : ''}`);
          return { path: a.path, external: true };
        }
        if (!dist && SOURCES[a.path]) return { path: path.join(REPO, 'packages', SOURCES[a.path]) };
        return undefined;
      });
    },
  };
}

async function bundle(name, entry, resolveDir) {
  const found = [];
  const result = await esbuild
    .build({
      stdin: {
        contents: `export * from ${JSON.stringify(entry)};\n`,
        resolveDir,
        sourcefile: `${name} (browser entry)`,
        loader: 'js',
      },
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      write: false,
      logLevel: 'silent',
      conditions: ['browser', 'import'],
      plugins: [nodeImports(found)],
    })
    .catch((err) => ({ failed: err }));
  const problems = found.map((f) => `${name}: ${f}`);
  if (result.failed) {
    for (const e of result.failed.errors ?? [{ text: String(result.failed) }]) {
      problems.push(`${name}: ${e.location ? `${e.location.file}:${e.location.line}: ` : ''}${e.text}`);
    }
  }
  const bytes = result.outputFiles?.[0]?.contents.length;
  return { problems, bytes };
}

const problems = [];
for (const [spec, dir, src] of PORTABLE) {
  // --dist: the package imports itself by name (its package.json exports), from its own folder.
  const entry = dist ? spec : path.join(REPO, 'packages', dir, src);
  const r = await bundle(spec, entry, path.join(REPO, 'packages', dir));
  problems.push(...r.problems);
  console.log(
    `check-browser: ${spec} ${r.problems.length ? 'FAILED' : `bundles for the browser (${Math.round(r.bytes / 1024)} KiB)`}`,
  );
}
for (const { name, file } of extra) {
  const r = await bundle(name, file, REPO);
  problems.push(...r.problems);
  console.log(`check-browser: ${name} ${r.problems.length ? 'FAILED' : 'bundles for the browser'}`);
}

if (types) {
  // A tsconfig for the portable sources only, with no Node types and a browser worker's globals.
  const tmp = path.join(REPO, '.tmp');
  mkdirSync(tmp, { recursive: true });
  const config = path.join(tmp, 'tsconfig.browser.json');
  const paths = Object.fromEntries(Object.entries(SOURCES).map(([k, v]) => [k, [path.join(REPO, 'packages', v)]]));
  const files = PORTABLE.map(([, dir, src]) => path.join(REPO, 'packages', dir, src));
  const include = PORTABLE.filter(([, dir]) => dir !== 'core').map(([, dir]) =>
    path.join(REPO, 'packages', dir, 'src'),
  );
  writeFileSync(
    config,
    JSON.stringify(
      {
        extends: path.join(REPO, 'tsconfig.json'),
        compilerOptions: { noEmit: true, types: [], lib: ['ES2022', 'WebWorker'], paths, declaration: false },
        files,
        include,
        // Node-only modules inside portable packages (their own entries, e.g. @blk/nbd/node): not for browsers.
        exclude: NODE_ONLY.map((f) => path.join(REPO, 'packages', f)),
      },
      null,
      2,
    ),
  );
  const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', config], { cwd: REPO, encoding: 'utf8' });
  const lines = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /error TS/.test(l));
  for (const l of lines) problems.push(`types: ${l.trim()}`);
  if (r.status !== 0 && lines.length === 0)
    problems.push(`types: tsc exited ${r.status}: ${r.stdout}${r.stderr}`.trim());
  console.log(
    `check-browser: type check with types: [] and lib ES2022 + WebWorker ${lines.length || r.status ? 'FAILED' : 'passes'}`,
  );
}

if (problems.length) {
  console.error(`check-browser: ${problems.length} problem(s):`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
console.log('check-browser: ok');
