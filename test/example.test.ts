/**
 * The README's first command runs examples/overlay-demo.mjs (`pnpm example`):
 * it must keep working and keep saying what is true of the files it makes.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');

describe('the built-in example (pnpm example)', () => {
  it('runs, reads back what it wrote through the overlay, and maps overlay, base data and base holes', () => {
    if (!fs.existsSync(path.join(root, 'packages/images/dist/index.js'))) {
      throw new Error('packages are not built: run `pnpm run build` (pnpm test does)');
    }
    const r = spawnSync(process.execPath, [path.join(root, 'examples/overlay-demo.mjs')], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/format cow \(v3\), virtual size 16777216 bytes/);
    expect(r.stdout).toMatch(
      /read at 1000: "hello from blk"; the 10 bytes before it come from the base: ba ba ba ba ba ba ba ba ba ba/,
    );
    const rows = r.stdout.split('\n').filter((l) => /^ {2}\d+ +\d+ +\S/.test(l));
    expect(r.stdout).toMatch(/^ {2}512 +512 +overlay$/m);
    expect(r.stdout).toMatch(/^ {2}4194304 +65536 +overlay$/m);
    expect(r.stdout).toMatch(/^ {2}1024 +1047552 +backing \(depth 1\)$/m);
    expect(r.stdout).toMatch(/^ {2}4259840 +12517376 +backing \(depth 1\), a hole: zeros$/m);
    expect(rows.length).toBe(6);
    expect(r.stdout).toMatch(/isAllocated\(0\): false for 512 bytes/);
  });
});
