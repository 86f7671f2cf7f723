/**
 * Review of today's qcow2 amend and blk io work (issue 13), as a careless user and a hostile
 * image author would use it, judged against qemu-io where it applies.
 *
 * - raw's window (`offset`/`size` in a json: name) named by a relative file name: the window
 *   must apply exactly as with an absolute name (it was silently dropped: writes landed at the
 *   file's start and the whole file was the disk).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, qemuIo, rawFile, tempDir } from './helpers.js';

const QEMU = hasCommand('qemu-io');
let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = tempDir('io-review-q2');
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});
const p = (name: string) => path.join(dir, name);

const windowJson = (file: string) =>
  `json:{"driver":"raw","offset":4096,"size":65536,"file":{"driver":"file","filename":"${file}"}}`;

describe("raw's window with a relative file name", () => {
  it('applies the offset and size as an absolute name does', () => {
    rawFile(p('w.bin'), 1 << 20, [[0, 1 << 20, 0xaa]]);
    const r = blk(['io', '-c', 'length', '-c', 'write -P 0x11 0 4096', windowJson('w.bin')], { cwd: dir });
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')[0]).toBe('64 KiB');
    const data = fs.readFileSync(p('w.bin'));
    // The write landed at the window's start, not the file's.
    expect(data.subarray(0, 4096).every((b) => b === 0xaa)).toBe(true);
    expect(data.subarray(4096, 8192).every((b) => b === 0x11)).toBe(true);
  });

  it.skipIf(!QEMU)('refuses a write past the window as qemu-io does, touching nothing outside it', () => {
    rawFile(p('e.bin'), 1 << 20, [[0, 1 << 20, 0xaa]]);
    const cmd = ['-c', 'write -P 0x22 61440 8192', windowJson('e.bin')];
    const theirs = qemuIo(cmd, { cwd: dir });
    const ours = blk(['io', ...cmd], { cwd: dir });
    expect(ours.stdout).toBe(theirs.stdout);
    expect(theirs.stdout).toBe('write failed: Input/output error\n');
    const data = fs.readFileSync(p('e.bin'));
    expect(data.every((b) => b === 0xaa)).toBe(true);
  });
});
