/**
 * What convert does to an existing DST, and which DSTs it refuses.
 *
 * qemu-img opens an existing target and truncates it in place (following
 * symlinks), so the file keeps its inode, mode, owner and links. blk writes a
 * temporary file and renames it over DST for crash safety; it must keep what
 * qemu-img keeps: the mode and owner are copied, a symlink is followed (the
 * temporary file goes beside its target), and a file with several links is
 * written in place. A DST that is one of the files the convert reads (the
 * source's chain, the -B chain), by any name, is refused; so is an image
 * named as its own backing file by rebase and create.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { blk, BLK, hasCommand, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('target');

const isRoot = process.getuid?.() === 0;

function fresh(): string {
  return fs.mkdtempSync(path.join(scratch.dir, 't-'));
}

/** A 2 MiB raw source whose first 4 KiB are 0x42. */
function source(sub: string): string {
  const src = path.join(sub, 'src.img');
  rawFile(src, 2 * 1024 * 1024, [[0, 4096, 0x42]]);
  return src;
}

function ok(args: string[]): void {
  const r = blk(args);
  expect(r.stderr, `blk ${args.join(' ')}`).toBe('');
  expect(r.code, `blk ${args.join(' ')}`).toBe(0);
}

function firstByte(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 0);
    return b[0]!;
  } finally {
    fs.closeSync(fd);
  }
}

describe('convert keeps what qemu-img keeps of an existing target', () => {
  it.skipIf(!isRoot)('a 0600 file owned by another user stays 0600 and theirs', () => {
    const sub = fresh();
    const dst = path.join(sub, 'theirs.img');
    rawFile(dst, 4096, [[0, 4096, 0x01]]);
    fs.chmodSync(dst, 0o600);
    fs.chownSync(dst, 1234, 4321);
    ok(['convert', source(sub), dst]);
    const st = fs.statSync(dst);
    expect(st.mode & 0o7777).toBe(0o600);
    expect([st.uid, st.gid]).toEqual([1234, 4321]);
    expect(firstByte(dst)).toBe(0x42);
  });

  it.skipIf(!isRoot)(
    'run by a user who may write the file but not give it away, convert writes it in place: the owner stays',
    () => {
      const sub = fresh();
      fs.chmodSync(scratch.dir, 0o755);
      fs.chmodSync(sub, 0o777);
      const dst = path.join(sub, 'shared.img');
      rawFile(dst, 4096, [[0, 4096, 0x01]]);
      fs.chownSync(dst, 1235, 1236);
      fs.chmodSync(dst, 0o666);
      const src = source(sub);
      const ino = fs.statSync(dst).ino;
      const r = spawnSync(process.execPath, [BLK, 'convert', src, dst], {
        uid: 1234,
        gid: 1234,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const st = fs.statSync(dst);
      expect([st.uid, st.gid, st.mode & 0o7777, st.ino]).toEqual([1235, 1236, 0o666, ino]);
      expect(firstByte(dst)).toBe(0x42);
      expect(fs.readdirSync(sub).filter((n) => n.includes('.tmp-'))).toEqual([]);
    },
  );

  it('a symlink stays a symlink; the file it names gets the image (the temporary file beside that file)', () => {
    const sub = fresh();
    const realDir = path.join(sub, 'real');
    fs.mkdirSync(realDir);
    const target = path.join(realDir, 'disk.img');
    rawFile(target, 4096, [[0, 4096, 0x01]]);
    fs.chmodSync(target, 0o640);
    const link = path.join(sub, 'link.img');
    fs.symlinkSync(target, link);
    ok(['convert', source(sub), link]);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(link)).toBe(target);
    expect(fs.statSync(target).size).toBe(2 * 1024 * 1024);
    expect(fs.statSync(target).mode & 0o7777).toBe(0o640);
    expect(firstByte(target)).toBe(0x42);
    expect(fs.readdirSync(sub).sort()).toEqual(['link.img', 'real', 'src.img']);
  });

  it('a file with two hard links is written in place: both names show the new image, one inode', () => {
    const sub = fresh();
    const dst = path.join(sub, 'a.img');
    const other = path.join(sub, 'b.img');
    rawFile(dst, 8 * 1024 * 1024, [[0, 8 * 1024 * 1024, 0x01]]);
    fs.linkSync(dst, other);
    const ino = fs.statSync(dst).ino;
    ok(['convert', source(sub), dst]);
    expect(fs.statSync(dst).ino).toBe(ino);
    expect(fs.statSync(other).ino).toBe(ino);
    expect(fs.statSync(other).nlink).toBe(2);
    // Truncated, then written: the old 0x01 bytes past the new image's data are gone.
    const bytes = fs.readFileSync(other);
    expect(bytes.length).toBe(2 * 1024 * 1024);
    expect(bytes[0]).toBe(0x42);
    expect(bytes.subarray(4096).every((b) => b === 0)).toBe(true);
  });

  it.skipIf(!hasCommand('qemu-img'))('qemu-img convert keeps the same things (the behaviour matched)', () => {
    const sub = fresh();
    const target = path.join(sub, 'disk.img');
    rawFile(target, 4096);
    fs.chmodSync(target, 0o600);
    const link = path.join(sub, 'link.img');
    fs.symlinkSync(target, link);
    const hard = path.join(sub, 'hard.img');
    fs.linkSync(target, hard);
    const ino = fs.statSync(target).ino;
    expect(spawnSync('qemu-img', ['convert', '-O', 'raw', source(sub), link]).status).toBe(0);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.statSync(target).ino).toBe(ino);
    expect(fs.statSync(hard).ino).toBe(ino);
    expect(fs.statSync(target).mode & 0o7777).toBe(0o600);
  });
});

