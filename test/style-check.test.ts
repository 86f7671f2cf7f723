/**
 * scripts/style.mjs (`pnpm lint`, `pnpm format:check`, and the check a whole `pnpm test` runs) on a
 * scratch git repository with this repo's biome.jsonc: it fails on a violation in an enforced file,
 * ignores files not yet enforced (until the list says "all"), skips listed files that are gone, and
 * fails on tsc output committed beside a .ts source.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLEAN = 'export const answer = 42;\n';
const UNFORMATTED = 'export const answer   =  "42"\n';
const UNUSED_IMPORT = "import { join } from 'node:path';\n\nexport const answer = 42;\n";

let work: string;
beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-style-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function git(root: string, ...args: string[]) {
  const r = spawnSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: root, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

/** A repo with scripts/style.mjs, biome.jsonc, this repo's node_modules, and the given files. */
function scratch(files: Record<string, string>, enforced: { format: string[] | 'all'; lint: string[] | 'all' }) {
  const root = fs.mkdtempSync(path.join(work, 'repo-'));
  fs.mkdirSync(path.join(root, 'scripts'));
  fs.copyFileSync(path.join(REPO, 'scripts', 'style.mjs'), path.join(root, 'scripts', 'style.mjs'));
  fs.copyFileSync(path.join(REPO, 'biome.jsonc'), path.join(root, 'biome.jsonc'));
  fs.writeFileSync(path.join(root, 'scripts', 'style-enforced.json'), `${JSON.stringify(enforced, null, 2)}\n`);
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(root, 'node_modules'));
  fs.writeFileSync(path.join(root, '.gitignore'), 'node_modules\n');
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), text);
  }
  git(root, 'init', '-q');
  git(root, 'add', '.');
  git(root, 'commit', '-q', '-m', 'scratch');
  return root;
}

function style(root: string, ...args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.BLK_STYLE;
  const r = spawnSync(process.execPath, ['scripts/style.mjs', ...args], { cwd: root, encoding: 'utf8', env });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('scripts/style.mjs', () => {
  it('passes clean enforced files and fails on a format or lint violation in one', () => {
    const ok = scratch({ 'src/a.ts': CLEAN }, { format: ['src/a.ts'], lint: ['src'] });
    expect(style(ok, 'check').code).toBe(0);

    const badFormat = scratch({ 'src/a.ts': UNFORMATTED }, { format: ['src/a.ts'], lint: [] });
    const f = style(badFormat, 'format:check');
    expect(f.code).toBe(1);
    expect(f.out).toContain('style: format:check FAILED');
    expect(style(badFormat, 'check').code).toBe(1);

    const badLint = scratch({ 'src/a.ts': UNUSED_IMPORT }, { format: [], lint: ['src'] });
    const l = style(badLint, 'lint');
    expect(l.code).toBe(1);
    expect(l.out).toContain('noUnusedImports');
  });

  it('ignores files that are not enforced yet, and checks them once the list says "all" or with --all', () => {
    const files = { 'src/a.ts': CLEAN, 'src/b.ts': UNFORMATTED, 'src/c.ts': UNUSED_IMPORT };
    const partial = scratch(files, { format: ['src/a.ts'], lint: ['src/a.ts'] });
    expect(style(partial, 'check').code).toBe(0);
    expect(style(partial, 'format:check', '--all').code).toBe(1);
    expect(style(partial, 'lint', '--all').code).toBe(1);

    const whole = scratch(files, { format: 'all', lint: 'all' });
    expect(style(whole, 'format:check').code).toBe(1);
    expect(style(whole, 'lint').code).toBe(1);
  });

  it('skips a listed file that no longer exists, and says so', () => {
    const root = scratch({ 'src/a.ts': CLEAN }, { format: ['src/a.ts', 'src/moved.ts'], lint: ['src/moved.ts'] });
    const r = style(root, 'check');
    expect(r.code).toBe(0);
    expect(r.out).toContain('no longer exist: src/moved.ts');
  });

  it('fails on tsc output committed beside its .ts source', () => {
    const root = scratch({ 'src/a.ts': CLEAN, 'src/a.js': 'export const answer = 42;\n' }, { format: [], lint: [] });
    const r = style(root, 'check');
    expect(r.code).toBe(1);
    expect(r.out).toContain('src/a.js');
  });

  it('reports and records the files that are clean today', () => {
    const root = scratch(
      { 'src/a.ts': CLEAN, 'src/b.ts': UNFORMATTED, 'src/c.ts': UNUSED_IMPORT },
      { format: [], lint: [] },
    );
    const r = style(root, 'report', '--update');
    expect(r.code).toBe(0);
    expect(r.out).toContain('lint/correctness/noUnusedImports');
    const lists = JSON.parse(fs.readFileSync(path.join(root, 'scripts', 'style-enforced.json'), 'utf8'));
    expect(lists.format).toContain('src/a.ts');
    expect(lists.format).not.toContain('src/b.ts');
    expect(lists.lint).toContain('src/a.ts');
    expect(lists.lint).not.toContain('src/c.ts');
    const after = style(root, 'check');
    expect(after.code, after.out).toBe(0);
  });
});
