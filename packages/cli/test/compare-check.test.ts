/** blk compare (exit 0/1/2) and blk check (exit 0/1/2/3/63). */
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { blk, BLK, hasCommand, rawFile, scratchDir, shellQuote, underPty } from './helpers.js';

const scratch = scratchDir('compare');
const { p } = scratch;
const MiB = 1 << 20;

describe('blk compare', () => {
  it('identical contents: exit 0, whatever the formats', () => {
    rawFile(p('a.img'), MiB, [[4096, 4096, 7]]);
    expect(blk(['convert', '-O', 'cow', '-o', 'version=2', p('a.img'), p('a.cow')]).code).toBe(0);
    const r = blk(['compare', p('a.img'), p('a.cow')]);
    expect(r).toMatchObject({ code: 0, stdout: 'Images are identical.\n', stderr: '' });
    expect(blk(['compare', '-f', 'raw', '-F', 'cow', p('a.img'), p('a.cow')]).code).toBe(0);
  });

  it("different contents: exit 1 and the first differing sector's offset (as qemu-img)", () => {
    rawFile(p('b.img'), MiB, [
      [4096, 4096, 7],
      [5000, 1, 8],
    ]);
    const r = blk(['compare', p('a.img'), p('b.img')]);
    expect(r).toMatchObject({ code: 1, stdout: 'Content mismatch at offset 4608!\n', stderr: '' });
    // Also where one side reads as zeros.
    rawFile(p('c.img'), MiB);
    expect(blk(['convert', '-O', 'cow', '-o', 'version=2', p('c.img'), p('c.cow')]).code).toBe(0);
    expect(blk(['compare', p('c.cow'), p('a.img')]).stdout).toBe('Content mismatch at offset 4096!\n');
    expect(blk(['compare', '-q', p('a.img'), p('b.img')])).toMatchObject({ code: 1, stdout: '' });
  });

  it('sizes may differ when the larger tail reads as zeros, unless -s', () => {
    rawFile(p('short.img'), MiB, [[0, 512, 1]]);
    rawFile(p('long.img'), 2 * MiB, [[0, 512, 1]]);
    let r = blk(['compare', p('short.img'), p('long.img')]);
    expect(r).toMatchObject({ code: 0, stdout: 'Warning: Image size mismatch!\nImages are identical.\n' });
    r = blk(['compare', '-s', p('short.img'), p('long.img')]);
    expect(r).toMatchObject({ code: 1, stdout: 'Strict mode: Image size mismatch!\n' });
    rawFile(p('long2.img'), 2 * MiB, [
      [0, 512, 1],
      [MiB + 1000, 1, 9],
    ]);
    r = blk(['compare', p('long2.img'), p('short.img')]);
    expect(r).toMatchObject({
      code: 1,
      stdout: `Warning: Image size mismatch!\nContent mismatch at offset ${MiB + 512}!\n`,
    });
  });

  it('-s also compares allocation', () => {
    // Same contents, but the cow image holds nothing where the raw image has (zero) data.
    const r = blk(['compare', '-s', p('c.cow'), p('c.img')]);
    expect(r).toMatchObject({ code: 1, stdout: 'Strict mode: Offset 0 block status mismatch!\n' });
  });

  it('errors exit 2, usage errors included', () => {
    let r = blk(['compare', p('a.img'), p('nope.img')]);
    expect(r).toMatchObject({ code: 2, stdout: '' });
    expect(r.stderr).toBe(`blk: ${p('nope.img')}: no such file or directory\n`);
    r = blk(['compare', p('a.img')]);
    expect(r.code).toBe(2);
    r = blk(['compare', '--bogus', p('a.img'), p('a.img')]);
    expect(r.code).toBe(2);
  });

  it('progress only on a terminal', () => {
    expect(blk(['compare', '-p', p('a.img'), p('a.cow')]).stdout).toBe('Images are identical.\n');
    if (!hasCommand('script')) {
      console.warn('SKIP progress on a terminal: util-linux `script` is not installed');
      return;
    }
    const r = underPty(`${shellQuote(process.execPath)} ${shellQuote(BLK)} compare -p a.img a.cow`, scratch.dir);
    expect(r.stdout).toContain('(100.00/100%)');
    expect(r.stdout).toMatch(/Images are identical\.\r?\n$/);
  });

  it.skipIf(!hasCommand('qemu-img'))('agrees with qemu-img compare on raw images (qemu-img installed)', () => {
    for (const [x, y] of [
      ['a.img', 'b.img'],
      ['short.img', 'long.img'],
      ['long2.img', 'short.img'],
      ['a.img', 'a.img'],
    ]) {
      const ours = blk(['compare', x!, y!], { cwd: scratch.dir });
      const theirs = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', x!, y!], {
        cwd: scratch.dir,
        encoding: 'utf8',
      });
      expect([ours.code, ours.stdout]).toEqual([theirs.status, theirs.stdout]);
    }
  });
});

