/** blk resize: qemu-img resize on raw (side by side with qemu-img) and in-place resizing of cow overlays. */
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { blk, hasCommand, qemuImgAsBlk, rawFile, scratchDir } from './helpers.js';

const HAVE_QEMU = hasCommand('qemu-img');
if (!HAVE_QEMU) console.warn('resize.test.ts: qemu-img is not installed; the side-by-side comparisons are skipped');

const scratch = scratchDir('resize');
const { p } = scratch;
const size = (file: string) => fs.statSync(file).size;
const KiB = 1024;
const MiB = 1 << 20;

describe('blk resize on raw images, side by side with qemu-img', () => {
  // Each step runs on a blk copy and a qemu-img copy of the same file; outputs, exit codes and sizes must agree.
  const steps: Array<{ args: string[]; stderrToo: boolean }> = [
    { args: ['2M'], stderrToo: true },
    { args: ['1M'], stderrToo: true }, // a shrink without --shrink: refused, two lines on stderr
    { args: ['-512K'], stderrToo: true }, // a leading - is a size, not an option
    { args: ['--shrink', '1000'], stderrToo: true }, // raw keeps byte sizes
    { args: ['+1001'], stderrToo: true }, // relative to the length in whole sectors: 1024 + 1001
    { args: ['2025'], stderrToo: true }, // the same size, but below the length in whole sectors: a shrink for qemu-img
    { args: ['--shrink', '2025'], stderrToo: true },
    { args: ['2048'], stderrToo: true },
    { args: ['2048'], stderrToo: true }, // the same size: nothing to do, still "Image resized."
    { args: ['-q', '1M'], stderrToo: true },
    { args: ['--preallocation=falloc', '3M'], stderrToo: true },
    { args: ['--preallocation=full', '4M'], stderrToo: true },
    { args: ['--preallocation=off', '5M'], stderrToo: true },
    { args: ['--preallocation=metadata', '6M'], stderrToo: false }, // qemu-img names no file
    { args: ['-10M'], stderrToo: true },
    { args: ['0'], stderrToo: true },
  ];

  it.skipIf(!HAVE_QEMU)('same output, exit code and file size as qemu-img at every step (qemu-img installed)', () => {
    rawFile(p('b.img'), MiB);
    rawFile(p('q.img'), MiB);
    for (const { args, stderrToo } of steps) {
      const ours = blk(['resize', '-f', 'raw', ...args.slice(0, -1), p('b.img'), args.at(-1)!]);
      const theirs = qemuImgAsBlk(['resize', '-f', 'raw', ...args.slice(0, -1), p('q.img'), args.at(-1)!]);
      const label = `resize ${args.join(' ')}`;
      expect(ours.code, label).toBe(theirs.code);
      expect(ours.stdout, label).toBe(theirs.stdout);
      if (stderrToo) expect(ours.stderr, label).toBe(theirs.stderr);
      else expect(ours.stderr, label).toMatch(/Unsupported preallocation mode: metadata\n$/);
      expect(size(p('b.img')), label).toBe(size(p('q.img')));
    }
  });

  it('grows and shrinks keeping the data before the cut; new space reads as zeros', () => {
    rawFile(p('d.img'), MiB, [
      [0, 4096, 0xab],
      [MiB - 512, 512, 0xcd],
    ]);
    expect(blk(['resize', '-f', 'raw', p('d.img'), '2M'])).toMatchObject({ code: 0, stdout: 'Image resized.\n' });
    let r = blk(['io', '-f', 'raw', '-c', 'read -P 0xcd 1048064 512', '-c', 'read -P 0 1M 1M', p('d.img')]);
    expect(r.stdout).not.toMatch(/Pattern verification failed/);
    expect(blk(['resize', '-f', 'raw', '--shrink', p('d.img'), '4k']).code).toBe(0);
    expect(size(p('d.img'))).toBe(4096);
    r = blk(['io', '-f', 'raw', '-c', 'read -P 0xab 0 4k', p('d.img')]);
    expect(r.stdout).not.toMatch(/Pattern verification failed/);
  });

  it('--preallocation=falloc and full allocate the new space; off leaves a hole', () => {
    rawFile(p('pa.img'), 0);
    expect(blk(['resize', '-f', 'raw', '--preallocation=off', p('pa.img'), '4M']).code).toBe(0);
    expect(fs.statSync(p('pa.img')).blocks * 512).toBeLessThan(64 * KiB);
    expect(blk(['resize', '-f', 'raw', '--preallocation=falloc', p('pa.img'), '8M']).code).toBe(0);
    expect(fs.statSync(p('pa.img')).blocks * 512).toBeGreaterThanOrEqual(4 * MiB);
    expect(blk(['resize', '-f', 'raw', '--preallocation=full', p('pa.img'), '12M']).code).toBe(0);
    expect(fs.statSync(p('pa.img')).blocks * 512).toBeGreaterThanOrEqual(8 * MiB);
    expect(size(p('pa.img'))).toBe(12 * MiB);
  });

  it('bad arguments: one line, exit 1, file untouched', () => {
    rawFile(p('u.img'), MiB);
    expect(blk(['resize', '-f', 'raw', '--preallocation=bogus', p('u.img'), '2M'])).toMatchObject({
      code: 1,
      stderr: "blk: Invalid preallocation mode 'bogus' (expected off, metadata, falloc or full)\n",
    });
    expect(blk(['resize', '-f', 'raw', p('u.img'), 'abc']).code).toBe(1);
    expect(blk(['resize', '-f', 'raw', p('u.img')])).toMatchObject({
      code: 1,
      stderr: "blk: missing required argument 'size'\n",
    });
    expect(blk(['resize', p('nope.img'), '1M']).code).toBe(1);
    expect(size(p('u.img'))).toBe(MiB);
  });
});

