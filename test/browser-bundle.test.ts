/**
 * The portable packages (@blk/core/portable, raw, cow, testkit, jobs) bundle
 * for the browser with no Node built-in and type-check without Node's types
 * (scripts/check-browser.mjs). This replaces a regex walk of core's static
 * imports, which missed dynamic imports and raw/cow importing core's Node entry.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function check(args: string[]) {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // vitest's loader hooks must not reach the child
  const r = spawnSync(process.execPath, [path.join(REPO, 'scripts', 'check-browser.mjs'), ...args], {
    cwd: REPO,
    encoding: 'utf8',
    env,
    timeout: 300_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('scripts/check-browser.mjs', () => {
  it('the portable sources bundle for --platform=browser without Node built-ins and type-check with types: []', () => {
    const r = check([]);
    expect(r.out).toMatch(/@blk\/core\/portable bundles for the browser/);
    expect(r.out).toMatch(/@blk\/raw bundles for the browser/);
    expect(r.out).toMatch(/@blk\/cow bundles for the browser/);
    expect(r.out).toMatch(/@blk\/testkit bundles for the browser/);
    expect(r.out).toMatch(/@blk\/jobs bundles for the browser/);
    expect(r.out).toMatch(/type check with types: \[\] and lib ES2022 \+ WebWorker passes/);
    expect(r.code, r.out).toBe(0);
  });

  it('the built packages, resolved through their package.json exports as an application would, do too', () => {
    if (!fs.existsSync(path.join(REPO, 'packages', 'core', 'dist', 'portable.js'))) {
      throw new Error('packages are not built: run pnpm run build first');
    }
    const r = check(['--dist', '--no-types']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/check-browser: ok/);
  });

  it('fails on a Node built-in reached only by a dynamic import, naming the importer', () => {
    const r = check(['--no-types', '--entry', `dynamic=${path.join(REPO, 'test', 'fixtures', 'node-import.ts')}`]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/dynamic: test\/fixtures\/node-import\.ts imports node:fs \(dynamic import\)/);
  });

  it("fails on core's Node entry (what raw and cow imported before), naming the Node storage", () => {
    const r = check(['--no-types', '--entry', `node-entry=${path.join(REPO, 'packages', 'core', 'src', 'index.ts')}`]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/node-entry: packages\/core\/src\/node\/node-storage\.ts imports node:fs/);
  });
});
