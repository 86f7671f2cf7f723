/**
 * blk io's open and close commands (qemu-io's `open [-rsCnkU] [-t cache]
 * [-d discard] [-o options] path`, `close`), running without a file, and the
 * interactive prompt on a terminal.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { TAKEN } from '../src/io/block-options.js';
import {
  blk,
  BLK,
  exited,
  filterQemuIo,
  hasCommand,
  qemuIo,
  rawFile,
  scratchDir,
  shellQuote,
  waitFor,
} from './helpers.js';

const scratch = scratchDir('io-open');
const { p } = scratch;
const KiB = 1024;
const REPORT = 'X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)';

describe('blk io: open and close', () => {
  it('close, open another file, open while one is open: the same output as qemu-io', () => {
    rawFile(p('a.img'), 64 * KiB, [[0, 64 * KiB, 0xaa]]);
    rawFile(p('b.img'), 128 * KiB, [[0, 128 * KiB, 0xbb]]);
    const script = [
      'read -P 0xaa 0 512',
      'close',
      'read 0 512',
      'length',
      `open -o driver=raw ${p('b.img')}`,
      'read -P 0xbb 0 512',
      'write -P 0xcc 0 512',
      'length',
      `open ${p('a.img')}`,
      'length',
      'close',
      'close',
      `open -r -o driver=raw ${p('a.img')}`,
      'write 0 1',
      'read -P 0xaa 0 1',
    ];
    const args = ['-f', 'raw', ...script.flatMap((c) => ['-c', c]), p('a.img')];
    const ours = blk(['io', ...args]);
    expect(filterQemuIo(ours.stdout)).toBe(
      [
        'read 512/512 bytes at offset 0',
        `512 bytes, ${REPORT}`,
        'read 512/512 bytes at offset 0',
        `512 bytes, ${REPORT}`,
        'wrote 512/512 bytes at offset 0',
        `512 bytes, ${REPORT}`,
        '128 KiB',
        '128 KiB',
        'read 1/1 bytes at offset 0',
        `1 bytes, ${REPORT}`,
        '',
      ].join('\n'),
    );
    expect(ours.stderr).toBe(
      [
        "no file open, try 'help open'",
        "no file open, try 'help open'",
        "qemu-io: file open already, try 'help close'",
        "no file open, try 'help open'",
        'qemu-io: Block node is read-only',
        '',
      ].join('\n'),
    );
    expect(ours.code).toBe(1);
    expect(fs.readFileSync(p('b.img'))[0]).toBe(0xcc);
    if (hasCommand('qemu-io')) {
      rawFile(p('b.img'), 128 * KiB, [[0, 128 * KiB, 0xbb]]);
      const theirs = qemuIo(args);
      expect(filterQemuIo(ours.stdout)).toBe(filterQemuIo(theirs.stdout));
      expect(ours.stderr).toBe(theirs.stderr);
      expect(ours.code).toBe(theirs.code);
    }
  });

  it('runs without a file argument; open takes the same flags as the command line', () => {
    rawFile(p('c.img'), 64 * KiB, [[0, 64 * KiB, 0x11]]);
    const before = fs.readFileSync(p('c.img'));
    const script = [
      `open -s -t writeback -i threads -d unmap -o driver=raw ${p('c.img')}`,
      'write -P 0x22 0 4k',
      'read -P 0x22 0 4k',
      'close',
      `open -n -k -U -r -o driver=raw ${p('c.img')}`,
      'read -P 0x11 0 4k',
      'close',
    ];
    const args = script.flatMap((c) => ['-c', c]);
    const ours = blk(['io', ...args]);
    expect(ours.stderr).toBe('');
    expect(ours.code).toBe(0);
    expect(filterQemuIo(ours.stdout)).toBe(
      [
        'wrote 4096/4096 bytes at offset 0',
        `4 KiB, ${REPORT}`,
        'read 4096/4096 bytes at offset 0',
        `4 KiB, ${REPORT}`,
        'read 4096/4096 bytes at offset 0',
        `4 KiB, ${REPORT}`,
        '',
      ].join('\n'),
    );
    expect(fs.readFileSync(p('c.img')).equals(before)).toBe(true);
    if (hasCommand('qemu-io')) {
      const theirs = qemuIo(args);
      expect(filterQemuIo(ours.stdout)).toBe(filterQemuIo(theirs.stdout));
      expect(theirs.code).toBe(0);
    }
  });

  it("open failures are one line naming the file; bad open flags get qemu-io's messages", () => {
    rawFile(p('d.img'), 4 * KiB);
    const cases: Array<[string, string]> = [
      [
        `open ${p('missing.img')}`,
        `qemu-io: can't open device ${p('missing.img')}: Could not open '${p('missing.img')}': No such file or directory`,
      ],
      [`open -t sometimes ${p('d.img')}`, 'qemu-io: Invalid cache option: sometimes'],
      [`open -d sometimes ${p('d.img')}`, 'qemu-io: Invalid discard option: sometimes'],
      [
        `open -o driver=raw,colour=blue ${p('d.img')}`,
        `qemu-io: can't open device ${p('d.img')}: option 'colour' is not supported (blk io takes ${TAKEN})`,
      ],
      [`open -o driver=nosuchformat ${p('d.img')}`, ''],
      [
        `open -U -o driver=raw ${p('d.img')}`,
        `qemu-io: can't open device ${p('d.img')}: force-share=on can only be used with read-only images`,
      ],
    ];
    for (const [cmd, line] of cases) {
      const r = blk(['io', '-c', cmd, '-c', 'length']);
      expect(r.code, cmd).toBe(1);
      const lines = r.stderr.split('\n');
      if (line) expect(lines[0], cmd).toBe(line);
      else expect(lines[0], cmd).toMatch(new RegExp(`^qemu-io: can't open device ${p('d.img')}: .*nosuchformat`));
      expect(lines.slice(1), cmd).toEqual(["no file open, try 'help open'", '']);
      expect(r.stdout, cmd).toBe('');
    }
    // Usage errors print the usage line, as qemu-io.
    const usage = blk(['io', '-c', `open -x ${p('d.img')}`, '-c', `open ${p('d.img')} ${p('d.img')}`]);
    expect(usage.stderr).toBe("open: invalid option -- 'x'\n");
    expect(usage.stdout).toBe(
      'open [-rsCnkU] [-t cache] [-d discard] [-o options] [path] -- open the file specified by path\n'.repeat(2),
    );
  });
});

describe('blk io: interactive use', () => {
  it.skipIf(!hasCommand('script'))(
    'on a terminal: the qemu-io> prompt, typed commands echoed, their output',
    async () => {
      rawFile(p('tty.img'), 64 * KiB, [[0, 64 * KiB, 0x5a]]);
      // util-linux script runs blk on a pseudo-terminal; each command is typed once the prompt is there.
      const child = spawn(
        'script',
        [
          '-qfec',
          `${shellQuote(process.execPath)} ${shellQuote(BLK)} io -f raw ${shellQuote(p('tty.img'))}`,
          '/dev/null',
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let screen = '';
      child.stdout.on('data', (d: Buffer) => {
        screen += d.toString('utf8');
      });
      const prompts = () => (screen.match(/qemu-io> /g) ?? []).length;
      try {
        for (const [i, cmd] of ['read -P 0x5a 0 512', 'length', 'quit'].entries()) {
          await waitFor(() => prompts() > i, 30_000, `prompt ${i + 1}`);
          child.stdin.write(`${cmd}\r`);
        }
      } catch (err) {
        child.kill();
        throw err;
      }
      const end = await exited(child);
      expect(end.code).toBe(0);
      // Strip the terminal's cursor movements; what remains is what a user sees.
      const seen = screen.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');
      expect(seen).toContain('qemu-io> read -P 0x5a 0 512\nread 512/512 bytes at offset 0\n');
      expect(seen).toContain('qemu-io> length\n64 KiB\n');
      expect(seen).toContain('qemu-io> quit\n');
      expect(seen).not.toContain('Pattern verification failed');
    },
  );

  it("from a pipe: no prompt, no echo, only the commands' output (as before)", () => {
    rawFile(p('pipe.img'), 64 * KiB, [[0, 64 * KiB, 0x5a]]);
    const r = blk(['io', '-f', 'raw', p('pipe.img')], { input: 'length\nread -q -P 0x5a 0 4k\nlength\n' });
    expect(r).toMatchObject({ code: 0, stdout: '64 KiB\n64 KiB\n', stderr: '' });
  });
});