describe('blk resize on cow images', () => {
  it('a QEMU-layout (v2) image grows and shrinks in place while its bitmap fits before the data', () => {
    expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', p('q.cow'), '1M']).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0xab 0 1M', p('q.cow')]).code).toBe(0);
    expect(blk(['resize', p('q.cow'), '1.5M'])).toMatchObject({ code: 0, stdout: 'Image resized.\n', stderr: '' });
    expect(blk(['check', p('q.cow')]).code).toBe(0);
    let r = blk(['io', '-c', 'read -P 0xab 0 1M', '-c', 'read -P 0 1M 512k', p('q.cow')]);
    expect(r.stdout).not.toMatch(/verification failed/);
    // Shrink, then grow again: the dropped sectors must not come back allocated.
    expect(blk(['resize', '--shrink', p('q.cow'), '512k']).code).toBe(0);
    expect(blk(['resize', p('q.cow'), '1M']).code).toBe(0);
    r = blk(['io', '-c', 'read -P 0xab 0 512k', '-c', 'read -P 0 512k 512k', '-c', 'alloc 512k 512k', p('q.cow')]);
    expect(r.stdout).not.toMatch(/verification failed/);
    expect(r.stdout).toContain('0/524288 bytes allocated at offset 512 KiB');
    expect(blk(['check', p('q.cow')]).code).toBe(0);
  });

  it('refuses a size that would move the data area, naming the sizes it can take; the image is unchanged', () => {
    expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', p('m.cow'), '1M']).code).toBe(0);
    const before = fs.readFileSync(p('m.cow'));
    const r = blk(['resize', p('m.cow'), '4M']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `blk: ${p('m.cow')}: format 'cow' cannot resize this v2-qemu-lp64 image to 4194304 bytes in place: `
        + 'its bitmap would need 1024 bytes and the data area would move from offset 1536 to 2560 (in place it can take 512 to '
        + `1966080 bytes); resize a copy instead (blk convert -O raw ${p('m.cow')} COPY, then blk resize COPY 4194304)\n`,
    );
    expect(fs.readFileSync(p('m.cow')).equals(before)).toBe(true);
    // The upper bound it names does work.
    expect(blk(['resize', p('m.cow'), '1966080']).code).toBe(0);
    expect(blk(['resize', p('m.cow'), '1966592']).code).toBe(1);
  });

  it('a v3 overlay takes a new size only once its backing file has it (UML checks the pair)', () => {
    rawFile(p('base.img'), 500 * KiB, [[0, 512, 0x11]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('base.img'), p('v3.cow')]).code).toBe(0);
    let r = blk(['resize', p('v3.cow'), '1M']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the backing file is 512000 bytes, so resize it to 1048576 bytes first');
    expect(blk(['resize', '-f', 'raw', p('base.img'), '1M']).code).toBe(0);
    expect(blk(['resize', p('v3.cow'), '1M'])).toMatchObject({ code: 0, stdout: 'Image resized.\n' });
    // The backing file's mtime changed with its size: record it, then the pair opens again.
    expect(blk(['rebase', '-u', '-b', p('base.img'), p('v3.cow')]).code).toBe(0);
    r = blk(['io', '-c', 'read -P 0x11 0 512', '-c', 'read -P 0 512000 536576', p('v3.cow')]);
    expect(r.stdout).not.toMatch(/verification failed/);
    expect(r.code).toBe(0);
    expect(fs.statSync(p('v3.cow')).size).toBe(12288 + MiB); // UML's files span the data area
    expect(blk(['check', p('v3.cow')]).code).toBe(0);
    // A size that is not whole sectors: qemu's words for qcow2.
    r = blk(['resize', '--shrink', p('v3.cow'), '1000']);
    expect(r.stderr).toMatch(/The new size must be a multiple of 512 \(not 1000\)\n$/);
  });

  it.skipIf(!hasCommand('uml_moo'))('a grown v3 overlay stays readable by uml_moo (uml-utilities installed)', () => {
    rawFile(p('ub.img'), 256 * KiB, [[0, 4096, 0x21]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('ub.img'), p('u.cow')]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0x42 64k 4k', p('u.cow')]).code).toBe(0);
    expect(blk(['resize', '-f', 'raw', p('ub.img'), '512k']).code).toBe(0);
    expect(blk(['resize', p('u.cow'), '512k']).code).toBe(0);
    expect(blk(['rebase', '-u', '-b', p('ub.img'), p('u.cow')]).code).toBe(0);
    const moo = spawnSync('uml_moo', [p('u.cow'), p('merged.img')], { encoding: 'utf8' });
    expect(moo.status, moo.stderr).toBe(0);
    expect(size(p('merged.img'))).toBe(512 * KiB);
    const merged = fs.readFileSync(p('merged.img'));
    expect(merged[0]).toBe(0x21);
    expect(merged[64 * KiB]).toBe(0x42);
    expect(merged.subarray(300 * KiB).every((b) => b === 0)).toBe(true);
  });
});

