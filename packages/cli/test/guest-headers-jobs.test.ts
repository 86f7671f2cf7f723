/**
 * Jobs that write guest data into a file that is later probed (commit into a
 * backing file, convert into a default-raw output) must not let a guest's
 * own first or last sector turn that file into another format: a guest that
 * writes a cow header into its sector 0 must not get it committed into a raw
 * base, which would then probe as an overlay of a host file. Jobs that read a
 * backing file as raw only by default (commit, rebase -b, convert -B) refuse
 * one that carries another format's header instead of reading it as a disk.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { FOREIGN_SAMPLES } from '../../../test/fixtures/foreign-samples.js';
import { blk, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('guest-headers');
const { p } = scratch;
const sha = (file: string) =>
  createHash('sha256')
    .update(fs.readFileSync(p(file)))
    .digest('hex');
const MiB = 1 << 20;

beforeAll(() => {
  // A cow header naming a host file, as a guest could write into its own sector 0.
  rawFile(p('host-secret'), MiB, [[0, MiB, 0x5e]]);
  expect(blk(['create', '-q', '-f', 'cow', '-b', p('host-secret'), p('evil.cow')]).code).toBe(0);
  fs.writeFileSync(p('evil-head.bin'), fs.readFileSync(p('evil.cow')).subarray(0, 8192));
});

function ok(args: string[]): void {
  const r = blk(args, { cwd: scratch.dir });
  expect(r.stderr, args.join(' ')).toBe('');
  expect(r.code, args.join(' ')).toBe(0);
}

/** A raw base and a v3 overlay over it whose guest wrote `file` at `offset`. */
function overlayWithGuestBytes(name: string, file: string, offset: number): void {
  rawFile(p(`${name}.img`), MiB);
  ok(['create', '-q', '-f', 'cow', '-b', `${name}.img`, `${name}.cow`]);
  ok(['io', '-c', `write -s ${file} ${offset} ${fs.statSync(p(file)).size}`, `${name}.cow`]);
}

