/**
 * blk io takes qemu-io's own command-line options (QEMU's test harness passes
 * `--cache writeback --aio threads` on every call), with qemu-io's meanings,
 * and refuses the ones blk cannot honour with one clear line.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { blk, BLK, filterQemuIo, hasCommand, qemuIo, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('io-options');
const { p } = scratch;
const KiB = 1024;
const SCRIPT = [
  'write -P 0x5a 0 64k',
  'read -P 0x5a 0 64k',
  'write -z 4k 4k',
  'read -P 0 4k 4k',
  'discard 0 512',
  'flush',
  'aio_write -P 3 128k 4k',
  'aio_flush',
  'read -P 3 128k 4k',
  'length',
];
const cmds = SCRIPT.flatMap((c) => ['-c', c]);

const OPTION_SETS: string[][] = [
  ['--cache', 'writeback', '--aio', 'threads'],
  ['--cache=writethrough', '--aio=io_uring'],
  ['-t', 'none', '-i', 'native'],
  ['-t', 'directsync', '-k'],
  ['-t', 'unsafe'],
  ['-n', '-k', '-m'],
  ['-d', 'unmap'],
  ['--discard=ignore'],
  ['--misalign', '--native-aio', '--nocache'],
];

describe("blk io: qemu-io's command-line options", () => {
  it.each(OPTION_SETS)('accepts %s and prints what qemu-io prints', (...opts) => {
    rawFile(p('ours.img'), 1024 * KiB);
    const ours = blk(['io', ...opts, '-f', 'raw', ...cmds, p('ours.img')]);
    expect(ours.stderr).toBe('');
    expect(ours.code).toBe(0);
    expect(filterQemuIo(ours.stdout)).toContain('wrote 65536/65536 bytes at offset 0\n');
    expect(filterQemuIo(ours.stdout).endsWith('1 MiB\n')).toBe(true);
    if (hasCommand('qemu-io')) {
      rawFile(p('theirs.img'), 1024 * KiB);
      const theirs = qemuIo([...opts, '-f', 'raw', ...cmds, p('theirs.img')]);
      expect(filterQemuIo(ours.stdout)).toBe(filterQemuIo(theirs.stdout));
      expect(ours.stderr).toBe(theirs.stderr);
      expect(ours.code).toBe(theirs.code);
      expect(fs.readFileSync(p('ours.img')).equals(fs.readFileSync(p('theirs.img')))).toBe(true);
    }
  });

  it('a length past the request limit: the message qemu-io prints for each command (write names -n)', () => {
    rawFile(p('limit.img'), 1024 * KiB);
    const limitCmds = ['read 0 3G', 'discard 0 3G', 'write 0 3G', 'write -P 1 0 512'].flatMap((c) => ['-c', c]);
    const ours = blk(['io', '-f', 'raw', ...limitCmds, p('limit.img')]);
    expect(ours.stdout.split('\n').slice(0, 3)).toEqual([
      'length cannot exceed 2147483136, given 3G',
      'length cannot exceed 2147483136, given 3G',
      'length cannot exceed 2147483136 without -n, given 3G',
    ]);
    if (hasCommand('qemu-io')) {
      rawFile(p('limit-q.img'), 1024 * KiB);
      expect(filterQemuIo(ours.stdout)).toBe(
        filterQemuIo(qemuIo(['-f', 'raw', ...limitCmds, p('limit-q.img')]).stdout),
      );
    }
  });

  it.skipIf(!hasCommand('strace'))(
    '-t: writethrough/directsync sync after every write request, writeback/none on close, unsafe never (as qemu-io)',
    () => {
      // Five write requests (write, write, aio_write, write -z, discard), then the close.
      const script = [
        'write 0 4k',
        'write 4k 4k',
        'aio_write 8k 4k',
        'aio_flush',
        'write -z 12k 4k',
        'discard 16k 4k',
      ].flatMap((c) => ['-c', c]);
      const syncs = (mode: string) => {
        rawFile(p('sync.img'), 64 * KiB);
        const log = p(`strace-${mode}.log`);
        const r = spawnSync(
          'strace',
          [
            '-f',
            '-qq',
            '-e',
            'trace=fdatasync,fsync',
            '-o',
            log,
            process.execPath,
            BLK,
            'io',
            '-f',
            'raw',
            '-t',
            mode,
            ...script,
            p('sync.img'),
          ],
          { encoding: 'utf8', timeout: 60_000 },
        );
        expect(r.status, r.stderr).toBe(0);
        return fs
          .readFileSync(log, 'utf8')
          .split('\n')
          .filter((l) => /\b(fdatasync|fsync)\(/.test(l)).length;
      };
      // As qemu-io (strace of QEMU 7.2 with this script: 5, 5, 1, 1, 0): each write request is synced,
      // and the close has nothing new to sync (a clean storage skips fdatasync, as QEMU's flushed_gen).
      expect(syncs('writethrough')).toBe(5);
      expect(syncs('directsync')).toBe(5);
      expect(syncs('writeback')).toBe(1);
      expect(syncs('none')).toBe(1);
      expect(syncs('unsafe')).toBe(0);
    },
  );

  it.each([
    [['-t', 'bogus'], 'Invalid cache option: bogus'],
    [['--cache=sometimes'], 'Invalid cache option: sometimes'],
    [['-i', 'bogus'], 'Invalid aio option: bogus'],
    [['-d', 'bogus'], 'Invalid discard option: bogus'],
  ])("refuses %s with qemu-io's message", (opts, message) => {
    rawFile(p('bad.img'), 64 * KiB, [[0, 64 * KiB, 7]]);
    const ours = blk(['io', ...opts, '-f', 'raw', '-c', 'write 0 4k', p('bad.img')]);
    expect(ours).toMatchObject({ code: 1, stdout: '', stderr: `blk: ${message}\n` });
    expect(fs.readFileSync(p('bad.img')).every((b) => b === 7)).toBe(true);
    if (hasCommand('qemu-io')) {
      const theirs = qemuIo([...opts, '-f', 'raw', '-c', 'write 0 4k', p('bad.img')]);
      expect(theirs).toMatchObject({ code: 1, stdout: '', stderr: `qemu-io: ${message}\n` });
    }
  });

  it.each([
    [
      ['-U', '-r'],
      ['read -P 0x21 0 4k', 'alloc 0 4k', 'length'],
    ],
    [['--force-share', '--read-only', '-t', 'writethrough'], ['read -P 0x21 0 4k']],
  ])('accepts %s (force-share, read-only) and prints what qemu-io prints', (opts, script) => {
    rawFile(p('shared.img'), 64 * KiB, [[0, 4 * KiB, 0x21]]);
    const args = [...opts, '-f', 'raw', ...script.flatMap((c) => ['-c', c]), p('shared.img')];
    const ours = blk(['io', ...args]);
    expect(ours.stderr).toBe('');
    expect(ours.code).toBe(0);
    expect(ours.stdout).toContain('read 4096/4096 bytes at offset 0\n');
    if (hasCommand('qemu-io')) {
      const theirs = qemuIo(args);
      expect(filterQemuIo(ours.stdout)).toBe(filterQemuIo(theirs.stdout));
      expect(theirs.code).toBe(0);
    }
  });

  it.each([
    [['-U'], 'force-share=on can only be used with read-only images'],
    [['-i', 'native'], 'aio=native was specified, but it requires cache.direct=on, which was not specified.'],
    [['-k', '-t', 'writeback'], 'aio=native was specified, but it requires cache.direct=on, which was not specified.'],
  ])('refuses the combination %s as qemu-io does, in its words', (opts, message) => {
    rawFile(p('combo.img'), 64 * KiB, [[0, 64 * KiB, 7]]);
    const args = [...opts, '-f', 'raw', '-c', 'write 0 4k', p('combo.img')];
    expect(blk(['io', ...args])).toMatchObject({
      code: 1,
      stdout: '',
      stderr: `qemu-io: can't open device ${p('combo.img')}: ${message}\n`,
    });
    expect(fs.readFileSync(p('combo.img')).every((b) => b === 7)).toBe(true);
    if (hasCommand('qemu-io')) {
      expect(qemuIo(args)).toMatchObject({
        code: 1,
        stdout: '',
        stderr: `qemu-io: can't open device ${p('combo.img')}: ${message}\n`,
      });
    }
  });

  it.each([
    [['-T', 'bdrv_*'], '-T/--trace is not supported: blk has no trace events'],
    [['--object', 'secret,id=s0,data=x'], '--object is not supported: blk has no secrets or other QOM objects'],
    [['--image-opts'], '--image-opts is not supported: name the file, and its format with -f'],
    [['-C'], '-C/--copy-on-read is not supported by blk'],
  ])('refuses %s with one line, before touching the image', (opts, message) => {
    rawFile(p('refused.img'), 64 * KiB, [[0, 64 * KiB, 7]]);
    const r = blk(['io', ...opts, '-c', 'write 0 4k', p('refused.img')]);
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: `blk: ${message}\n` });
    expect(fs.readFileSync(p('refused.img')).every((b) => b === 7)).toBe(true);
  });

  it('-s: writes go to a temporary overlay; the file is unchanged and nothing is left in TMPDIR', () => {
    const tmp = p('tmpdir');
    fs.mkdirSync(tmp, { recursive: true });
    rawFile(p('snap.img'), 1024 * KiB, [[0, 1024 * KiB, 0x11]]);
    const before = fs.readFileSync(p('snap.img'));
    const script = [
      'write -P 0x22 0 64k',
      'read -P 0x22 0 64k',
      'read -P 0x11 64k 64k',
      'write -z -u 128k 64k',
      'read -P 0 128k 64k',
      'length',
    ].flatMap((c) => ['-c', c]);
    const ours = blk(['io', '-s', '-f', 'raw', ...script, p('snap.img')], { env: { TMPDIR: tmp } });
    expect(ours.stderr).toBe('');
    expect(ours.code).toBe(0);
    expect(ours.stdout).not.toContain('Pattern verification failed');
    expect(fs.readFileSync(p('snap.img')).equals(before)).toBe(true);
    expect(fs.readdirSync(tmp)).toEqual([]);
    if (hasCommand('qemu-io')) {
      const theirs = qemuIo(['-s', '-f', 'raw', ...script, p('snap.img')]);
      expect(filterQemuIo(ours.stdout)).toBe(filterQemuIo(theirs.stdout));
      expect(theirs.code).toBe(0);
    }
    // -s with -r: read-only, as qemu-io.
    const ro = blk(['io', '-s', '-r', '-f', 'raw', '-c', 'write 0 1', p('snap.img')], { env: { TMPDIR: tmp } });
    expect(ro).toMatchObject({ code: 1, stderr: 'qemu-io: Block node is read-only\n' });
  });

  it('-s on a raw file whose length is no whole number of sectors: a disk of whole sectors, as qemu-io; nothing is written', () => {
    rawFile(p('odd.img'), 1000, [[0, 1000, 9]]);
    const r = blk([
      'io',
      '-s',
      '-f',
      'raw',
      '-c',
      'write 0 10',
      '-c',
      'read -P 0 1000 24',
      '-c',
      'length',
      p('odd.img'),
    ]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^wrote 10\/10 bytes at offset 0$/m);
    expect(r.stdout).toMatch(/^read 24\/24 bytes at offset 1000$/m);
    expect(r.stdout).toMatch(/^1 KiB$/m);
    expect(fs.statSync(p('odd.img')).size).toBe(1000);
    expect(fs.readFileSync(p('odd.img')).every((b) => b === 9)).toBe(true);
  });

  it('-s on a cow overlay: the chain reads through, the overlay is unchanged', () => {
    rawFile(p('sbase.img'), 256 * KiB, [[0, 256 * KiB, 0x33]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('sbase.img'), p('s.cow')]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0x44 0 4k', p('s.cow')]).code).toBe(0);
    const overlay = fs.readFileSync(p('s.cow'));
    const r = blk([
      'io',
      '-s',
      '-c',
      'write -P 0x55 4k 4k',
      '-c',
      'read -P 0x44 0 4k',
      '-c',
      'read -P 0x55 4k 4k',
      '-c',
      'read -P 0x33 8k 8k',
      p('s.cow'),
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout).not.toContain('Pattern verification failed');
    expect(r.code).toBe(0);
    expect(fs.readFileSync(p('s.cow')).equals(overlay)).toBe(true);
  });

  it("-d ignore: discard and write -z -u leave the overlay's allocation alone; -d unmap deallocates", () => {
    for (const [mode, allocated] of [
      ['ignore', '65536/65536'],
      ['unmap', '0/65536'],
    ] as const) {
      const img = p(`d-${mode}.cow`);
      expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', img, '1M']).code).toBe(0);
      expect(blk(['io', '-c', 'write -P 9 0 64k', img]).code).toBe(0);
      const r = blk(['io', '-d', mode, '-c', 'discard 0 32k', '-c', 'write -z -u 32k 32k', '-c', 'alloc 0 64k', img]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`${allocated} bytes allocated at offset 0 bytes\n`);
      const after = blk(['io', '-c', `read -P ${mode === 'ignore' ? 9 : 0} 0 32k`, '-c', 'read -P 0 32k 32k', img]);
      expect(after.stdout).not.toContain('Pattern verification failed');
      expect(after.code).toBe(0);
    }
  });
});
