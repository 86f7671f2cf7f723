#!/usr/bin/env node
/**
 * Formatting and lint checks (Biome, configured in biome.jsonc), run by `pnpm lint`,
 * `pnpm format:check` and, through scripts/test-summary.mjs, by `pnpm test` (so CI fails on a
 * violation).
 *
 *   node scripts/style.mjs lint            lint the enforced files (no writes)
 *   node scripts/style.mjs format:check    check the enforced files' formatting (no writes)
 *   node scripts/style.mjs check           both, and the guard below (what `pnpm test` runs)
 *   node scripts/style.mjs report          whole repo, never fails: files the formatter would
 *                                          change, lint findings by rule, files not yet enforced
 *   node scripts/style.mjs report --update rewrite scripts/style-enforced.json's lists with the
 *                                          files that are clean today
 *   ... --all (or BLK_STYLE=all)           check the whole repo whatever the list says
 *
 * Which files are checked: scripts/style-enforced.json, `{ "format": ..., "lint": ... }`, each
 * either "all" (every file Biome covers) or a list of files and folders. Until the whole repo is
 * formatted once (`pnpm format`), the lists hold the files that were already clean, so CI stays
 * green while work on other files goes on; set both to "all" after that.
 *
 * The guard: a tracked x.js or x.d.ts beside a tracked x.ts is tsc output committed by mistake,
 * and vitest and esbuild would load it instead of x.ts (they resolve './x.js' to a file that exists).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const listFile = path.join(root, 'scripts', 'style-enforced.json');
const biomeBin = path.join(root, 'node_modules', '@biomejs', 'biome', 'bin', 'biome');

const [mode = 'check', ...rest] = process.argv.slice(2);
const all = rest.includes('--all') || process.env.BLK_STYLE === 'all';

function biome(args, options = {}) {
  return spawnSync(process.execPath, [biomeBin, ...args], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    ...options,
  });
}

function readLists() {
  const lists = JSON.parse(fs.readFileSync(listFile, 'utf8'));
  for (const key of ['format', 'lint']) {
    const v = lists[key];
    if (v !== 'all' && !(Array.isArray(v) && v.every((p) => typeof p === 'string'))) {
      throw new Error(`${path.relative(root, listFile)}: "${key}" must be "all" or a list of paths`);
    }
  }
  return lists;
}

/** The paths to hand Biome for one check: ['.'] for all, else the listed paths that still exist. */
function targets(key) {
  const v = all ? 'all' : readLists()[key];
  if (v === 'all') return { paths: ['.'], whole: true, gone: [] };
  const gone = v.filter((p) => !fs.existsSync(path.join(root, p)));
  return { paths: v.filter((p) => !gone.includes(p)), whole: false, gone };
}

function describe(t) {
  const gone = t.gone.length ? `; ${t.gone.length} listed path(s) no longer exist: ${t.gone.join(', ')}` : '';
  return (t.whole ? 'whole repo' : `${t.paths.length} enforced path(s) (scripts/style-enforced.json)`) + gone;
}

function runCheck(name, key, args) {
  const t = targets(key);
  if (t.paths.length === 0) {
    console.log(`style: ${name}: nothing enforced yet`);
    return true;
  }
  const r = biome(
    [...args, '--no-errors-on-unmatched', '--diagnostic-level=warn', '--max-diagnostics=50', ...t.paths],
    { stdio: 'inherit' },
  );
  const ok = r.status === 0;
  console.log(`style: ${name} ${ok ? 'clean' : 'FAILED'} on ${describe(t)}`);
  return ok;
}

const lint = () => runCheck('lint', 'lint', ['lint', '--error-on-warnings']);
const formatCheck = () => runCheck('format:check', 'format', ['format']);

/** Tracked tsc output (x.js / x.d.ts beside x.ts). */
function emittedBesideSources() {
  const r = spawnSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) return [];
  const files = new Set(r.stdout.split('\0').filter(Boolean));
  return [...files].filter((f) => {
    const m = /^(.*)\.(?:js|d\.ts)$/.exec(f);
    return m !== null && files.has(`${m[1]}.ts`);
  });
}

function guard() {
  const emitted = emittedBesideSources();
  if (emitted.length === 0) return true;
  console.log(
    `style: FAILED: ${emitted.length} tracked tsc output file(s) beside their .ts source (loaded instead of`
      + ` the source by vitest and esbuild; remove them with git rm): ${emitted.slice(0, 10).join(', ')}`
      + (emitted.length > 10 ? ', ...' : ''),
  );
  return false;
}

/** Whole-repo diagnostics through Biome's JSON reporter (report mode only: the reporter is experimental). */
function diagnostics(command) {
  const r = biome([command, '--reporter=json', '--max-diagnostics=none', '.']);
  const out = JSON.parse(r.stdout);
  return out.diagnostics.filter((d) => d.location?.path);
}

/** Every file Biome covers: tracked or untracked-but-not-ignored, with an extension biome.jsonc includes. */
function coveredFiles() {
  const r = spawnSync('git', ['ls-files', '-z', '-co', '--exclude-standard'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return new Set(
    r.stdout.split('\0').filter((f) => /\.(?:[mc]?ts|[mc]?js|jsonc?)$/.test(f) && fs.existsSync(path.join(root, f))),
  );
}

function report(update) {
  const fmt = new Set(
    diagnostics('format')
      .filter((d) => d.category === 'format')
      .map((d) => d.location.path),
  );
  const lintDiags = diagnostics('lint').filter((d) => d.category.startsWith('lint/') && d.severity !== 'info');
  const lintFiles = new Set(lintDiags.map((d) => d.location.path));
  const files = [...coveredFiles()].sort();
  console.log(`files Biome covers: ${files.length}`);
  console.log(`formatter would change: ${fmt.size} file(s)`);
  const byRule = new Map();
  for (const d of lintDiags)
    byRule.set(`${d.category} (${d.severity})`, (byRule.get(`${d.category} (${d.severity})`) ?? 0) + 1);
  console.log(`lint findings: ${lintDiags.length} in ${lintFiles.size} file(s)`);
  for (const [rule, n] of [...byRule].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(4)}  ${rule}`);
  if (update) {
    const lists = { ...readLists() };
    if (lists.format !== 'all') lists.format = files.filter((f) => !fmt.has(f));
    if (lists.lint !== 'all') lists.lint = files.filter((f) => !lintFiles.has(f));
    fs.writeFileSync(listFile, `${JSON.stringify(lists, null, 2)}\n`);
    biome(['format', '--write', listFile]); // in the formatter's own layout, so the file stays clean
    const n = (v) => (v === 'all' ? 'all' : `${v.length} file(s)`);
    console.log(`wrote ${path.relative(root, listFile)}: format ${n(lists.format)}, lint ${n(lists.lint)}`);
  }
}

let ok;
switch (mode) {
  case 'lint':
    ok = lint();
    break;
  case 'format:check':
    ok = formatCheck();
    break;
  case 'check': {
    const results = [guard(), formatCheck(), lint()];
    ok = results.every(Boolean);
    break;
  }
  case 'report':
    report(rest.includes('--update'));
    ok = true;
    break;
  default:
    console.error(`usage: node scripts/style.mjs lint|format:check|check|report [--all] [--update]`);
    ok = false;
}
process.exit(ok ? 0 : 1);
