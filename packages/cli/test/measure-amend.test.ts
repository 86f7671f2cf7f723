/** blk measure and blk amend: qemu-img's commands, side by side with qemu-img where it knows the format. */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { blk, hasCommand, qemuImgAsBlk, rawFile, scratchDir } from './helpers.js';

const HAVE_QEMU = hasCommand('qemu-img');
if (!HAVE_QEMU)
  console.warn('measure-amend.test.ts: qemu-img is not installed; the side-by-side comparisons are skipped');

const scratch = scratchDir('measure');
const { p } = scratch;
const KiB = 1024;
const MiB = 1 << 20;

/** `required size: N` of a human measure output. */
function required(stdout: string): number {
  return Number(/^required size: (\d+)$/m.exec(stdout)?.[1]);
}

describe('blk measure', () => {
  it.skipIf(!HAVE_QEMU)('raw: the same output and exit code as qemu-img (qemu-img installed)', () => {
    rawFile(p('m.img'), 2025, [[0, 100, 7]]);
    const cases: string[][] = [
      ['--size', '1G'],
      ['--size', '1000', '-O', 'raw'],
      ['--output=json', '--size', '1G'],
      ['-f', 'raw', p('m.img')],
      ['--output=json', '-f', 'raw', p('m.img')],
      ['--size', '1G', '-o', 'preallocation=full'],
      [],
      ['--size', '1G', p('m.img')],
    ];
    for (const args of cases) {
      const ours = blk(['measure', ...args]);
      const theirs = qemuImgAsBlk(['measure', ...args]);
      const label = `measure ${args.join(' ')}`;
      expect(ours, label).toMatchObject({ code: theirs.code, stdout: theirs.stdout, stderr: theirs.stderr });
    }
  });

  it('cow: header and bitmap up to the data offset, plus the data the copy would hold', () => {
    // An empty v3 image of 1 GiB: bitmap at 8192, 256 KiB of bitmap, data at 270336.
    let r = blk(['measure', '-O', 'cow', '-o', 'version=3', '--size', '1G']);
    expect(r).toMatchObject({
      code: 0,
      stdout: `required size: 270336\nfully allocated size: ${270336 + 1024 * MiB}\n`,
    });
    // QEMU's layout (what convert -O cow writes without -B): bitmap right after the 1056-byte header, data aligned to 512.
    for (const o of [['-o', 'version=2'], []]) {
      r = blk(['measure', '-O', 'cow', ...o, '--output=json', '--size', '1G']);
      expect(JSON.parse(r.stdout)).toEqual({ required: 263680, 'fully-allocated': 263680 + 1024 * MiB });
    }
    r = blk(['measure', '-O', 'cow', '-o', 'version=3,preallocation=full', '--size', '1G']);
    expect(required(r.stdout)).toBe(270336 + 1024 * MiB);

    // A source with data in two runs (one partial sector) and a backing file under it.
    rawFile(p('base.img'), 4 * MiB);
    expect(blk(['io', '-f', 'raw', '-c', 'write -P 1 0 64k', p('base.img')]).code).toBe(0);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('base.img'), p('top.cow')]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 2 2M 1000', p('top.cow')]).code).toBe(0);
    r = blk(['measure', '-O', 'cow', '-o', 'version=3', p('top.cow')]);
    // 12288 of header and bitmap, 64 KiB from the base, 1024 bytes (two sectors) from the overlay.
    expect(r).toMatchObject({
      code: 0,
      stdout: `required size: ${12288 + 64 * KiB + 1024}\nfully allocated size: ${12288 + 4 * MiB}\n`,
    });
    // A copy to raw takes the whole disk, as QEMU's raw_measure says.
    expect(blk(['measure', p('top.cow')]).stdout).toBe(`required size: ${4 * MiB}\nfully allocated size: ${4 * MiB}\n`);
    // The numbers hold: a real copy fits in what measure said, give or take the file system's
    // rounding of each of the three runs (header and bitmap, 64 KiB, one sector) to its blocks.
    expect(blk(['convert', '-O', 'cow', '-o', 'version=2', p('top.cow'), p('copy.cow')]).code).toBe(0);
    const measured = required(blk(['measure', '-O', 'cow', '-o', 'version=2', p('top.cow')]).stdout);
    expect(measured).toBe(2560 + 64 * KiB + 1024);
    expect(fs.statSync(p('copy.cow')).blocks * 512).toBeLessThanOrEqual(measured + 3 * 4096);
  });

  it('refuses what it cannot measure, in one line', () => {
    expect(blk(['measure', '--size', '1G', '-o', 'foo=bar'])).toMatchObject({
      code: 1,
      stderr: "blk: format raw does not support option 'foo'\n",
    });
    expect(blk(['measure', '-O', 'cow', '-o', 'foo=bar', '--size', '1G']).stderr).toMatch(/unknown cow option 'foo'/);
    expect(blk(['measure', '-O', 'raw', '-o', 'preallocation=metadata', '--size', '1G'])).toMatchObject({
      code: 1,
      stderr: 'blk: Unsupported preallocation mode: metadata\n',
    });
    expect(blk(['measure', '-O', 'vmdk', '--size', '1G']).stderr).toMatch(/unknown format 'vmdk'/);
    // qcow2 measures since issue 13 (its numbers are judged against qemu-img in packages/qcow2/test).
    expect(blk(['measure', '-O', 'qcow2', '-o', 'foo=bar', '--size', '1G']).stderr).toMatch(/Invalid parameter 'foo'/);
  });
});

