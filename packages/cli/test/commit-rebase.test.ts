/** blk commit and blk rebase: data lands where it should, and interruptions are recoverable. */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  alternatingExpected,
  alternatingOverlay,
  blk,
  blkSpawn,
  exited,
  expectSameImages,
  rawFile,
  scratchDir,
  waitFor,
} from './helpers.js';

const scratch = scratchDir('commit');
const { p } = scratch;
const MiB = 1 << 20;

const same = expectSameImages;

function layer0(image: string): number {
  const entries = JSON.parse(blk(['map', '--output=json', image]).stdout) as Array<{ depth: number; length: number }>;
  return entries.filter((e) => e.depth === 0).reduce((n, e) => n + e.length, 0);
}

function overlayOn(name: string, base: string): string {
  const ovl = p(`${name}.cow`);
  const r = blk(['create', '-q', '-f', 'cow', '-b', base, ovl]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return ovl;
}

describe('blk commit', () => {
  it('writes the overlay into its backing file, empties the overlay, and the overlay still opens', () => {
    rawFile(p('c1.img'), 4 * MiB, [[0, 4 * MiB, 0x11]]);
    const ovl = overlayOn('c1', p('c1.img'));
    expect(blk(['io', '-c', 'write -P 0x22 512 1k', '-c', 'write -P 0x33 1M 1M', ovl]).code).toBe(0);
    expect(blk(['convert', ovl, p('c1.expected')]).code).toBe(0);
    const r = blk(['commit', ovl]);
    expect(r).toMatchObject({ code: 0, stdout: 'Image committed.\n', stderr: '' });
    same(p('c1.img'), p('c1.expected'));
    same(ovl, p('c1.expected'));
    expect(layer0(ovl)).toBe(0);
    // The overlay recorded the backing file's new mtime: it opens, and check is clean.
    const info = JSON.parse(blk(['info', '--output=json', ovl]).stdout) as {
      'format-specific': { data: Record<string, unknown> };
    };
    expect(info['format-specific'].data['backing-mtime-matches']).toBe(true);
    expect(blk(['check', ovl]).code).toBe(0);
  });

  it('-t unsafe commits the same data (several chunks in flight); a bad -t is an error', () => {
    rawFile(p('ct.img'), 24 * MiB, [[0, 24 * MiB, 0x11]]);
    const ovl = overlayOn('ct', p('ct.img'));
    expect(
      blk([
        'io',
        '-c',
        'write -P 0x22 512 1k',
        '-c',
        'write -P 0x33 1M 9M',
        '-c',
        'write -P 0x44 13M 300k',
        '-c',
        'write -P 0x55 17000k 5M',
        ovl,
      ]).code,
    ).toBe(0);
    expect(blk(['convert', ovl, p('ct.expected')]).code).toBe(0);
    const bad = blk(['commit', '-t', 'bogus', ovl]);
    expect(bad).toMatchObject({ code: 1, stdout: '' });
    expect(bad.stderr).toBe(
      "blk: invalid cache mode 'bogus': use one of writeback, unsafe, none, writethrough, directsync\n",
    );
    same(ovl, p('ct.expected'));
    expect(layer0(ovl)).toBeGreaterThan(0);
    const r = blk(['commit', '-t', 'unsafe', ovl]);
    expect(r).toMatchObject({ code: 0, stdout: 'Image committed.\n', stderr: '' });
    same(p('ct.img'), p('ct.expected'));
    same(ovl, p('ct.expected'));
    expect(layer0(ovl)).toBe(0);
    expect(blk(['check', ovl]).code).toBe(0);
  });

  it("-d keeps the overlay's data; -q prints nothing", () => {
    rawFile(p('c2.img'), MiB);
    const ovl = overlayOn('c2', p('c2.img'));
    expect(blk(['io', '-c', 'write -P 0x44 64k 64k', ovl]).code).toBe(0);
    const r = blk(['commit', '-d', '-q', ovl]);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(layer0(ovl)).toBe(65536);
    same(ovl, p('c2.img'));
    expect(blk(['io', '-f', 'raw', '-c', 'read -P 0x44 64k 64k', p('c2.img')]).stdout).not.toContain('failed');
  });

  it("refuses an image without a backing file, and a backing file modified behind the overlay's back", () => {
    rawFile(p('plain.img'), MiB);
    let r = blk(['commit', p('plain.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`blk: ${p('plain.img')}: the image has no backing file to commit into\n`);
    rawFile(p('c3.img'), MiB);
    const ovl = overlayOn('c3', p('c3.img'));
    expect(blk(['io', '-c', 'write -P 1 0 4k', ovl]).code).toBe(0);
    const later = new Date(Date.now() + 50_000);
    fs.utimesSync(p('c3.img'), later, later);
    r = blk(['commit', ovl]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^blk: .*c3\.cow: backing file .*c3\.img was modified after the overlay was made .*--force.*\n$/,
    );
    r = blk(['commit', '--force', ovl]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^blk: warning: /);
  });

  it("a raw backing file smaller than the overlay grows to the overlay's size first, as with qemu-img commit", () => {
    for (const [name, writes] of [
      ['g1', ['write -P 0x33 1536k 4k', 'write -P 0x44 0 4k']],
      ['g2', ['write -P 0x55 4k 4k']],
    ] as const) {
      rawFile(p(`${name}.img`), MiB, [[0, MiB, 0x11]]);
      // Only QEMU's v2 layout lets an overlay be larger than its backing file.
      expect(
        blk(['create', '-q', '-f', 'cow', '-o', 'variant=v2-qemu-lp64', '-b', p(`${name}.img`), p(`${name}.cow`), '2M'])
          .code,
      ).toBe(0);
      expect(blk(['io', ...writes.flatMap((w) => ['-c', w]), p(`${name}.cow`)]).code).toBe(0);
      expect(blk(['convert', p(`${name}.cow`), p(`${name}.expected`)]).code).toBe(0);
      const r = blk(['commit', p(`${name}.cow`)]);
      expect(r).toMatchObject({ code: 0, stdout: 'Image committed.\n' });
      expect(fs.statSync(p(`${name}.img`)).size).toBe(2 * MiB);
      same(p(`${name}.img`), p(`${name}.expected`));
      same(p(`${name}.cow`), p(`${name}.expected`));
      expect(blk(['check', p(`${name}.cow`)]).code).toBe(0);
    }
  });

  it('a backing file of a format that cannot grow is refused before anything is written', () => {
    rawFile(p('ng.img'), MiB, [[0, MiB, 0x11]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('ng.img'), p('ng-mid.cow')]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0x22 0 4k', p('ng-mid.cow')]).code).toBe(0);
    expect(
      blk([
        'create',
        '-q',
        '-f',
        'cow',
        '-o',
        'variant=v2-qemu-lp64',
        '-b',
        p('ng-mid.cow'),
        '-F',
        'cow',
        p('ng.cow'),
        '2M',
      ]).code,
    ).toBe(0);
    // QEMU's v2 header records no backing format: --backing-probe opens ng-mid.cow as the cow it is.
    expect(
      blk(['io', '--backing-probe', '-c', 'write -P 0x33 1536k 4k', '-c', 'write -P 0x44 8k 4k', p('ng.cow')]).code,
    ).toBe(0);
    const before = fs.readFileSync(p('ng-mid.cow'));
    const topBefore = fs.readFileSync(p('ng.cow'));
    const r = blk(['commit', '--backing-probe', p('ng.cow')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /holds data up to offset 1576960, past the end of its backing file .*ng-mid\.cow \(1048576 bytes\), which is cow and cannot grow/,
    );
    expect(fs.readFileSync(p('ng-mid.cow')).equals(before)).toBe(true);
    expect(fs.readFileSync(p('ng.cow')).equals(topBefore)).toBe(true); // not even marked "commit in progress"
  });

  it('progress on a pipe stays quiet', () => {
    rawFile(p('c4.img'), MiB);
    const ovl = overlayOn('c4', p('c4.img'));
    const w = blk(['io', '-c', 'write 0 64k', ovl]);
    expect(w.stderr).toBe('');
    expect(w.code).toBe(0);
    expect(blk(['commit', '-p', ovl]).stdout).toBe('Image committed.\n');
  });

  it('killed mid-way (SIGKILL): the overlay refuses normal use, check says why, a re-run finishes the commit', async () => {
    const size = 64 * MiB;
    const { base, overlay } = alternatingOverlay(scratch.dir, 'ck', size);
    alternatingExpected(p('ck.expected'), size);
    const before = fs.statSync(base).mtimeMs;
    const child = blkSpawn(['commit', overlay]);
    await waitFor(() => fs.statSync(base).mtimeMs !== before, 20_000, 'the commit to start writing');
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGKILL');
    const end = await exited(child);
    expect(end.signal).toBe('SIGKILL');
    // Part of the data is in the base; the overlay is marked as being committed.
    const mid = blk(['compare', base, p('ck.expected')]);
    expect(mid.code).toBe(1);
    const chk = blk(['check', overlay]);
    expect(chk.code).toBe(2);
    expect(chk.stderr).toContain(`a commit into it was interrupted; finish it with: blk commit ${overlay}`);
    // Opening it says the same (and not to accept the backing file with rebase -u, which would hide the half-done commit).
    const io = blk(['io', '-c', 'read 0 512', overlay]);
    expect(io.code).toBe(1);
    expect(io.stderr).toMatch(new RegExp(`a commit into it was interrupted; finish it with: blk commit ${overlay}\n$`));
    // Recovery: run it again.
    const again = blk(['commit', overlay]);
    expect(again).toMatchObject({ code: 0, stdout: 'Image committed.\n', stderr: '' });
    same(base, p('ck.expected'));
    same(overlay, p('ck.expected'));
    expect(layer0(overlay)).toBe(0);
    expect(blk(['check', overlay]).code).toBe(0);
    // And once more: nothing left to do, nothing breaks.
    expect(blk(['commit', overlay]).code).toBe(0);
    same(base, p('ck.expected'));
  });
});

describe('blk rebase', () => {
  function setup(name: string) {
    rawFile(p(`${name}-old.img`), MiB, [
      [0, 64 * 1024, 1],
      [128 * 1024, 64 * 1024, 2],
    ]);
    rawFile(p(`${name}-new.img`), MiB, [
      [0, 64 * 1024, 1],
      [256 * 1024, 64 * 1024, 3],
    ]);
    const ovl = overlayOn(name, p(`${name}-old.img`));
    expect(blk(['io', '-c', 'write -P 9 0 4k', '-c', 'write -P 8 128k 4k', ovl]).code).toBe(0);
    expect(blk(['convert', ovl, p(`${name}.expected`)]).code).toBe(0);
    return ovl;
  }

  it('safe mode copies what differs, so the contents stay the same over the new backing file', () => {
    const ovl = setup('r1');
    const before = layer0(ovl);
    const r = blk(['rebase', '-b', p('r1-new.img'), ovl]);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    same(ovl, p('r1.expected'));
    const info = JSON.parse(blk(['info', '--output=json', ovl]).stdout) as Record<string, unknown>;
    expect(info['backing-filename']).toBe(p('r1-new.img'));
    // Copied: the rest of the old 128k run (60k) and the new file's 256k run (64k, zeros in the old chain).
    expect(layer0(ovl)).toBe(before + 60 * 1024 + 64 * 1024);
    expect(blk(['check', ovl]).code).toBe(0);
  });

  it("-u only rewrites the reference (the contents change to the new file's)", () => {
    const ovl = setup('r2');
    const before = layer0(ovl);
    expect(blk(['rebase', '-u', '-b', 'r2-new.img', ovl], { cwd: scratch.dir }).code).toBe(0);
    expect(layer0(ovl)).toBe(before);
    expect(JSON.parse(blk(['info', '--output=json', ovl]).stdout)['backing-filename']).toBe(p('r2-new.img'));
    expect(blk(['compare', ovl, p('r2.expected')]).code).toBe(1);
    expect(blk(['io', '-c', 'read -P 3 256k 64k', ovl]).stdout).not.toContain('failed');
  });

  it('errors: missing new backing file, missing -b', () => {
    const ovl = setup('r3');
    let r = blk(['rebase', '-b', p('nope.img'), ovl]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`blk: ${ovl}: new backing file ${p('nope.img')} not found\n`);
    r = blk(['rebase', ovl]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("blk: required option '-b, --backing <file>' not specified\n");
    same(ovl, p('r3.expected'));
  });
});
