/**
 * Images from strangers, through the blk executable (issue 10): a header is
 * data from whoever made the image, so nothing in it may switch off a safety
 * check, name a file blk then writes into, or print bytes that take over the
 * terminal.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { backingPolicy } from '../src/jobs/common.js';
import { blk, hasCommand, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('untrusted');
// The tests run blk synchronously: let the worker's event loop answer vitest between them (on a loaded
// machine, back-to-back synchronous tests starve its RPC into a timeout).
beforeEach(
  () =>
    new Promise<void>((resolve) => {
      setTimeout(resolve, 0);
    }),
);
const { p } = scratch;
const MiB = 1 << 20;

/** v3 header fields (big-endian): mtime at 8, size at 12, backing path at 32. */
const V3 = { mtime: 8, size: 12, path: 32 };

function patch(file: string, offset: number, bytes: Uint8Array): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

function u32(value: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}

/** A v3 overlay over a raw base of 1 MiB of `baseByte`, holding 64 KiB of 0x77 at offset 0. */
function overlayWithData(name: string, baseByte = 0x11): { base: string; overlay: string } {
  const base = p(`${name}.raw`);
  const overlay = p(`${name}.cow`);
  rawFile(base, MiB, [[0, MiB, baseByte]]);
  expect(blk(['create', '-q', '-f', 'cow', '-b', base, overlay]).code).toBe(0);
  expect(blk(['io', '-c', 'write -P 0x77 0 64k', overlay]).code).toBe(0);
  return { base, overlay };
}

function snapshot(...files: string[]): Buffer[] {
  return files.map((f) => fs.readFileSync(f));
}

/** The files hold exactly the bytes of `before` (Buffer.equals: a deep toEqual of MiBs is slow). */
function unchanged(before: Buffer[], ...files: string[]): void {
  files.forEach((f, i) => {
    expect(fs.readFileSync(f).equals(before[i]!), `${f} changed`).toBe(true);
  });
}

function journalOf(overlay: string): string {
  return `${fs.realpathSync(overlay)}.blk-commit`;
}

