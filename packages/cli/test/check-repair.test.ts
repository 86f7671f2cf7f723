/**
 * blk check -r leaks|all: what check finds in a cow file is either repaired
 * (qemu-img's report, then a second check) or said to be beyond repair.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { blk, hasCommand, qemuImgAsBlk, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('repair');
const { p } = scratch;

const BITMAP = 1056; // v2-qemu-lp64: the bitmap follows the 1056-byte header
const DATA = 1536; // and the data starts at the next 512-byte boundary (257 bitmap bytes)
const SECTORS = 2049; // 1 MiB + 512: the bitmap's last byte has 7 bits past the last sector

/** A QEMU-layout image with data in sectors 0-7, its file cut inside that data, and stray bits. */
function damaged(name: string): string {
  const file = p(name);
  expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', file, String(SECTORS * 512)]).code).toBe(0);
  expect(blk(['io', '-c', 'write -P 0xab 0 4k', file]).code).toBe(0);
  fs.truncateSync(file, 3000); // sectors 0 and 1 (data 1536..2560) survive, 2..7 are past the end
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([0xfe]), 0, 1, BITMAP + 256); // bits of sectors 2049..2055, which do not exist
  fs.closeSync(fd);
  return file;
}

/** The guest-visible bytes of an image (through blk, as raw). */
function contents(file: string): Buffer {
  const out = p(`${path.basename(file)}.raw`);
  expect(blk(['convert', '-O', 'raw', file, out]).code).toBe(0);
  const bytes = fs.readFileSync(out);
  fs.rmSync(out);
  return bytes;
}

const REPORT = (leaks: number, corruptions: number) =>
  'The following inconsistencies were found and repaired:\n\n'
  + `    ${leaks} leaked clusters\n    ${corruptions} corruptions\n\nDouble checking the fixed image now...\n`;
const PAST_EOF =
  'ERROR sectors 2-7 (offset 1024): marked allocated, but the data lies past the end of the file (3000 bytes)\n';
const STRAY = `7 bits set past the last sector (${SECTORS - 1}) in the bitmap's last byte`;