describe('a target that is also read is refused, and nothing changes', () => {
  /** Runs blk and expects a refusal naming the problem; every file in `keep` keeps its bytes and inode. */
  function refused(args: string[], keep: string[], pattern: RegExp, env?: Record<string, string>): void {
    const before = keep.map((f) => [fs.readFileSync(f), fs.statSync(f).ino] as const);
    const r = blk(args, env ? { env } : {});
    expect(r.stderr, `blk ${args.join(' ')}`).toMatch(pattern);
    expect(r.code, `blk ${args.join(' ')}`).toBe(1);
    keep.forEach((f, i) => {
      expect(fs.readFileSync(f).equals(before[i]![0]), `${f} changed`).toBe(true);
      expect(fs.statSync(f).ino, `${f} replaced`).toBe(before[i]![1]);
    });
  }

  it('convert -O cow -B DST SRC DST (DST would become an overlay of itself)', () => {
    const sub = fresh();
    const src = source(sub);
    const dst = path.join(sub, 'dst.img');
    rawFile(dst, 2 * 1024 * 1024, [[0, 512, 0x07]]);
    refused(['convert', '-O', 'cow', '-B', dst, src, dst], [dst, src], /same file/);
    // By another name of DST too: a symlink and a hard link.
    fs.symlinkSync(dst, path.join(sub, 'sym.img'));
    fs.linkSync(dst, path.join(sub, 'hard.img'));
    refused(['convert', '-O', 'cow', '-B', path.join(sub, 'sym.img'), src, dst], [dst, src], /same file/);
    refused(['convert', '-O', 'cow', '-B', path.join(sub, 'hard.img'), src, dst], [dst, src], /same file/);
  });

  it("convert onto its own source, by a hard link, or onto a file of the source's backing chain", () => {
    const sub = fresh();
    const base = path.join(sub, 'base.img');
    rawFile(base, 1024 * 1024, [[0, 4096, 0x33]]);
    const overlay = path.join(sub, 'top.cow');
    ok(['create', '-q', '-f', 'cow', '-b', base, overlay]);
    const baseLink = path.join(sub, 'base-link.img');
    fs.linkSync(base, baseLink);
    refused(['convert', overlay, overlay], [overlay, base], /same file/);
    refused(['convert', overlay, base], [overlay, base], /same file/);
    refused(['convert', overlay, baseLink], [overlay, base], /same file/);
  });

  it('rebase -b SELF SELF, also through a hard link', () => {
    const sub = fresh();
    const base = path.join(sub, 'base.img');
    rawFile(base, 1024 * 1024);
    const overlay = path.join(sub, 'top.cow');
    ok(['create', '-q', '-f', 'cow', '-b', base, overlay]);
    const link = path.join(sub, 'top-link.cow');
    fs.linkSync(overlay, link);
    refused(['rebase', '-u', '-b', overlay, overlay], [overlay], /own backing file/);
    refused(['rebase', '-u', '-b', link, overlay], [overlay], /own backing file/);
    refused(['rebase', '-b', link, overlay], [overlay], /own backing file/);
    // Not by accident of the lock the first open took: also without OS locks.
    refused(['rebase', '-u', '-F', 'cow', '-b', link, overlay], [overlay], /own backing file/, { BLK_LOCK: 'off' });
  });

  it("create -b X X through a hard link, and create -b Y X where Y's chain holds X", () => {
    const sub = fresh();
    const x = path.join(sub, 'x.img');
    rawFile(x, 1024 * 1024, [[0, 4096, 0x44]]);
    const xLink = path.join(sub, 'x-link.img');
    fs.linkSync(x, xLink);
    refused(['create', '-q', '-f', 'cow', '-b', xLink, x], [x], /own backing file/);
    const y = path.join(sub, 'y.cow');
    ok(['create', '-q', '-f', 'cow', '-b', x, y]);
    refused(['create', '-q', '-f', 'cow', '-F', 'cow', '-b', y, xLink], [x, y], /own backing file/);
  });
});