describe("point 11: an image cannot switch off commit's safety checks", () => {
  it("a header that claims an interrupted commit (mtime 0) without blk's journal makes commit refuse, writing nothing", () => {
    const { base, overlay } = overlayWithData('fake-mark');
    patch(overlay, V3.mtime, u32(0));
    const before = snapshot(base, overlay);
    const r = blk(['commit', overlay]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /records backing mtime 0, the mark of an interrupted commit, but no commit journal of blk's .* names it .*--force/,
    );
    unchanged(before, base, overlay);
    // check does not advise running commit on such a header.
    const chk = blk(['check', overlay]);
    expect(chk.code).toBe(2);
    expect(chk.stderr).not.toContain("run 'blk commit' again");
    expect(chk.stderr).toContain('no commit journal');
  });

  it('a journal shipped with the image that does not name these very files (inodes) proves nothing', () => {
    const { base, overlay } = overlayWithData('forged-journal');
    patch(overlay, V3.mtime, u32(0));
    const forged = {
      blkCommitJournal: 1,
      overlay: { path: fs.realpathSync(overlay), ino: '1' },
      backing: { path: fs.realpathSync(base), ino: '2' },
      stored: base,
      size: MiB,
      mtimeSec: 0,
    };
    fs.writeFileSync(journalOf(overlay), `${JSON.stringify(forged)}\n`);
    const before = snapshot(base, overlay);
    expect(blk(['commit', overlay]).code).toBe(1);
    unchanged(before, base, overlay);
  });

  it("what an image's maker puts at the journal's name is neither followed (symlink) nor waited on (FIFO)", () => {
    const { base, overlay } = overlayWithData('journal-traps');
    const victim = p('journal-victim.txt');
    fs.writeFileSync(victim, 'precious\n');
    fs.symlinkSync(victim, journalOf(overlay));
    expect(blk(['commit', overlay])).toMatchObject({ code: 0, stdout: 'Image committed.\n' });
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(fs.existsSync(journalOf(overlay))).toBe(false);
    // With the mark: a FIFO at the journal's name would block a reader forever.
    expect(blk(['io', '-c', 'write -P 0x78 0 4k', overlay]).code).toBe(0);
    patch(overlay, V3.mtime, u32(0));
    expect(spawnSync('mkfifo', [journalOf(overlay)]).status).toBe(0);
    const before = snapshot(base, overlay);
    const r = blk(['commit', overlay], { timeout: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no commit journal');
    unchanged(before, base, overlay);
    expect(blk(['check', overlay], { timeout: 20_000 }).code).toBe(2);
  });

  it("a directory at the journal's name: commit refuses, says what stands there, and writes nothing", () => {
    const { base, overlay } = overlayWithData('journal-dir');
    fs.mkdirSync(journalOf(overlay));
    const before = snapshot(base, overlay);
    const r = blk(['commit', overlay]);
    expect(r.stderr).toBe(
      `blk: ${journalOf(overlay)}: stands where commit writes its journal and is not one blk can replace `
        + '(a directory?); move it away to commit\n',
    );
    expect(r.code).toBe(1);
    unchanged(before, base, overlay);
    expect(fs.statSync(journalOf(overlay)).isDirectory()).toBe(true);
  });

  it('a backing file of another size than the overlay records is refused, also with --force and the mark', () => {
    const { base, overlay } = overlayWithData('resized');
    const st = fs.statSync(base);
    fs.truncateSync(base, 2 * MiB);
    fs.utimesSync(base, st.atime, st.mtime); // the recorded mtime still matches
    for (const mark of [false, true]) {
      if (mark) patch(overlay, V3.mtime, u32(0));
      const before = snapshot(base, overlay);
      const r = blk(['commit', '--force', overlay]);
      expect(r.code, `mark ${mark}`).toBe(1);
      expect(r.stderr).toContain(`is ${2 * MiB} bytes, but the overlay records ${MiB}`);
      unchanged(before, base, overlay);
    }
  });

  it('a real commit leaves no journal behind, and an interrupted one is still finished by a re-run (journal present)', () => {
    const { base, overlay } = overlayWithData('real');
    expect(blk(['commit', overlay])).toMatchObject({ code: 0, stdout: 'Image committed.\n' });
    expect(fs.existsSync(journalOf(overlay))).toBe(false);
    expect(
      fs
        .readFileSync(base)
        .subarray(0, 65536)
        .every((b) => b === 0x77),
    ).toBe(true);
  });
});

describe('point 5: jobs open backing files as openImage does (no cow written over as raw)', () => {
  /** mid.cow (a v3 overlay holding data) under top.cow, a QEMU-layout overlay, which records no backing format. */
  function disguisedChain(name: string): { base: string; mid: string; top: string } {
    const { base, overlay: mid } = overlayWithData(`${name}-mid`);
    const top = p(`${name}-top.cow`);
    expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', '-b', mid, '-F', 'cow', top]).code).toBe(0);
    // Only with --backing-probe does the chain open mid.cow as the cow file it is.
    expect(blk(['io', '--backing-probe', '-c', 'write -P 0x99 128k 4k', top]).code).toBe(0);
    return { base, mid, top };
  }

  it('commit refuses to write into a cow backing file that would open as raw; the cow header stays', () => {
    const { base, mid, top } = disguisedChain('c5');
    const before = snapshot(base, mid, top);
    const r = blk(['commit', top]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('backing file looks like a cow image');
    unchanged(before, base, mid, top);
    // Named, it commits into the cow file properly.
    expect(blk(['commit', '--backing-probe', top]).code).toBe(0);
    expect(blk(['io', '-c', 'read -P 0x99 128k 4k', '-c', 'read -P 0x77 0 64k', mid]).code).toBe(0);
  });

  it('check, create -b, convert -B and rebase -b refuse it too instead of reading the header as disk data', () => {
    const { mid, top } = disguisedChain('o5');
    const chk = blk(['check', top]);
    expect(chk.code).toBe(2);
    expect(chk.stderr).toContain('looks like a cow image');
    const created = blk(['create', '-q', '-f', 'cow', '-o', 'version=2', '-b', mid, p('o5-new.cow')]);
    expect(created.code).toBe(1);
    expect(created.stderr).toContain('looks like a cow image');
    rawFile(p('o5-src.raw'), MiB);
    const converted = blk(['convert', '-O', 'cow', '-o', 'version=2', '-B', mid, p('o5-src.raw'), p('o5-out.cow')]);
    expect(converted.code).toBe(1);
    expect(converted.stderr).toContain('looks like a cow image');
    expect(fs.existsSync(p('o5-out.cow'))).toBe(false);
    const other = overlayWithData('o5-other').overlay;
    const rebased = blk(['rebase', '-b', mid, other]);
    expect(rebased.code).toBe(1);
    expect(rebased.stderr).toContain('looks like a cow image');
  });

  it('-F names only the first backing level: deeper levels keep the default rules (not "raw" by name)', () => {
    const format = backingPolicy({ backingFormat: 'cow' }).format as (
      ref: { path: string; format?: string },
      depth: number,
    ) => string | undefined;
    expect(format({ path: 'x' }, 1)).toBe('cow');
    expect(format({ path: 'x' }, 2)).toBeUndefined();
    expect(format({ path: 'x', format: 'raw' }, 2)).toBeUndefined();
  });
});

describe('point 9: a backing path that is not UTF-8 is never opened or rewritten under another name', () => {
  it('io and commit refuse it (they used to use the U+FFFD decoding: another file); info shows the bytes', () => {
    const sub = p('nonutf8');
    fs.mkdirSync(sub);
    const dirBytes = Buffer.from(`${sub}/`);
    const real = Buffer.concat([dirBytes, Buffer.from('base-'), Buffer.from([0xff]), Buffer.from('.img')]);
    const decoy = path.join(sub, 'base-\ufffd.img'); // what a lossy decoding names
    const placeholder = path.join(sub, 'base-XYZ.img'); // 'XYZ' is 3 bytes, like U+FFFD's UTF-8
    rawFile(placeholder, MiB, [[0, MiB, 0x11]]);
    const overlay = path.join(sub, 'top.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', 'base-XYZ.img', overlay]).code).toBe(0);
    // The stored path becomes base-\xff.img: 0xff, then two bytes of the name shift left.
    patch(
      overlay,
      V3.path,
      Buffer.concat([Buffer.from('base-'), Buffer.from([0xff]), Buffer.from('.img'), Buffer.alloc(2)]),
    );
    fs.copyFileSync(placeholder, real as unknown as string);
    rawFile(decoy, MiB, [[0, MiB, 0x22]]);
    const mtime = fs.statSync(placeholder).mtime;
    fs.utimesSync(real, mtime, mtime);
    fs.utimesSync(decoy, mtime, mtime);
    // Let the overlay hold data, written over the stored header by hand: sector 0 allocated with 0x77.
    const info = JSON.parse(blk(['info', '--output=json', overlay]).stdout) as {
      'format-specific': { data: Record<string, number> };
    };
    const d = info['format-specific'].data;
    patch(overlay, d['bitmap-offset']!, Uint8Array.of(0x01));
    patch(overlay, d['data-offset']!, new Uint8Array(512).fill(0x77));
    const before = snapshot(real as unknown as string, decoy, overlay);

    const read = blk(['io', '-c', 'read -P 0x22 512 512', overlay]);
    expect(read.code).toBe(1);
    expect(read.stderr).toContain('is not valid UTF-8');
    const commit = blk(['commit', overlay]);
    expect(commit.code).toBe(1);
    expect(commit.stderr).toContain('is not valid UTF-8');
    unchanged(before, real as unknown as string, decoy, overlay);

    const human = blk(['info', overlay]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('backing file: base-\\xff.img (not valid UTF-8: blk will not open it)');
    if (hasCommand('uml_moo')) {
      // UML's tools open the bytes: the file blk refuses to guess at is the real one.
      const merged = path.join(sub, 'merged.img');
      const r = spawnSync('uml_moo', [overlay, merged], { cwd: sub, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const out = fs.readFileSync(merged);
      expect(out[0]).toBe(0x77);
      expect(out[512]).toBe(0x11);
    }
  });
});

describe('point 10: the user confines or forbids backing files; info says what would be opened, without opening it', () => {
  function evil(name: string): { secret: string; overlay: string; inbox: string } {
    const inbox = p(`${name}-inbox`);
    const outside = p(`${name}-outside`);
    fs.mkdirSync(inbox);
    fs.mkdirSync(outside);
    const secret = path.join(outside, 'secret.raw');
    rawFile(secret, MiB, [[0, MiB, 0x5e]]);
    const overlay = path.join(inbox, 'evil.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', secret, overlay]).code).toBe(0);
    return { secret, overlay, inbox };
  }

  it('convert --backing-dir / --forbid-backing refuse an image naming a file elsewhere; nothing is written', () => {
    const { overlay, inbox } = evil('conf');
    const out = path.join(inbox, 'out.raw');
    for (const flags of [['--backing-dir', inbox], ['--forbid-backing']]) {
      const r = blk(['convert', ...flags, overlay, out]);
      expect(r.code, flags.join(' ')).toBe(1);
      expect(r.stderr).toMatch(
        flags[0] === '--forbid-backing' ? /backing files are forbidden/ : /outside the allowed directories/,
      );
      expect(fs.existsSync(out)).toBe(false);
    }
    // A symlink inside the allowed directory does not lead out of it.
    fs.symlinkSync(path.join(path.dirname(inbox), 'conf-outside', 'secret.raw'), path.join(inbox, 'link.raw'));
    const linked = path.join(inbox, 'linked.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', 'link.raw', linked]).code).toBe(0);
    const r = blk(['convert', '--backing-dir', inbox, linked, out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is a symlink leading out of the allowed directories');
    // Without a rule, it is followed (qemu-img's behaviour).
    expect(blk(['convert', overlay, out]).code).toBe(0);
  });

  it('commit, io, map and compare honour the rules too', () => {
    const { secret, overlay, inbox } = evil('cmds');
    const before = fs.readFileSync(secret);
    expect(blk(['io', '-c', 'write -P 1 0 4k', overlay]).code).toBe(0);
    for (const args of [['commit'], ['io', '-c', 'read 0 512'], ['map'], ['compare', overlay]]) {
      const r = blk([...args, '--backing-dir', inbox, overlay]);
      expect(r.code, args[0]).not.toBe(0);
      expect(r.stderr, args[0]).toContain('outside the allowed directories');
    }
    expect(fs.readFileSync(secret).equals(before)).toBe(true);
  });

  it('info shows the stored and resolved paths and whether the rules allow the backing file', () => {
    const { overlay, inbox } = evil('info');
    const human = blk(['info', '--backing-dir', inbox, overlay]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/backing file: .*secret\.raw/);
    expect(human.stdout).toMatch(
      /backing file allowed: no \(backing file .*secret\.raw lies outside the allowed directories/,
    );
    const json = JSON.parse(blk(['info', '--output=json', '--forbid-backing', overlay]).stdout) as Record<
      string,
      unknown
    >;
    expect(json['backing-allowed']).toBe(false);
    expect(String(json['backing-refusal'])).toContain('forbidden');
    const allowed = JSON.parse(
      blk(['info', '--output=json', '--backing-dir', path.dirname(inbox), overlay]).stdout,
    ) as Record<string, unknown>;
    expect(allowed['backing-allowed']).toBe(true);
  });

  it('info never opens the backing file: one that is a FIFO (opening it would wait forever) is still described', () => {
    // A backing file that is a FIFO: opening it for reading would wait for a writer forever.
    const fifoDir = p('fifo');
    fs.mkdirSync(fifoDir);
    const fifo = path.join(fifoDir, 'pipe.raw');
    rawFile(fifo, MiB);
    const ovl = path.join(fifoDir, 'over-fifo.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', fifo, ovl]).code).toBe(0);
    fs.rmSync(fifo);
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const r = blk(['info', ovl], { timeout: 15_000 });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`backing file: ${fifo}`);
  });
});