describe('blk check', () => {
  function overlay(name: string): { base: string; ovl: string } {
    const base = p(`${name}.base`);
    const ovl = p(`${name}.cow`);
    rawFile(base, MiB);
    expect(blk(['create', '-q', '-f', 'cow', '-b', base, ovl]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 1 0 64k', '-c', 'write -P 2 512k 4k', ovl]).code).toBe(0);
    return { base, ovl };
  }

  it("a sound overlay: exit 0, counts in sectors, JSON in qemu-img's shape", () => {
    const { ovl } = overlay('ok');
    let r = blk(['check', ovl]);
    expect(r).toMatchObject({
      code: 0,
      stdout:
        'No errors were found on the image.\n136/2048 = 6.64% allocated, 0.00% fragmented, 0.00% compressed clusters\n',
      stderr: '',
    });
    r = blk(['check', '--output=json', ovl]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `{\n    "total-clusters": 2048,\n    "check-errors": 0,\n    "allocated-clusters": 136,\n`
        + `    "filename": "${ovl}",\n    "format": "cow"\n}\n`,
    );
  });

  it('data past the end of the file: corruptions counted, exit 2', () => {
    const { ovl } = overlay('trunc');
    // Cut the file inside the data of the 4k written at 512k (data offset 12288 for 1 MiB, v3).
    fs.truncateSync(ovl, 12288 + 512 * 1024 + 1024);
    const r = blk(['check', ovl]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'ERROR sectors 1026-1031 (offset 525312): marked allocated, but the data lies past the end of the file (537600 bytes)\n',
    );
    expect(r.stdout).toContain(
      '\n6 errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n',
    );
    const j = JSON.parse(blk(['check', '--output=json', ovl]).stdout) as Record<string, unknown>;
    expect(j).toMatchObject({ corruptions: 6, 'check-errors': 0 });
  });

  it('backing chain problems: missing, changed size or mtime', () => {
    const a = overlay('mt');
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(a.base, later, later);
    let r = blk(['check', a.ovl]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^ERROR backing file .*mt\.base \(of .*mt\.cow\): mtime \d+ differs from \d+ recorded in the image/,
    );
    const b = overlay('sz');
    fs.truncateSync(b.base, 2 * MiB);
    r = blk(['check', b.ovl]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`size ${2 * MiB} differs from ${MiB} recorded in the image`);
    const c = overlay('gone');
    fs.unlinkSync(c.base);
    r = blk(['check', '--output=json', c.ovl]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ERROR backing file .*gone\.base \(of .*gone\.cow\): not found\n$/);
    expect(JSON.parse(r.stdout)).toMatchObject({ corruptions: 1 });
  });

  it('a header the driver rejects is a corruption; raw cannot be checked (63); a missing file exits 1', () => {
    const bad = p('bad.cow');
    const { ovl } = overlay('hdr');
    const bytes = fs.readFileSync(ovl);
    bytes.writeUInt32BE(0, 20); // sector size 0
    fs.writeFileSync(bad, bytes);
    let r = blk(['check', '-f', 'cow', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ERROR header: /);
    rawFile(p('plain.img'), MiB);
    r = blk(['check', p('plain.img')]);
    expect(r).toMatchObject({
      code: 63,
      stdout: '',
      stderr: `blk: ${p('plain.img')}: This image format does not support checks\n`,
    });
    r = blk(['check', p('nothing.cow')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`blk: ${p('nothing.cow')}: no such file or directory\n`);
  });
});
