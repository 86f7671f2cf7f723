/**
 * blk io's `sigraise SIGNAL` and `abort` (qemu-io's sigraise_f and abort_f,
 * which QEMU iotests 039, 061 and 137 use to kill qemu-io mid-session): the
 * output of the commands before is written, the process dies of the signal,
 * the commands after do not run; a signal number above NSIG and a non-number
 * are refused with qemu-io's messages.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { blk, hasCommand, scratchDir } from './helpers.js';

const scratch = scratchDir('io-sigraise');

describe('blk io sigraise and abort', () => {
  it('dies of the signal after printing what came before; later commands do not run', () => {
    const f = path.join(scratch.dir, 'a.raw');
    fs.writeFileSync(f, new Uint8Array(64 * 1024));
    const r = blk(['io', '-f', 'raw', '-c', 'write -P 0x5a 0 512', '-c', 'sigraise 9', '-c', 'read 0 512', f], {
      cwd: scratch.dir,
    });
    expect(r.signal).toBe('SIGKILL');
    expect(r.stdout).toMatch(/^wrote 512\/512 bytes at offset 0\n/);
    expect(r.stdout).not.toMatch(/^read /m);
    // A raw write goes straight to the file: it survives the kill, as with qemu-io.
    expect(
      fs
        .readFileSync(f)
        .subarray(0, 512)
        .every((x) => x === 0x5a),
    ).toBe(true);
  });

  it('needs no open file, as qemu-io (CMD_NOFILE_OK)', () => {
    const r = blk(['io', '-c', 'sigraise 15'], { cwd: scratch.dir });
    expect(r.signal).toBe('SIGTERM');
  });

  it('abort raises SIGABRT without a stack trace', () => {
    const r = blk(['io', '-c', 'abort'], { cwd: scratch.dir });
    expect(r.signal).toBe('SIGABRT');
    expect(r.stderr).not.toMatch(/stack trace/i);
  });

  it("refuses a signal above NSIG and a non-number with qemu-io's messages", () => {
    const big = blk(['io', '-c', 'sigraise 99', '-c', 'sigraise x'], { cwd: scratch.dir });
    expect(big.signal).toBe(null);
    expect(big.code).toBe(1);
    const expected =
      "signal argument '99' is too large to be a valid signal\n"
      + 'Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- x\n';
    expect(big.stdout).toBe(expected);
    if (hasCommand('qemu-io')) {
      const q = spawnSync('qemu-io', ['-c', 'sigraise 99', '-c', 'sigraise x'], { encoding: 'utf8' });
      expect(q.stdout).toBe(expected);
    }
  });
});