describe('point 10: the default rule, without flags: an image names only files its owner can read', () => {
  it.skipIf(process.getuid?.() !== 0)(
    'an image of another user naming a file that user cannot read is refused; --backing-dir allows it',
    () => {
      fs.chmodSync(scratch.dir, 0o755); // the owner can reach the files that are theirs to read
      const home = p('owner-home');
      const vault = p('owner-vault');
      fs.mkdirSync(home);
      fs.mkdirSync(vault, { mode: 0o755 });
      const secret = path.join(vault, 'secret.raw');
      rawFile(secret, MiB, [[0, MiB, 0x5e]]);
      fs.chmodSync(secret, 0o600); // root's alone
      const open = path.join(vault, 'open.raw');
      rawFile(open, MiB, [[0, MiB, 0x22]]);
      fs.chmodSync(open, 0o644);
      const overlay = path.join(home, 'upload.cow');
      const fine = path.join(home, 'fine.cow');
      expect(blk(['create', '-q', '-f', 'cow', '-b', secret, overlay]).code).toBe(0);
      expect(blk(['create', '-q', '-f', 'cow', '-b', open, fine]).code).toBe(0);
      fs.chownSync(overlay, 65534, 65534);
      fs.chownSync(fine, 65534, 65534);
      const out = path.join(home, 'out.raw');
      const r = blk(['convert', overlay, out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('the image belongs to uid 65534, who cannot read this file (owner 0, mode 600)');
      expect(fs.existsSync(out)).toBe(false);
      expect(blk(['info', overlay]).stdout).toMatch(
        /backing file allowed: no \(backing file .*secret\.raw: the image belongs to uid 65534/,
      );
      // A file the owner can read (world-readable) is fine; so is one the user allows explicitly.
      expect(blk(['convert', fine, out]).code).toBe(0);
      expect(blk(['convert', '--backing-dir', vault, overlay, out]).code).toBe(0);
      expect(fs.readFileSync(out)[0]).toBe(0x5e);
    },
  );

  it.skipIf(process.getuid?.() !== 0)(
    'a world-readable file in a directory the owner cannot enter is refused (and one the owner bits deny)',
    () => {
      fs.chmodSync(scratch.dir, 0o755);
      const home = p('locked-home');
      const locked = p('locked-dir');
      fs.mkdirSync(home);
      fs.mkdirSync(locked, { mode: 0o700 }); // root's alone: its files are out of other users' reach
      const notes = path.join(locked, 'notes.raw');
      rawFile(notes, MiB, [[0, MiB, 0x6b]]);
      fs.chmodSync(notes, 0o644);
      const overlay = path.join(home, 'reach.cow');
      expect(blk(['create', '-q', '-f', 'cow', '-b', notes, overlay]).code).toBe(0);
      fs.chownSync(overlay, 65534, 65534);
      const out = path.join(home, 'reach-out.raw');
      const r = blk(['convert', overlay, out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `the image belongs to uid 65534, who cannot read this file: directory ${fs.realpathSync(locked)} does not let them through (owner 0, mode 700)`,
      );
      expect(fs.existsSync(out)).toBe(false);
      // The same file reached through a symlink in an open directory: still refused (the real path counts).
      const link = path.join(home, 'link.raw');
      fs.symlinkSync(notes, link);
      const viaLink = path.join(home, 'via-link.cow');
      expect(blk(['create', '-q', '-f', 'cow', '-b', link, viaLink]).code).toBe(0);
      fs.chownSync(viaLink, 65534, 65534);
      expect(blk(['convert', viaLink, out]).code).toBe(1);
      expect(fs.existsSync(out)).toBe(false);
      // Owner bits deny the owner even when the others' bits allow everyone else (mode 004, owned by the image's owner).
      const mine = path.join(home, 'mine.raw');
      rawFile(mine, MiB, [[0, MiB, 0x6c]]);
      fs.chmodSync(mine, 0o004);
      fs.chownSync(mine, 65534, 65534);
      const own = path.join(home, 'own.cow');
      expect(blk(['create', '-q', '-f', 'cow', '-b', mine, own]).code).toBe(0);
      fs.chownSync(own, 65534, 65534);
      const r2 = blk(['convert', own, out]);
      expect(r2.stderr).toContain('who cannot read this file (owner 65534, mode 004)');
      expect(r2.code).toBe(1);
      // Opened up, the file is theirs to read.
      fs.chmodSync(locked, 0o711);
      expect(blk(['convert', overlay, out]).code).toBe(0);
      expect(fs.readFileSync(out)[0]).toBe(0x6b);
    },
  );
});

describe('point 13: hostile bytes in paths are escaped in errors and info', () => {
  it('a backing path with a newline and ESC sequences prints as one escaped line', () => {
    const sub = p('esc');
    fs.mkdirSync(sub);
    const name = 'evil\n\x1b[2J\x1b]0;pwned\x07.img';
    rawFile(path.join(sub, 'placeholder'), MiB);
    const overlay = path.join(sub, 'esc.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', 'placeholder', overlay]).code).toBe(0);
    patch(overlay, V3.path, Buffer.concat([Buffer.from(name), Buffer.alloc(1)]));
    const err = blk(['io', '-c', 'read 0 512', overlay]);
    expect(err.code).toBe(1);
    expect(err.stderr.split('\n')).toHaveLength(2); // one line and the final newline
    expect(err.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(err.stderr).toContain('evil\\n\\x1b[2J\\x1b]0;pwned\\x07.img');
    const info = blk(['info', overlay]);
    expect(info.code).toBe(0);
    expect(info.stdout).not.toMatch(/\x1b|\x07/);
    expect(info.stdout).toContain('backing file: evil\\n\\x1b[2J');
    const chk = blk(['check', overlay]);
    expect(chk.stderr).not.toMatch(/\x1b|\x07/);
    expect(chk.stderr).toContain('evil\\n\\x1b[2J');
  });
});