describe('blk check -r', () => {
  it('without -r: corruptions and leaks reported, exit 2, nothing written', () => {
    const file = damaged('a.cow');
    const before = fs.readFileSync(file);
    const r = blk(['check', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`${PAST_EOF}Leaked: ${STRAY}\n`);
    expect(r.stdout).toContain('\n6 errors were found on the image.\n');
    expect(r.stdout).toContain('\n7 leaked clusters were found on the image.\n');
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  it('-r leaks repairs the leaks only: the corruptions remain, exit 2', () => {
    const file = damaged('b.cow');
    const r = blk(['check', '-r', 'leaks', file]);
    expect(r.code).toBe(2);
    expect(r.stdout.startsWith(REPORT(7, 0))).toBe(true);
    expect(r.stdout).toContain('\n6 errors were found on the image.\n');
    expect(r.stdout).not.toContain('leaked clusters were found');
    expect(r.stderr).toBe(`${PAST_EOF}Repairing: cleared ${STRAY}\n${PAST_EOF}`);
    expect(fs.readFileSync(file)[BITMAP + 256]).toBe(0);
  });

  it('-r all repairs both without changing what the guest reads; the second check is clean, exit 0', () => {
    const file = damaged('c.cow');
    const seen = contents(file);
    const r = blk(['check', '-r', 'all', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `${REPORT(7, 6)}No errors were found on the image.\n8/${SECTORS} = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n`,
    );
    expect(r.stderr).toBe(
      `${PAST_EOF}Repairing: extended the file to ${DATA + 8 * 512} bytes, so that the 6 allocated sectors `
        + `past its end lie inside it (they read as zeros, as before)\nRepairing: cleared ${STRAY}\n`,
    );
    expect(contents(file).equals(seen)).toBe(true);
    expect(blk(['check', file]).code).toBe(0);
    // JSON carries the counts of what was fixed, as qemu-img's.
    const again = damaged('c2.cow');
    const j = JSON.parse(blk(['check', '-r', 'all', '--output=json', again]).stdout) as Record<string, unknown>;
    expect(j).toMatchObject({ 'check-errors': 0, 'corruptions-fixed': 6, 'leaks-fixed': 7 });
    expect(j.corruptions).toBeUndefined();
  });

  it.skipIf(!hasCommand('qemu-img') || !hasCommand('qemu-io'))(
    "the repair report is qemu-img's, word for word (qemu-img on a qcow2 it repairs; installed)",
    () => {
      // A qcow2 with lazy refcounts whose writer was killed: a refcount qemu-img check -r all repairs.
      const q = p('lazy.qcow2');
      expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', q, '1M']).status).toBe(0);
      spawnSync('qemu-io', ['-c', 'write 0 64k', '-c', 'sigraise 9', q]);
      const theirs = qemuImgAsBlk(['check', '-r', 'all', q]);
      expect(theirs.code).toBe(0);
      expect(theirs.stdout.startsWith(`${REPORT(0, 1)}No errors were found on the image.\n`)).toBe(true);
      const ours = blk(['check', '-r', 'all', damaged('qemu-like.cow')]);
      expect(ours.stdout.startsWith(`${REPORT(7, 6)}No errors were found on the image.\n`)).toBe(true);
    },
  );

  it('bytes past the data area are leaked clusters; -r leaks truncates them away', () => {
    rawFile(p('base.img'), 1 << 20);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('base.img'), p('t.cow')]).code).toBe(0);
    const end = fs.statSync(p('t.cow')).size; // a v3 file spans its data area
    fs.appendFileSync(p('t.cow'), Buffer.alloc(1000, 0x77));
    let r = blk(['check', p('t.cow')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(`Leaked: 1000 bytes past the end of the data area (offset ${end}), which nothing reads\n`);
    expect(r.stdout).toContain('2 leaked clusters were found on the image.');
    r = blk(['check', '-r', 'leaks', p('t.cow')]);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith(REPORT(2, 0))).toBe(true);
    expect(fs.statSync(p('t.cow')).size).toBe(end);
  });

  it('what -r cannot repair is said: a changed backing file, a bad header', () => {
    rawFile(p('b2.img'), 1 << 20);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('b2.img'), p('u.cow')]).code).toBe(0);
    fs.utimesSync(p('b2.img'), new Date(), new Date(Date.now() + 100_000));
    let r = blk(['check', '-r', 'all', p('u.cow')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /ERROR backing file .*: mtime \d+ differs from \d+ recorded in the image .*\(not repaired: the backing file is not part of this image; restore it, or point the image at the right one with blk rebase -u\)\n$/,
    );
    // A v3 header (big-endian magic) cut after 64 bytes.
    const head = Buffer.alloc(64);
    head.write('OOOM', 0, 'latin1');
    head.writeUInt32BE(3, 4);
    fs.writeFileSync(p('h.cow'), head);
    r = blk(['check', '-r', 'all', '-f', 'cow', p('h.cow')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^ERROR header: .*\(not repairable: the file ends inside its header or bitmap, and what the missing bytes said cannot be known\)\n$/,
    );
  });

  it("usage: qemu-img's words for a bad -r; raw has nothing to check (63)", () => {
    rawFile(p('r.img'), 4096);
    expect(blk(['check', '-r', 'foo', p('r.img')])).toMatchObject({
      code: 1,
      stderr: "blk: Unknown option value for -r (expecting 'leaks' or 'all'): foo\n",
    });
    expect(blk(['check', '-r', 'all', '-f', 'raw', p('r.img')])).toMatchObject({
      code: 63,
      stderr: `blk: ${p('r.img')}: This image format does not support checks\n`,
    });
  });
});
