/**
 * qemu-img/qemu-io habits (issue 11, points 3-6), through the built `blk`
 * and side by side with the real qemu-img/qemu-io 7.2 where they exist:
 * cow images without a backing file, sizes that are not whole sectors,
 * cow over cow (naming the backing format on every command), and -U.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { blk, BLK, filterQemuIo, hasCommand, type Result, scratchDir } from './helpers.js';

const hasQemu = hasCommand('qemu-img') && hasCommand('qemu-io');
const hasCc = hasCommand('cc');
const MiB = 1024 * 1024;

const scratch = scratchDir('habits');

const { p } = scratch;
const ok = (r: Result) => {
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
};
const infoJson = (args: string[]) => JSON.parse(ok(blk(['info', '--output=json', ...args]))) as Record<string, any>;
const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** The seed's cow_create (QEMU 2004, block-cow.c), verbatim but for the includes, built for this host (x86_64). */
const SEED_COW_CREATE = `
#include <endian.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define O_BINARY 0
#define O_LARGEFILE 0
#define cpu_to_be32 htobe32
#define cpu_to_be64 htobe64
#define COW_MAGIC 0x4f4f4f4d /* MOOO */
#define COW_VERSION 2
struct cow_header_v2 { uint32_t magic; uint32_t version; char backing_file[1024]; int32_t mtime; uint64_t size; uint32_t sectorsize; };
static int cow_create(const char *filename, int64_t image_sectors, const char *image_filename, int flags) {
  int fd, cow_fd; struct cow_header_v2 cow_header; struct stat st;
  if (flags) return -1;
  cow_fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_BINARY | O_LARGEFILE, 0644);
  if (cow_fd < 0) return -1;
  memset(&cow_header, 0, sizeof(cow_header));
  cow_header.magic = cpu_to_be32(COW_MAGIC);
  cow_header.version = cpu_to_be32(COW_VERSION);
  if (image_filename) {
    fd = open(image_filename, O_RDONLY | O_BINARY); if (fd < 0) { close(cow_fd); return -1; }
    if (fstat(fd, &st) != 0) { close(fd); return -1; } close(fd);
    cow_header.mtime = cpu_to_be32(st.st_mtime); realpath(image_filename, cow_header.backing_file);
  }
  cow_header.sectorsize = cpu_to_be32(512);
  cow_header.size = cpu_to_be64(image_sectors * 512);
  if (write(cow_fd, &cow_header, sizeof(cow_header)) != sizeof(cow_header)) return -1;
  if (ftruncate(cow_fd, sizeof(cow_header) + ((image_sectors + 7) >> 3)) != 0) return -1;
  close(cow_fd);
  return 0;
}
int main(int argc, char **argv) { return cow_create(argv[1], atoll(argv[2]) / 512, NULL, 0) ? 1 : 0; }
`;