describe('commit of a chain that loops back to the overlay', () => {
  it('is refused before anything is written, with or without OS locks (a hard link hides the loop from paths)', () => {
    const sub = fresh();
    const base = path.join(sub, 'base.img');
    rawFile(base, 1024 * 1024);
    const x = path.join(sub, 'x.cow');
    const top = path.join(sub, 'top.cow');
    ok(['create', '-q', '-f', 'cow', '-b', base, x]);
    ok(['create', '-q', '-f', 'cow', '-F', 'cow', '-b', x, top]);
    expect(blk(['io', '--backing-probe', '-c', 'write -P 0x55 0 4k', top]).code).toBe(0);
    // top.cow's backing file x.cow becomes top.cow itself.
    fs.rmSync(x);
    fs.linkSync(top, x);
    const before = fs.readFileSync(top);
    for (const env of [{}, { BLK_LOCK: 'off' }]) {
      const r = blk(['commit', '--force', top], { env });
      expect(r.stderr).toMatch(/is also the overlay being committed/);
      expect(r.stdout).toBe('');
      expect(r.code).toBe(1);
      expect(fs.readFileSync(top).equals(before)).toBe(true);
    }
  });
});

describe('dd plans its output as convert plans its target', () => {
  it('a FIFO, a directory and a block device are refused and stay what they were (dd renamed a regular file over them)', () => {
    const sub = fresh();
    const src = source(sub);
    const fifo = path.join(sub, 'pipe');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const r = blk(['dd', `if=${src}`, `of=${fifo}`]);
    expect(r.stderr).toContain('is a FIFO (named pipe)');
    expect(r.code).toBe(1);
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
    const d = path.join(sub, 'adir');
    fs.mkdirSync(d);
    expect(blk(['dd', `if=${src}`, `of=${d}`]).code).toBe(1);
    expect(fs.lstatSync(d).isDirectory()).toBe(true);
    if (isRoot) {
      // A block device node (no device behind it is opened: the plan refuses it first).
      const dev = path.join(sub, 'blockdev');
      expect(spawnSync('mknod', [dev, 'b', '7', '200']).status).toBe(0);
      const rd = blk(['dd', `if=${src}`, `of=${dev}`]);
      expect(rd.stderr).toContain('is a block device: dd writes only regular files');
      expect(rd.code).toBe(1);
      expect(fs.lstatSync(dev).isBlockDevice()).toBe(true);
    }
    expect(fs.readdirSync(sub).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('a symlink is written through, a replaced file keeps its mode, hard links stay one inode, the input itself is refused', () => {
    const sub = fresh();
    const src = source(sub);
    const file = path.join(sub, 'file.img');
    fs.writeFileSync(file, 'old');
    fs.chmodSync(file, 0o640);
    const link = path.join(sub, 'link.img');
    fs.symlinkSync('file.img', link);
    ok(['dd', `if=${src}`, `of=${link}`]);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(firstByte(file)).toBe(0x42);
    expect(fs.statSync(file).mode & 0o777).toBe(0o640);
    const second = path.join(sub, 'second.img');
    fs.linkSync(file, second);
    const ino = fs.statSync(file).ino;
    rawFile(src, 2 * 1024 * 1024, [[0, 4096, 0x43]]);
    ok(['dd', `if=${src}`, `of=${second}`]);
    expect(fs.statSync(second).ino).toBe(ino);
    expect(firstByte(file)).toBe(0x43);
    // The input by another name: refused, the input untouched.
    const before = fs.readFileSync(src);
    const alias = path.join(sub, 'alias.img');
    fs.linkSync(src, alias);
    const r = blk(['dd', `if=${src}`, `of=${alias}`]);
    expect(r.stderr).toContain('is also the input or one of its backing files');
    expect(r.code).toBe(1);
    expect(fs.readFileSync(src).equals(before)).toBe(true);
  });
});