function expectOneLine(stderr: string, ...parts: string[]): void {
  expect(stderr.split('\n').filter(Boolean)).toHaveLength(1);
  for (const part of parts) expect(stderr).toContain(part);
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('blk commit into a base that opens as raw by default', () => {
  it('refuses to commit a guest-written cow header into the raw base, before changing either file', () => {
    overlayWithGuestBytes('c1', 'evil-head.bin', 0);
    const base = sha('c1.img');
    const top = sha('c1.cow');
    const r = blk(['commit', 'c1.cow'], { cwd: scratch.dir });
    expect(r.code).toBe(1);
    expectOneLine(r.stderr, 'c1.img', 'probe as cow', 'nothing was written');
    expect(sha('c1.img')).toBe(base);
    expect(sha('c1.cow')).toBe(top);
    // The overlay is not left marked "commit in progress": it still opens and reads the guest's bytes.
    ok(['io', '-c', 'read -P 0x4f 0 3', 'c1.cow']);
    ok(['info', 'c1.cow']);
  });

  it('refuses a guest-written VHD footer in the last sector too (the tail decides a fixed VHD)', () => {
    const footer = FOREIGN_SAMPLES.find((s) => s.format === 'vpc' && s.bytes.length > 4096)!.bytes.subarray(-512);
    fs.writeFileSync(p('footer.bin'), footer);
    overlayWithGuestBytes('c2', 'footer.bin', MiB - 512);
    const base = sha('c2.img');
    const r = blk(['commit', 'c2.cow'], { cwd: scratch.dir });
    expect(r.code).toBe(1);
    expectOneLine(r.stderr, 'probe as vpc');
    expect(sha('c2.img')).toBe(base);
  });

  it('still commits guest data that keeps the base raw', () => {
    fs.writeFileSync(p('plain.bin'), new Uint8Array(4096).fill(0x42));
    overlayWithGuestBytes('c3', 'plain.bin', 0);
    ok(['commit', '-q', 'c3.cow']);
    expect(fs.readFileSync(p('c3.img'))[0]).toBe(0x42);
  });

  it('refuses to commit into a backing file that is itself an overlay opened as raw by default', () => {
    rawFile(p('c4.img'), MiB, [[0, MiB, 0x11]]);
    ok(['create', '-q', '-f', 'cow', '-b', 'c4.img', 'c4-mid.cow']);
    ok(['create', '-q', '-f', 'cow', '-b', 'c4-mid.cow', '-F', 'cow', 'c4-top.cow']);
    ok(['io', '--backing-probe', '-c', 'write -P 0x77 0 64k', 'c4-top.cow']);
    const mid = sha('c4-mid.cow');
    const r = blk(['commit', 'c4-top.cow'], { cwd: scratch.dir });
    expect(r.code).toBe(1);
    expectOneLine(r.stderr, 'c4-mid.cow', 'looks like a cow image');
    expect(sha('c4-mid.cow')).toBe(mid);
  });
});

describe('blk convert to a default-raw output', () => {
  it('refuses output whose guest data would make it probe as cow, leaving no file; -O raw writes it', () => {
    overlayWithGuestBytes('v1', 'evil-head.bin', 0);
    const r = blk(['convert', 'v1.cow', 'v1.out'], { cwd: scratch.dir });
    expect(r.code).toBe(1);
    expectOneLine(r.stderr, 'v1.out', 'would probe as cow', '-O raw');
    expect(fs.readdirSync(scratch.dir).filter((f) => f.startsWith('v1.out'))).toEqual([]);
    ok(['convert', '-O', 'raw', 'v1.cow', 'v1.out']);
    expect(fs.readFileSync(p('v1.out')).subarray(0, 8192)).toEqual(fs.readFileSync(p('evil-head.bin')));
  });
});

describe('backing files read as raw only by default', () => {
  it('rebase -b onto a qcow2 file is refused, the overlay unchanged; -F raw reads its bytes', () => {
    fs.writeFileSync(p('r.qcow2'), FOREIGN_SAMPLES.find((s) => s.format === 'qcow2')!.bytes);
    rawFile(p('r.img'), 4096);
    ok(['create', '-q', '-f', 'cow', '-o', 'version=2', '-b', 'r.img', 'r.cow']);
    const before = sha('r.cow');
    const r = blk(['rebase', '-b', 'r.qcow2', 'r.cow'], { cwd: scratch.dir });
    expect(r.code).toBe(1);
    expectOneLine(r.stderr, 'r.qcow2', 'qcow2');
    expect(sha('r.cow')).toBe(before);
    ok(['rebase', '-F', 'raw', '-b', 'r.qcow2', 'r.cow']);
  });

  it('create -b with a qcow2 file as the backing file is refused and creates nothing; -F raw sizes it as raw', () => {
    const r = blk(['create', '-q', '-f', 'cow', '-o', 'version=2', '-b', 'r.qcow2', 'n.cow'], { cwd: scratch.dir });
    expect(r.code).toBe(1);
    expectOneLine(r.stderr, 'r.qcow2', 'qcow2');
    expect(fs.existsSync(p('n.cow'))).toBe(false);
    ok(['create', '-q', '-f', 'cow', '-o', 'version=2', '-F', 'raw', '-b', 'r.qcow2', 'n.cow']);
  });

  it('convert -B with a qcow2 file as the backing file is refused and creates nothing', () => {
    rawFile(p('b.img'), 4096, [[0, 4096, 0x33]]);
    const r = blk(['convert', '-O', 'cow', '-B', 'r.qcow2', 'b.img', 'b.cow'], { cwd: scratch.dir });
    expect(r.code).toBe(1);
    expectOneLine(r.stderr, 'r.qcow2', 'qcow2');
    expect(fs.readdirSync(scratch.dir).filter((f) => f.startsWith('b.cow'))).toEqual([]);
  });
});
