#!/usr/bin/env node
/**
 * `pnpm run build`: builds the packages whose dist/ is older than their
 * inputs, dependencies first, and prints one line per package built; tsup's
 * output goes to .tmp/build.log (shown only when a build fails). A second
 * run with nothing changed builds nothing.
 *
 *   node scripts/build.mjs            what is out of date
 *   node scripts/build.mjs --force    everything
 *
 * A package is out of date when a file under its src/, its package.json or
 * tsconfig.json, or the root tsconfig.json is newer than the oldest file of
 * its dist/ (tsup --clean rewrites all of dist/, so that is when it was last
 * built). A change in a dependency alone does not rebuild its dependents:
 * tsup leaves workspace imports external, so their output would not change
 * (`pnpm typecheck` checks the packages against each other). The exception
 * is a package with a tsup config that bundles workspace packages
 * (`noExternal`: @blk/cli's self-contained bin): it is also out of date when
 * the dist/ of a workspace package it depends on (directly or not) is newer.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force');
const logFile = path.join(root, '.tmp', 'build.log');

/** Every workspace package under packages/ with a build script. */
function workspacePackages() {
  const dir = path.join(root, 'packages');
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(dir, e.name, 'package.json')))
    .map((e) => {
      const pkgDir = path.join(dir, e.name);
      const manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
      const deps = Object.entries({ ...manifest.dependencies, ...manifest.devDependencies })
        .filter(([, spec]) => String(spec).startsWith('workspace:'))
        .map(([name]) => name);
      const configs = fs
        .readdirSync(pkgDir)
        .filter((f) => /^tsup(\..+)?\.config\.[cm]?[jt]s$/.test(f))
        .map((f) => path.join(pkgDir, f));
      const bundles = configs.some((f) => /\bnoExternal\b/.test(fs.readFileSync(f, 'utf8')));
      return { name: manifest.name, dir: pkgDir, deps, configs, bundles, buildable: Boolean(manifest.scripts?.build) };
    })
    .filter((p) => p.buildable);
}

/** Newest and oldest mtimes of the files under `dir` (recursively); undefined when there are none. */
function mtimes(dir) {
  let newest, oldest;
  const walk = (d) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else {
        const t = fs.statSync(p).mtimeMs;
        newest = newest === undefined ? t : Math.max(newest, t);
        oldest = oldest === undefined ? t : Math.min(oldest, t);
      }
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return { newest, oldest };
}

function mtimeOf(file) {
  return fs.existsSync(file) ? fs.statSync(file).mtimeMs : 0;
}

/** The workspace packages `pkg` depends on, directly or through others. */
function workspaceDepsOf(pkg, byName, seen = new Set()) {
  for (const name of pkg.deps) {
    const dep = byName.get(name);
    if (!dep || seen.has(dep)) continue;
    seen.add(dep);
    workspaceDepsOf(dep, byName, seen);
  }
  return seen;
}

function outOfDate(pkg, byName) {
  if (force) return true;
  const built = mtimes(path.join(pkg.dir, 'dist')).oldest;
  if (built === undefined) return true;
  const inputs = [
    mtimes(path.join(pkg.dir, 'src')).newest ?? 0,
    mtimeOf(path.join(pkg.dir, 'package.json')),
    mtimeOf(path.join(pkg.dir, 'tsconfig.json')),
    mtimeOf(path.join(root, 'tsconfig.json')),
    ...pkg.configs.map(mtimeOf),
    ...(pkg.bundles ? [...workspaceDepsOf(pkg, byName)].map((d) => mtimes(path.join(d.dir, 'dist')).newest ?? 0) : []),
  ];
  return Math.max(...inputs) > built;
}

function runBuild(pkg, log) {
  return new Promise((resolve) => {
    const started = Date.now();
    log.write(`\n=== ${pkg.name}: pnpm run build (${new Date().toISOString()})\n`);
    const child = spawn('pnpm', ['run', 'build'], { cwd: pkg.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (b) => log.write(b));
    child.stderr.on('data', (b) => log.write(b));
    child.on('error', (err) => {
      log.write(`${err.message}\n`);
      resolve({ ok: false, ms: Date.now() - started });
    });
    child.on('close', (code) => resolve({ ok: code === 0, ms: Date.now() - started }));
  });
}

async function main() {
  const pkgs = workspacePackages();
  const byName = new Map(pkgs.map((p) => [p.name, p]));
  const done = new Set();
  let built = 0;
  // Opened at the first build: a run that builds nothing keeps the last log.
  let logStream;
  const log = {
    write: (chunk) => {
      if (!logStream) {
        fs.mkdirSync(path.dirname(logFile), { recursive: true });
        logStream = fs.createWriteStream(logFile);
      }
      logStream.write(chunk);
    },
    end: (cb) => (logStream ? logStream.end(cb) : cb()),
  };
  // The native addon first: its C sources change with the TypeScript that calls them, and
  // `pnpm install` is the only other thing that compiles it (install.cjs does nothing when
  // the addon is newer than its sources and loads).
  const nativeInstall = path.join(root, 'packages', 'native', 'install.cjs');
  if (fs.existsSync(nativeInstall)) {
    const r = await new Promise((resolve) => {
      const child = spawn(process.execPath, [nativeInstall], {
        cwd: path.dirname(nativeInstall),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (c) => {
        out += c;
      });
      child.stderr.on('data', (c) => {
        out += c;
      });
      child.on('close', (code) => resolve({ code, out }));
    });
    log.write(`=== @blk/native: install.cjs\n${r.out}`);
    if (/\bbuilt\b/.test(r.out) || r.code !== 0)
      process.stdout.write(
        `${r.out
          .split('\n')
          .filter(Boolean)
          .map((l) => `build: ${l}`)
          .join('\n')}\n`,
      );
  }
  // Level by level: a package builds once every workspace package it depends on is done.
  while (done.size < pkgs.length) {
    const ready = pkgs.filter((p) => !done.has(p.name) && p.deps.every((d) => done.has(d) || !byName.has(d)));
    if (ready.length === 0) throw new Error('build: the workspace packages depend on each other in a cycle');
    const stale = ready.filter((p) => outOfDate(p, byName));
    // Two at a time: tsup's type declarations are CPU-heavy, and this machine may be shared.
    for (let i = 0; i < stale.length; i += 2) {
      const batch = stale.slice(i, i + 2);
      const results = await Promise.all(batch.map((p) => runBuild(p, log)));
      for (const [j, r] of results.entries()) {
        const pkg = batch[j];
        if (!r.ok) {
          await new Promise((res) => log.end(res));
          const text = fs.readFileSync(logFile, 'utf8');
          const section = text.slice(text.lastIndexOf(`=== ${pkg.name}:`));
          process.stderr.write(`${section.split('\n').slice(-40).join('\n')}\n`);
          process.stderr.write(`build: ${pkg.name} FAILED (full log: ${path.relative(process.cwd(), logFile)})\n`);
          process.exit(1);
        }
        built++;
        console.log(`build: ${pkg.name} (${(r.ms / 1000).toFixed(1)} s)`);
      }
    }
    for (const p of ready) done.add(p.name);
  }
  await new Promise((res) => log.end(res));
  console.log(
    built === 0
      ? 'build: everything up to date'
      : `build: ${built} package${built === 1 ? '' : 's'} built (log: ${path.relative(process.cwd(), logFile) || logFile})`,
  );
}

await main();