describe('cow images without a backing file (point 3)', () => {
  it.skipIf(!hasCc)(
    "create -f cow FILE SIZE writes the bytes the seed's cow_create wrote (v2-qemu-lp64), and info shows it",
    () => {
      fs.writeFileSync(p('seed.c'), SEED_COW_CREATE);
      const cc = run('cc', ['-O0', '-o', p('seed-create'), p('seed.c')]);
      expect(cc.code, cc.stderr).toBe(0);
      for (const size of [MiB, 64 * MiB + 512, 3 * 512]) {
        expect(run(p('seed-create'), [p('seed.cow'), String(size)]).code).toBe(0);
        const r = blk(['create', '-f', 'cow', p('mine.cow'), String(size)]);
        expect(r).toMatchObject({
          code: 0,
          stderr: '',
          stdout: `Formatting '${p('mine.cow')}', fmt=cow size=${size}\n`,
        });
        expect(fs.readFileSync(p('mine.cow')).equals(fs.readFileSync(p('seed.cow')))).toBe(true);
        const info = infoJson([p('mine.cow')]);
        expect(info).toMatchObject({ format: 'cow', 'virtual-size': size });
        expect(info['backing-filename']).toBeUndefined();
        expect(info['format-specific'].data).toMatchObject({ variant: 'v2-qemu-lp64', version: 2 });
        // Usable as a disk: writes land and read back.
        ok(blk(['io', '-c', 'write -P 0x5a 512 1024', '-c', 'read -P 0x5a 512 1024', p('mine.cow')]));
      }
    },
  );

  it('-o version=3 without a backing file stays an error (v3 cannot store an empty path); nothing is left behind', () => {
    const r = blk(['create', '-f', 'cow', '-o', 'version=3', p('v3.cow'), '1M']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/v3 image needs a backing file .*empty path/);
    expect(fs.existsSync(p('v3.cow'))).toBe(false);
  });

  it('convert -O cow without -B follows the same rule: v2-qemu-lp64 by default, -o version=3 refused', () => {
    fs.writeFileSync(p('src.raw'), Buffer.alloc(256 * 1024, 0x33));
    ok(blk(['convert', '-O', 'cow', p('src.raw'), p('out.cow')]));
    expect(infoJson([p('out.cow')])['format-specific'].data.variant).toBe('v2-qemu-lp64');
    expect(ok(blk(['compare', p('src.raw'), p('out.cow')]))).toBe('Images are identical.\n');
    const r = blk(['convert', '-O', 'cow', '-o', 'version=3', p('src.raw'), p('out3.cow')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/v3 image needs a backing file/);
    expect(fs.existsSync(p('out3.cow'))).toBe(false);
  });
});

describe.skipIf(!hasQemu)('sizes that are not whole sectors, side by side with qemu (point 4)', () => {
  const BYTES = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7 + 1) & 0xff));
  /** A fresh pair of identical 1000-byte raw files, one for blk and one for qemu. */
  const pair = (name: string): [string, string] => {
    fs.writeFileSync(p(`${name}.blk`), BYTES);
    fs.writeFileSync(p(`${name}.qemu`), BYTES);
    return [p(`${name}.blk`), p(`${name}.qemu`)];
  };
  const sameLines = (mine: string, theirs: string, file: [string, string]) =>
    expect(filterQemuIo(mine).replaceAll(file[0], 'FILE')).toBe(filterQemuIo(theirs).replaceAll(file[1], 'FILE'));

  it('create rounds the size up to whole sectors as qemu-img does: 1234 makes a 1536-byte file', () => {
    for (const format of ['raw', 'cow']) {
      const r = blk(['create', '-f', format, p(`c1234.${format}`), '1234']);
      expect(r).toMatchObject({ code: 0, stdout: `Formatting '${p(`c1234.${format}`)}', fmt=${format} size=1234\n` });
      expect(infoJson([p(`c1234.${format}`)])['virtual-size']).toBe(1536);
    }
    expect(run('qemu-img', ['create', '-f', 'raw', p('q1234.raw'), '1234']).code).toBe(0);
    expect(fs.statSync(p('c1234.raw')).size).toBe(fs.statSync(p('q1234.raw')).size);
    expect(fs.statSync(p('c1234.raw')).size).toBe(1536);
  });

  it('info: a 1000-byte raw file is a 1024-byte disk', () => {
    const f = pair('info');
    const theirs = JSON.parse(run('qemu-img', ['info', '--output=json', '-f', 'raw', f[1]]).stdout) as Record<
      string,
      unknown
    >;
    expect(theirs['virtual-size']).toBe(1024);
    expect(infoJson(['-f', 'raw', f[0]])['virtual-size']).toBe(theirs['virtual-size']);
  });

  it('io: reads past the end of the file read zeros up to the last sector; beyond it they fail, as in qemu-io', () => {
    const f = pair('read');
    const cmds = ['read -v 992 32', 'read -P 0 1000 24', 'read 1024 1', 'read 1020 8', 'length', 'alloc 1000 24'];
    const args = cmds.flatMap((c) => ['-c', c]);
    const theirs = run('qemu-io', ['-f', 'raw', ...args, f[1]]);
    const mine = blk(['io', '-f', 'raw', ...args, f[0]]);
    expect(theirs.stdout).toContain('read 24/24 bytes at offset 1000');
    sameLines(mine.stdout, theirs.stdout, f);
    expect(mine.code).toBe(theirs.code);
  });

  it("io: a write past the end of the file inside the last sector grows the file to the write's end, as qemu-io's", () => {
    for (const cmd of [
      'write -P 0xab 1010 10',
      'write -P 0xab 990 20',
      'write -z 1000 24',
      'write -P 1 1023 1',
      'write -P 1 1020 8',
    ]) {
      const f = pair('grow');
      const theirs = run('qemu-io', ['-f', 'raw', '-c', cmd, f[1]]);
      const mine = blk(['io', '-f', 'raw', '-c', cmd, f[0]]);
      sameLines(mine.stdout, theirs.stdout, f);
      expect([cmd, mine.code]).toEqual([cmd, theirs.code]);
      expect([cmd, fs.statSync(f[0]).size]).toEqual([cmd, fs.statSync(f[1]).size]);
      expect(fs.readFileSync(f[0]).equals(fs.readFileSync(f[1]))).toBe(true);
    }
  });

  it('map: data up to the end of the file, then the tail of the last sector as zeros, as qemu-img map', () => {
    const f = pair('map');
    for (const output of ['json', 'human']) {
      const theirs = run('qemu-img', ['map', `--output=${output}`, '-f', 'raw', f[1]]);
      const mine = ok(blk(['map', `--output=${output}`, '-f', 'raw', f[0]]));
      expect(mine.replaceAll(f[0], 'FILE')).toBe(theirs.stdout.replaceAll(f[1], 'FILE'));
    }
  });

  it('compare: against its zero-padded 1024-byte copy, the messages and exit codes of qemu-img compare (and -s)', () => {
    const f = pair('cmp');
    fs.writeFileSync(p('cmp.padded'), Buffer.concat([BYTES, Buffer.alloc(24)]));
    fs.writeFileSync(p('cmp.other'), Buffer.concat([BYTES.subarray(0, 999), Buffer.from([0])]));
    for (const args of [[], ['-s']]) {
      for (const other of ['cmp.padded', 'cmp.other']) {
        const theirs = run('qemu-img', ['compare', ...args, '-f', 'raw', '-F', 'raw', f[1], p(other)]);
        const mine = blk(['compare', ...args, '-f', 'raw', '-F', 'raw', f[0], p(other)]);
        expect([args, other, mine.stdout, mine.code]).toEqual([args, other, theirs.stdout, theirs.code]);
      }
    }
  });
});