describe('blk resize of an overlay over a longer backing file', () => {
  it.skipIf(!HAVE_QEMU)(
    "the grown part reads as zeros, not the backing file's data, as qemu-img resize of a qcow2 overlay does",
    () => {
      rawFile(p('long.img'), MiB, [[0, MiB, 0x5e]]);
      expect(
        blk([
          'create',
          '-q',
          '-f',
          'cow',
          '-o',
          'variant=v2-qemu-lp64',
          '-b',
          p('long.img'),
          '-F',
          'raw',
          p('short.cow'),
          '512K',
        ]).code,
      ).toBe(0);
      expect(blk(['io', '-c', 'write -P 0x33 0 512k', p('short.cow')]).code).toBe(0);
      // A shrink, then a grow: neither the backing file's data nor the data cut off may show again.
      expect(blk(['resize', '--shrink', p('short.cow'), '256K']).code).toBe(0);
      expect(blk(['resize', p('short.cow'), '1M']).code).toBe(0);
      const r = blk(['io', '-c', 'read -P 0x33 0 256k', '-c', 'read -P 0 256k 768k', p('short.cow')]);
      expect(r.stdout).not.toMatch(/verification failed/);
      expect(r.code).toBe(0);
      expect(blk(['check', p('short.cow')]).code).toBe(0);
      // qemu-img on qcow2 does the same.
      const q = p('short.qcow2');
      expect(
        spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', p('long.img'), '-F', 'raw', q, '512K']).status,
      ).toBe(0);
      expect(spawnSync('qemu-img', ['resize', q, '1M']).status).toBe(0);
      expect(spawnSync('qemu-io', ['-c', 'read -P 0 512k 512k', q], { encoding: 'utf8' }).stdout).not.toMatch(
        /verification failed/,
      );
    },
  );
});