describe('blk amend', () => {
  it.skipIf(!HAVE_QEMU)("raw: qemu-img's refusals, word for word (qemu-img installed)", () => {
    rawFile(p('a.img'), MiB);
    for (const args of [
      ['-f', 'raw', '-o', 'size=2M'],
      ['-f', 'raw'],
      ['-f', 'raw', '-o', 'help'],
      ['-f', 'raw', '-o', 'foo=bar'],
    ]) {
      const ours = blk(['amend', ...args, p('a.img')]);
      const theirs = qemuImgAsBlk(['amend', ...args, p('a.img')]);
      expect(ours.code, args.join(' ')).toBe(theirs.code);
      // qemu-img adds "Try 'qemu-img --help'" after usage errors; the first line is the message.
      expect(ours.stderr.split('\n')[0], args.join(' ')).toBe(theirs.stderr.split('\n')[0]);
    }
    expect(fs.statSync(p('a.img')).size).toBe(MiB);
  });

  it('cow: size= grows in place; the backing file and the layout options only keep their values', () => {
    expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', p('q.cow'), '1M']).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 5 0 4k', p('q.cow')]).code).toBe(0);
    expect(blk(['amend', '-o', 'size=1.5M', p('q.cow')])).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(blk(['info', '--output=json', p('q.cow')]).stdout).toContain('"virtual-size": 1572864');
    expect(blk(['io', '-c', 'read -P 5 0 4k', '-c', 'read -P 0 1M 512k', p('q.cow')]).stdout).not.toMatch(
      /verification failed/,
    );
    // The current values are accepted and change nothing (as QEMU).
    const before = fs.readFileSync(p('q.cow'));
    expect(blk(['amend', '-o', 'version=2,variant=v2-qemu-lp64,size=1572864', p('q.cow')]).code).toBe(0);
    expect(fs.readFileSync(p('q.cow')).equals(before)).toBe(true);
    const refusals: Array<[string, RegExp]> = [
      ['size=1M', /shrinking from 1572864 to 1048576 bytes deletes data: use blk resize --shrink/],
      ['version=3', /cannot change version in place: it decides where the bitmap and the data lie/],
      ['backing_file=other.img', /Cannot amend the backing file; use blk rebase instead/],
      ['foo=1', /Invalid parameter 'foo'/],
      // Checked before anything is written: the valid size= does not happen either.
      ['size=1.75M,version=3', /cannot change version/],
    ];
    for (const [option, message] of refusals) {
      const r = blk(['amend', '-o', option, p('q.cow')]);
      expect(r.code, option).toBe(1);
      expect(r.stderr, option).toMatch(message);
      expect(fs.readFileSync(p('q.cow')).equals(before), option).toBe(true);
    }
    expect(blk(['amend', '-o', 'help', p('q.cow')]).stdout).toMatch(/^Amend options for 'cow':\n {2}size=<size>/);
  });
});