describe('cow over cow: the backing format is named wherever an image is opened (point 5)', () => {
  /** base.img (raw) <- mid.cow (v3) <- top.cow (v3, -F cow), with data in each layer. */
  const chain = (name: string) => {
    const base = p(`${name}-base.img`);
    const mid = p(`${name}-mid.cow`);
    const top = p(`${name}-top.cow`);
    fs.writeFileSync(base, Buffer.alloc(MiB, 0x11));
    ok(blk(['create', '-q', '-f', 'cow', '-b', base, mid]));
    ok(blk(['io', '-c', 'write -P 0x22 64k 64k', mid]));
    ok(blk(['create', '-q', '-f', 'cow', '-b', mid, '-F', 'cow', top]));
    ok(blk(['io', '-F', 'cow', '-c', 'write -P 0x33 128k 64k', top]));
    return { base, mid, top };
  };

  it("create without -F over a cow file is refused with advice that works; with -F the size is the lower image's disk size", () => {
    const { mid } = chain('create');
    const r = blk(['create', '-f', 'cow', '-b', mid, p('create-x.cow')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/looks like a cow image.*name its format with -F cow/);
    expect(fs.existsSync(p('create-x.cow'))).toBe(false);
    for (const version of ['3', '2']) {
      ok(blk(['create', '-q', '-f', 'cow', '-o', `version=${version}`, '-b', mid, '-F', 'cow', p('create-x.cow')]));
      expect(infoJson(['-F', 'cow', p('create-x.cow')])['virtual-size']).toBe(MiB); // not mid.cow's byte length
    }
    expect(fs.statSync(mid).size).toBeGreaterThan(MiB);
  });

  it('info -F reports the backing format really used, and the recorded size matches through it', () => {
    const { top, mid } = chain('info');
    expect(infoJson(['-F', 'cow', top])).toMatchObject({ 'backing-filename': mid, 'backing-filename-format': 'cow' });
    const chainInfo = JSON.parse(ok(blk(['info', '--output=json', '--backing-chain', '-F', 'cow', top]))) as Array<
      Record<string, any>
    >;
    expect(chainInfo.map((e) => [e.format, e['backing-filename-format']])).toEqual([
      ['cow', 'cow'],
      ['cow', 'raw'],
      ['raw', undefined],
    ]);
    expect(chainInfo[0]!['format-specific'].data['backing-size-matches']).toBe(true);
  });

  // Each command that opens an image, as a user would first run it (no backing format named).
  const COMMANDS: Array<[string, (c: ReturnType<typeof chain>) => string[]]> = [
    // info opens the chain only with --backing-chain (as qemu-img, it describes the image alone otherwise).
    ['info', (c) => ['info', '--backing-chain', c.top]],
    ['map', (c) => ['map', c.top]],
    ['check', (c) => ['check', c.top]],
    ['io', (c) => ['io', '-c', 'read -P 0x33 128k 64k', c.top]],
    ['commit', (c) => ['commit', c.top]],
    ['compare', (c) => ['compare', c.top, c.mid]],
    ['compare (B)', (c) => ['compare', c.mid, c.top]],
    ['convert', (c) => ['convert', c.top, p('cmd-convert.raw')]],
    ['rebase', (c) => ['rebase', '-b', c.base, c.top]],
    ['resize', (c) => ['resize', c.top, '1M']],
    ['measure', (c) => ['measure', '-O', 'raw', c.top]],
    ['amend', (c) => ['amend', '-o', 'size=1M', c.top]],
  ];
  for (const [name, argsOf] of COMMANDS) {
    it(`${name}: refused with advice naming an option ${name} accepts, and that option makes it work`, () => {
      const c = chain(`cmd-${name.replace(/\W/g, '')}`);
      const midBefore = fs.readFileSync(c.mid);
      const args = argsOf(c);
      const refused = blk(args);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr.trimEnd().split('\n')).toHaveLength(1);
      const m = /looks like a cow image, .*name its format with (\S+) cow/.exec(refused.stderr);
      expect(m, refused.stderr).not.toBeNull();
      // Nothing was written through the wrong format (commit would have written guest data over the header).
      expect(fs.readFileSync(c.mid).equals(midBefore)).toBe(true);
      const option = m![1]!;
      const fixed = blk([args[0]!, option, 'cow', ...args.slice(1)]);
      expect(fixed.stderr).toBe('');
      // compare: 1 = the images differ (they do: top holds data mid does not); 2 would be an error.
      expect(fixed.code).toBe(args[0] === 'compare' ? 1 : 0);
      if (args[0] === 'compare') expect(fixed.stdout).toBe('Content mismatch at offset 131072!\n');
    });
  }

  it('deeper cow chains: the advice names --backing-probe, which each command accepts', () => {
    const c = chain('deep');
    ok(blk(['create', '-q', '-f', 'cow', '-b', c.top, '-F', 'cow', p('deep-4.cow')]));
    const r = blk(['info', '--backing-chain', '-F', 'cow', p('deep-4.cow')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--backing-probe/);
    for (const args of [
      ['info'],
      ['map'],
      ['check'],
      ['io', '-c', 'read -P 0x33 128k 64k'],
      ['compare', p('deep-4.cow')],
    ]) {
      const fixed = blk([...args, '--backing-probe', p('deep-4.cow')]);
      expect([args, fixed.stderr, fixed.code]).toEqual([args, '', 0]);
    }
  });

  it('an interrupted commit (the mark in the header): the advice names blk commit with the -F the command was given', () => {
    const c = chain('resume');
    // The commit protocol's first step marks the overlay "commit in progress" (recorded mtime 0, v3 bytes 8..11).
    const fd = fs.openSync(c.top, 'r+');
    fs.writeSync(fd, Buffer.alloc(4), 0, 4, 8);
    fs.closeSync(fd);
    const r = blk(['io', '-F', 'cow', '-c', 'read -P 0x33 128k 64k', c.top]);
    expect(r.code).toBe(1);
    const advice = /a commit into it was interrupted; finish it with: (blk commit .*)$/m.exec(r.stderr);
    expect(advice, r.stderr).not.toBeNull();
    expect(advice![1]).toBe(`blk commit -F cow ${c.top}`);
    // (the whole loop, a killed commit finished by the advised command, is commit-rebase.test.ts's SIGKILL test)
  });
});

describe('-U (force-share): read an image another process is writing (point 6)', () => {
  /** A process holding `file` open for writing until its stdin closes; resolves once it holds it. */
  async function writer(cmd: string, args: string[]): Promise<ChildProcess> {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('1 KiB') || out.includes('1 MiB')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`${cmd} exited ${code} before holding the image`)));
      // Both qemu-io and blk io answer `length` once the image is open (and locked).
      child.stdin!.write('length\n');
    });
    return child;
  }
  async function stop(child: ChildProcess): Promise<void> {
    const gone = new Promise((r) => child.once('exit', r));
    child.stdin!.end('quit\n');
    await gone;
  }

  const holders: Array<[string, boolean, (f: string) => [string, string[]]]> = [
    ['a second blk process (blk io)', true, (f) => [process.execPath, [BLK, 'io', '-f', 'raw', f]]],
    ['qemu-io', hasQemu, (f) => ['qemu-io', ['-f', 'raw', f]]],
  ];
  for (const [name, available, command] of holders) {
    it.skipIf(!available)(
      `while ${name} writes the image: refused without -U; with -U info, map, compare, check (also of an overlay), convert, measure and dd read it and warn as blk`,
      async () => {
        const img = p(`shared-${name.length}.raw`);
        fs.writeFileSync(img, Buffer.alloc(MiB, 0x44));
        // An overlay of the image: check opens its backing file a level at a time.
        const top = p(`shared-top-${name.length}.cow`);
        expect(blk(['create', '-q', '-f', 'cow', '-b', img, '-F', 'raw', top]).code).toBe(0);
        const [cmd, args] = command(img);
        const child = await writer(cmd, args);
        try {
          for (const cmd of ['info', 'map', 'check', 'measure']) {
            const refused = blk([cmd, img]);
            expect(refused.code).toBe(1);
            expect(refused.stderr).toMatch(
              /(holds a write lock|has this image open for writing).*will not open it.*; -U \(--force-share\) reads it anyway/,
            );
          }
          // dd takes -U too, and its refusal says so.
          expect(blk(['dd', `if=${img}`, `of=${p('refused-dd.raw')}`]).stderr).toMatch(
            /will not open it.*; -U \(--force-share\) reads it anyway/,
          );
          fs.writeFileSync(p('shared-copy.raw'), Buffer.alloc(MiB, 0x44));
          for (const a of [
            ['info', img],
            ['map', img],
            ['compare', img, p('shared-copy.raw')],
            ['check', '-f', 'raw', img],
            ['convert', img, p('shared-out.raw')],
            ['measure', img],
            ['dd', `if=${img}`, `of=${p('shared-dd.raw')}`],
            ['check', top],
          ]) {
            const r = blk([a[0]!, '-U', ...a.slice(1)]);
            expect([a, r.code === 0 || (a[0] === 'check' && r.code === 63)]).toEqual([a, true]);
            // As blk's own warning line, not a Node process warning.
            expect(r.stderr).toMatch(
              /^blk: warning: .*open for writing; reading it anyway \(force-share\): what is read may be inconsistent$/m,
            );
            expect(r.stderr).not.toContain('(node:');
          }
          expect(fs.readFileSync(p('shared-out.raw')).equals(fs.readFileSync(img))).toBe(true);
          expect(fs.readFileSync(p('shared-dd.raw')).equals(fs.readFileSync(img))).toBe(true);
        } finally {
          await stop(child);
        }
      },
    );
  }

  it('-U with nobody writing: no warning; while a force-share reader has the image open, writers still get it', async () => {
    const img = p('quiet.raw');
    fs.writeFileSync(img, Buffer.alloc(MiB));
    expect(blk(['info', '-U', img])).toMatchObject({ code: 0, stderr: '' });
    const { openImage } = await import('@blk/images');
    const reader = await openImage(img, { format: 'raw', readOnly: true, forceShare: true });
    try {
      expect(ok(blk(['io', '-f', 'raw', '-c', 'write -P 0x66 0 512', img]))).toMatch(
        /^wrote 512\/512 bytes at offset 0$/m,
      );
      if (hasQemu) expect(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x67 512 512', img]).code).toBe(0);
      // A normal (locking) reader would have kept both writers out.
      const locked = await openImage(img, { format: 'raw', readOnly: true });
      try {
        expect(blk(['io', '-f', 'raw', '-c', 'write 0 512', img]).code).toBe(1);
      } finally {
        await locked.close();
      }
    } finally {
      await reader.close();
    }
  });

  it('--help no longer says that blk takes no locks; it says what -U does', () => {
    for (const cmd of ['info', 'map', 'compare', 'check', 'convert', 'measure']) {
      const help = ok(blk([cmd, '--help']));
      expect(help).not.toMatch(/takes no locks/);
      expect(help).toMatch(/-U, --force-share\s+read the image even while another process/);
    }
  });

  it("openImage({ forceShare: true }) of a writable image is refused in qemu's words", async () => {
    const { openImage } = await import('@blk/images');
    const img = p('rw.raw');
    fs.writeFileSync(img, Buffer.alloc(4096));
    await expect(openImage(img, { format: 'raw', forceShare: true })).rejects.toMatchObject({
      kind: 'invalid-argument',
      message: `${img}: force-share=on can only be used with read-only images`,
    });
    const image = await openImage(img, { format: 'raw', readOnly: true, forceShare: true });
    await image.close();
  });
});
