/** blk io: qemu-io's command language, output lines and exit codes. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { blk, filterQemuIo, hasCommand, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('io');
const { p } = scratch;
const MiB = 1 << 20;
const REPORT = 'X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)';

/** A script touching every command's normal and error paths (aio requests complete before the next command's output). */
const SCRIPT = [
  'write -P 0xcd 0 64k',
  'read -P 0xcd 0 512',
  'read -P 0xce 0 512',
  'read -v 0 40',
  'read -v -P 205 16 20',
  'writev -P 7 64k 512 1k 2k',
  'readv -P 7 64k 3584',
  'readv -P 8 64k 512 512',
  'read -P 7 -s 512 -l 1k 64k 3584',
  'read -s 10 0 100',
  'read -P 7 -l 5000 64k 4k',
  'write -z 128k 4k',
  'read -P 0 128k 4k',
  'write -P 0x1ff 0 1',
  'write -P 3 -z 0 1',
  `write -s ${'PATTERNFILE'} 200k 10`,
  'read -v 200k 16',
  'read 0 abc',
  'read 0 9E',
  'read 2M 512',
  'write 1023k 2k',
  'read 1023k 1k',
  'read -C 0 1k',
  'read -q -P 0xcd 0 1k',
  'alloc 0 64k',
  'alloc 1k',
  'alloc 1M 64k',
  'map',
  'length',
  'info',
  'aio_write -P 0x42 256k 4k 4k',
  'aio_flush',
  'aio_read -P 0x42 256k 8k',
  'aio_flush',
  'flush',
  'read -x 0 1',
  'read 1 2 3',
  'bogus',
  'read 0',
  'writev 0',
];

/** Hides -C's machine-readable rates too. */
const normalise = (text: string) => filterQemuIo(text).replace(/^(\d+,\d+),[\d:.]+,[\d.]+,[\d.]+$/gm, '$1,T,R,R');

