/**
 * blk io's `truncate [-m prealloc_mode] off` (qemu-io's truncate_f, which
 * QEMU iotest 025 drives): grows and shrinks the image (no --shrink guard, as
 * blk_truncate), refuses an unknown preallocation mode and a read-only image;
 * `length` and the file's size follow, as with the real qemu-io.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { blk, hasCommand, scratchDir } from './helpers.js';

const scratch = scratchDir('io-truncate');

const cmds = ['truncate 3M', 'length', 'truncate 512k', 'length', 'truncate -m full 1M', 'length'];

describe('blk io truncate', () => {
  it("grows and shrinks a raw image, with qemu-io's length output", () => {
    const f = path.join(scratch.dir, 'a.raw');
    fs.writeFileSync(f, new Uint8Array(1024 * 1024).fill(7));
    const r = blk(['io', '-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), f]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('3 MiB\n512 KiB\n1 MiB\n');
    expect(fs.statSync(f).size).toBe(1024 * 1024);
    const data = fs.readFileSync(f);
    expect(data.subarray(0, 512 * 1024).every((x) => x === 7)).toBe(true);
    expect(data.subarray(512 * 1024).every((x) => x === 0)).toBe(true);
    if (hasCommand('qemu-io')) {
      const g = path.join(scratch.dir, 'b.raw');
      fs.writeFileSync(g, new Uint8Array(1024 * 1024));
      const q = spawnSync('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), g], { encoding: 'utf8' });
      expect(q.stdout).toBe(r.stdout);
    }
  });

  it('an unknown preallocation mode and a read-only image are refused', () => {
    const f = path.join(scratch.dir, 'c.raw');
    fs.writeFileSync(f, new Uint8Array(4096));
    const bad = blk(['io', '-f', 'raw', '-c', 'truncate -m sparse 8k', f]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Invalid preallocation mode 'sparse'/);
    const ro = blk(['io', '-r', '-f', 'raw', '-c', 'truncate 8k', f]);
    expect(ro.code).toBe(1);
    expect(ro.stderr).toMatch(/read-only/);
    expect(fs.statSync(f).size).toBe(4096);
  });
});