function ioScript(file: string, runner: 'blk' | 'qemu-io', viaStdin = false) {
  fs.writeFileSync(p('pattern.bin'), 'abc');
  const script = SCRIPT.map((c) => c.replace('PATTERNFILE', p('pattern.bin')));
  const args = viaStdin ? [] : script.flatMap((c) => ['-c', c]);
  const input = viaStdin ? `${script.join('\n')}\n` : '';
  if (runner === 'blk') return blk(['io', '-f', 'raw', ...args, file], { input });
  const r = spawnSync('qemu-io', ['-f', 'raw', ...args, file], { encoding: 'utf8', input });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

describe('blk io', () => {
  it("prints qemu-io's lines", () => {
    rawFile(p('a.img'), MiB);
    const r = blk([
      'io',
      '-f',
      'raw',
      '-c',
      'write -P 0xcd 0 64k',
      '-c',
      'read -P 0xcd 0 512',
      '-c',
      'read -P 0xce 512 512',
      '-c',
      'read -v 0 20',
      '-c',
      'length',
      p('a.img'),
    ]);
    expect(r.code).toBe(1); // one pattern verification failed
    expect(r.stdout).toMatch(
      /^wrote 65536\/65536 bytes at offset 0\n64 KiB, 1 ops; \d\d\.\d\d sec \([\d.]+ [KMG]iB\/sec and [\d.]+ ops\/sec\)\n/,
    );
    expect(filterQemuIo(r.stdout)).toBe(
      [
        'wrote 65536/65536 bytes at offset 0',
        `64 KiB, ${REPORT}`,
        'read 512/512 bytes at offset 0',
        `512 bytes, ${REPORT}`,
        'Pattern verification failed at offset 512, 512 bytes',
        'read 512/512 bytes at offset 512',
        `512 bytes, ${REPORT}`,
        '00000000:  cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd  ................',
        '00000010:  cd cd cd cd  ....',
        'read 20/20 bytes at offset 0',
        `20 bytes, ${REPORT}`,
        '1 MiB',
        '',
      ].join('\n'),
    );
  });

  it.skipIf(!hasCommand('qemu-io'))('matches real qemu-io line for line on a raw image (qemu-io installed)', () => {
    for (const viaStdin of [false, true]) {
      rawFile(p('ours.img'), MiB);
      rawFile(p('theirs.img'), MiB);
      const ours = ioScript(p('ours.img'), 'blk', viaStdin);
      const theirs = ioScript(p('theirs.img'), 'qemu-io', viaStdin);
      expect(normalise(ours.stdout)).toBe(normalise(theirs.stdout));
      expect(ours.stderr).toBe(theirs.stderr);
      expect(ours.code).toBe(theirs.code);
      expect(blk(['compare', p('ours.img'), p('theirs.img')]).code).toBe(0);
    }
  });

  it('commands come from stdin when there is no -c', () => {
    rawFile(p('s.img'), MiB);
    const r = blk(['io', '-f', 'raw', p('s.img')], {
      input: 'write -P 5 0 4k\nread -P 5 0 4k\n\nquit\nread -P 6 0 4k\n',
    });
    expect(r.code).toBe(0);
    expect(filterQemuIo(r.stdout)).toBe(
      `wrote 4096/4096 bytes at offset 0\n4 KiB, ${REPORT}\nread 4096/4096 bytes at offset 0\n4 KiB, ${REPORT}\n`,
    );
  });

  it('-r opens read-only: writes are refused, reads work', () => {
    rawFile(p('ro.img'), MiB, [[0, 4096, 9]]);
    const r = blk(['io', '-r', '-f', 'raw', '-c', 'write 0 512', '-c', 'read -P 9 0 4k', p('ro.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('qemu-io: Block node is read-only\n');
    expect(filterQemuIo(r.stdout)).toBe(`read 4096/4096 bytes at offset 0\n4 KiB, ${REPORT}\n`);
  });

  it('aio requests are in flight together; aio_flush waits for them all', () => {
    rawFile(p('aio.img'), MiB);
    const cmds = [];
    for (let i = 0; i < 16; i++) cmds.push('-c', `aio_write -P ${i + 1} ${i * 64}k 64k`);
    cmds.push('-c', 'aio_flush');
    for (let i = 0; i < 16; i++) cmds.push('-c', `aio_read -q -P ${i + 1} ${i * 64}k 64k`);
    const r = blk(['io', '-f', 'raw', ...cmds, '-c', 'aio_flush', p('aio.img')]);
    expect(r.code).toBe(0);
    const lines = filterQemuIo(r.stdout).trimEnd().split('\n');
    expect(lines).toHaveLength(32);
    expect(lines.filter((l) => l.startsWith('wrote ')).sort()).toEqual(
      Array.from({ length: 16 }, (_, i) => `wrote 65536/65536 bytes at offset ${i * 65536}`).sort(),
    );
    expect(r.stdout).not.toContain('Pattern verification failed');
  });

  it("cow: alloc and map show this layer's allocation; reads fall through to the backing file", () => {
    rawFile(p('base.img'), MiB, [[0, MiB, 0x11]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('base.img'), p('o.cow')]).code).toBe(0);
    const r = blk([
      'io',
      '-c',
      'write -P 0x22 64k 4k',
      '-c',
      'alloc 0 1M',
      '-c',
      'alloc 64k 4k',
      '-c',
      'map',
      '-c',
      'read -P 0x11 0 64k',
      '-c',
      'read -P 0x22 64k 4k',
      '-c',
      'info',
      p('o.cow'),
    ]);
    expect(r.code).toBe(0);
    expect(
      filterQemuIo(r.stdout).startsWith(
        [
          'wrote 4096/4096 bytes at offset 65536',
          `4 KiB, ${REPORT}`,
          '4096/1048576 bytes allocated at offset 0 bytes',
          '4096/4096 bytes allocated at offset 64 KiB',
          '64 KiB (0x10000) bytes not allocated at offset 0 bytes (0x0)',
          '4 KiB (0x1000) bytes     allocated at offset 64 KiB (0x10000)',
          '956 KiB (0xef000) bytes not allocated at offset 68 KiB (0x11000)',
          'read 65536/65536 bytes at offset 0',
          `64 KiB, ${REPORT}`,
          'read 4096/4096 bytes at offset 65536',
          `4 KiB, ${REPORT}`,
          'format name: cow',
          'cluster size: 512 bytes',
          'vm state offset: 0 bytes',
          'Format specific information:',
          '',
        ].join('\n'),
      ),
    ).toBe(true);
    expect(r.stdout).toContain('\n    version: 3\n');
  });

  it('help lists the commands; a failing open is one error line', () => {
    rawFile(p('h.img'), 4096);
    const r = blk(['io', '-f', 'raw', '-c', 'help', p('h.img')]);
    expect(r.code).toBe(0);
    for (const cmd of [
      'aio_flush',
      'aio_read',
      'aio_write',
      'alloc',
      'flush',
      'info',
      'length',
      'map',
      'read',
      'readv',
      'write',
      'writev',
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^${cmd} `, 'm'));
    }
    if (hasCommand('qemu-io')) {
      // Our help lines are qemu-io's lines for the same commands.
      const theirs = spawnSync('qemu-io', ['-f', 'raw', '-c', 'help', p('h.img')], { encoding: 'utf8' }).stdout.split(
        '\n',
      );
      for (const line of r.stdout.split('\n').filter((l) => / -- /.test(l) && !/^(sleep|discard) /.test(l))) {
        expect(theirs).toContain(line);
      }
    }
    const bad = blk(['io', '-c', 'read 0 1', p('none.img')]);
    expect(bad).toMatchObject({
      code: 1,
      stdout: '',
      stderr: `qemu-io: can't open device ${p('none.img')}: Could not open '${p('none.img')}': No such file or directory\n`,
    });
  });
});
