/** blk convert: any format to any, sparse output, progress only on a terminal, atomic output. */
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  alternatingExpected,
  alternatingOverlay,
  blk,
  BLK,
  blkSpawn,
  diskUsage,
  exited,
  expectSameImages,
  hasCommand,
  rawFile,
  scratchDir,
  shellQuote,
  underPty,
  waitFor,
} from './helpers.js';

const scratch = scratchDir('convert');
const { p } = scratch;
const MiB = 1 << 20;

const same = expectSameImages;

const tmpLeftovers = () => fs.readdirSync(scratch.dir).filter((f) => f.includes('.tmp-'));

describe('blk convert', () => {
  it('raw -> cow -> raw round trip keeps the contents and leaves zero runs as holes', () => {
    rawFile(p('src.img'), 64 * MiB, [
      [0, 64 * 1024, 0xaa],
      [10 * MiB, 3 * MiB, 0xbb],
      [63 * MiB, 4096, 0xcc],
    ]);
    let r = blk(['convert', '-O', 'cow', '-o', 'version=2', p('src.img'), p('mid.cow')]);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    r = blk(['convert', '-f', 'cow', '-O', 'raw', p('mid.cow'), p('back.img')]);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    same(p('src.img'), p('mid.cow'));
    same(p('src.img'), p('back.img'));
    expect(fs.statSync(p('back.img')).size).toBe(64 * MiB);
    // 64 KiB + 3 MiB + 4 KiB of data: the rest stays holes (allow for file-system metadata).
    expect(diskUsage(p('back.img'))).toBeLessThan(4 * MiB);
    expect(diskUsage(p('mid.cow'))).toBeLessThan(4 * MiB);
    expect(tmpLeftovers()).toEqual([]);
  });

  it('a backing chain is flattened into the output', () => {
    rawFile(p('cb.img'), 8 * MiB, [[0, 8 * MiB, 0x11]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('cb.img'), p('chain.cow')]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0x22 1M 64k', '-c', 'write -z 2M 1M', p('chain.cow')]).code).toBe(0);
    expect(blk(['convert', p('chain.cow'), p('flat.img')]).code).toBe(0);
    same(p('chain.cow'), p('flat.img'));
    const io = blk([
      'io',
      '-f',
      'raw',
      '-c',
      'read -P 0x11 0 1M',
      '-c',
      'read -P 0x22 1M 64k',
      '-c',
      'read -P 0 2M 1M',
      '-c',
      'read -P 0x11 3M 5M',
      p('flat.img'),
    ]);
    expect(io.stdout).not.toContain('Pattern verification failed');
    expect(io.code).toBe(0);
    // The zeroed megabyte is a hole in the output.
    expect(diskUsage(p('flat.img'))).toBeLessThanOrEqual(7 * MiB + 64 * 1024);
  });

  it('-S sets the zero-detection granule; -S 0 writes every byte', () => {
    // 1 MiB of written data (no holes: zeros stored on disk) with one non-zero byte every 16 KiB.
    const fills: Array<[number, number, number]> = [[0, MiB, 0]];
    for (let o = 0; o < MiB; o += 16384) fills.push([o, 1, 0x5a]);
    rawFile(p('speckled.img'), MiB, fills);
    expect(blk(['convert', p('speckled.img'), p('s4k.img')]).code).toBe(0);
    expect(blk(['convert', '-S', '64k', p('speckled.img'), p('s64k.img')]).code).toBe(0);
    expect(blk(['convert', '-S', '0', p('speckled.img'), p('s0.img')]).code).toBe(0);
    for (const f of ['s4k.img', 's64k.img', 's0.img']) same(p('speckled.img'), p(f));
    expect(diskUsage(p('s4k.img'))).toBeLessThanOrEqual(MiB / 4 + 8192);
    expect(diskUsage(p('s64k.img'))).toBeGreaterThanOrEqual(MiB);
    expect(diskUsage(p('s0.img'))).toBeGreaterThanOrEqual(MiB);
    // The source's own holes stay holes whatever the granule (they are zero runs, not data), as with
    // qemu-img convert; only -S 0 writes them out.
    rawFile(p('sparse-speckled.img'), MiB, fills.slice(1));
    expect(diskUsage(p('sparse-speckled.img'))).toBeLessThanOrEqual(MiB / 4 + 8192);
    expect(blk(['convert', '-S', '64k', p('sparse-speckled.img'), p('ss64k.img')]).code).toBe(0);
    expect(blk(['convert', '-S', '0', p('sparse-speckled.img'), p('ss0.img')]).code).toBe(0);
    for (const f of ['ss64k.img', 'ss0.img']) same(p('sparse-speckled.img'), p(f));
    expect(diskUsage(p('ss64k.img'))).toBeLessThanOrEqual(MiB / 4 + 8192);
    expect(diskUsage(p('ss0.img'))).toBeGreaterThanOrEqual(MiB);
    // The cache mode of the output does not change what the source reports (-t unsafe wraps every storage).
    expect(blk(['convert', '-t', 'unsafe', '-S', '64k', p('sparse-speckled.img'), p('ssu.img')]).code).toBe(0);
    same(p('sparse-speckled.img'), p('ssu.img'));
    expect(diskUsage(p('ssu.img'))).toBeLessThanOrEqual(MiB / 4 + 8192);
    const bad = blk(['convert', '-S', '1000', p('speckled.img'), p('bad.img')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^blk: invalid sparse size 1000: use a multiple of 512/);
  });

  it('-t CACHE: unsafe writes the same output without a flush; writeback (the default) flushes; a bad mode is an error', () => {
    // Several 4 MiB chunks, data and holes, so that the copy pipeline has more than one chunk in flight.
    const fills: Array<[number, number, number]> = [];
    for (let i = 0; i < 24; i++) fills.push([i * MiB + i * 4096, 300 * 1024 + i * 512, 0x30 + i]);
    rawFile(p('tb.img'), 24 * MiB, [[0, 24 * MiB, 0x11]]);
    rawFile(p('tsrc.img'), 24 * MiB, fills);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('tb.img'), p('tchain.cow')]).code).toBe(0);
    expect(
      blk([
        'io',
        '-c',
        'write -P 0x77 3M 5M',
        '-c',
        'write -z 12M 2M',
        '-c',
        'write -P 0x78 20000k 1536',
        p('tchain.cow'),
      ]).code,
    ).toBe(0);
    for (const mode of ['unsafe', 'writeback', 'none', 'writethrough', 'directsync']) {
      const r = blk(['convert', '-t', mode, p('tchain.cow'), p(`t-${mode}.img`)]);
      expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
      same(p('tchain.cow'), p(`t-${mode}.img`));
    }
    expect(
      blk(['convert', '--cache', 'unsafe', '-O', 'cow', p('tsrc.img'), p('t-unsafe.cow'), '-o', 'version=2']).code,
    ).toBe(0);
    same(p('tsrc.img'), p('t-unsafe.cow'));
    // Over a backing file (-B), pipelined: only what differs is written.
    expect(
      blk(['convert', '-t', 'unsafe', '-O', 'cow', '-B', p('tb.img'), p('tchain.cow'), p('t-delta.cow')]).code,
    ).toBe(0);
    same(p('tchain.cow'), p('t-delta.cow'));
    expect(tmpLeftovers()).toEqual([]);

    const bad = blk(['convert', '-t', 'fast', p('tsrc.img'), p('t-bad.img')]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toBe(
      "blk: invalid cache mode 'fast': use one of writeback, unsafe, none, writethrough, directsync\n",
    );
    expect(fs.existsSync(p('t-bad.img'))).toBe(false);
    expect(tmpLeftovers()).toEqual([]);

    if (!hasCommand('strace')) {
      console.warn('SKIP -t flush check: strace is not installed');
      return;
    }
    const syncs = (mode: string) => {
      const log = p(`strace-${mode}.log`);
      const r = spawnSync(
        'strace',
        [
          '-f',
          '-qq',
          '-e',
          'trace=fsync,fdatasync',
          '-o',
          log,
          process.execPath,
          BLK,
          'convert',
          '-t',
          mode,
          p('tsrc.img'),
          p(`ts-${mode}.img`),
        ],
        { encoding: 'utf8' },
      );
      expect(r.status).toBe(0);
      return fs
        .readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => /fsync|fdatasync/.test(l)).length;
    };
    expect(syncs('unsafe')).toBe(0);
    expect(syncs('writeback')).toBeGreaterThan(0);
  });

  it('-B writes only what differs from the new backing file', () => {
    rawFile(p('bb.img'), 4 * MiB, [[0, 4 * MiB, 0x11]]);
    rawFile(p('bsrc.img'), 4 * MiB, [
      [0, 4 * MiB, 0x11],
      [MiB, 4096, 0x99],
    ]);
    expect(blk(['convert', '-O', 'cow', '-B', p('bb.img'), p('bsrc.img'), p('delta.cow')]).code).toBe(0);
    same(p('bsrc.img'), p('delta.cow'));
    const entries = JSON.parse(blk(['map', '--output=json', p('delta.cow')]).stdout) as Array<{
      depth: number;
      length: number;
    }>;
    expect(entries.filter((e) => e.depth === 0).map((e) => e.length)).toEqual([4096]);
  });

  it('progress: shown with -p on a terminal, never in a pipe', () => {
    rawFile(p('pg.img'), 8 * MiB, [[0, 8 * MiB, 1]]);
    const piped = blk(['convert', '-p', p('pg.img'), p('pg-pipe.img')]);
    expect(piped).toMatchObject({ code: 0, stdout: '', stderr: '' });
    if (!hasCommand('script')) {
      console.warn('SKIP progress on a terminal: util-linux `script` is not installed');
      return;
    }
    const tty = underPty(
      `${shellQuote(process.execPath)} ${shellQuote(BLK)} convert -p pg.img pg-tty.img`,
      scratch.dir,
    );
    expect(tty.code).toBe(0);
    expect(tty.stdout).toContain('    (0.00/100%)\r');
    expect(tty.stdout).toContain('    (100.00/100%)\r');
    const quiet = underPty(
      `${shellQuote(process.execPath)} ${shellQuote(BLK)} convert pg.img pg-tty2.img`,
      scratch.dir,
    );
    expect(quiet.stdout).not.toContain('/100%');
    same(p('pg.img'), p('pg-tty.img'));
  });

  it('failures leave neither the destination nor a temporary file', () => {
    let r = blk(['convert', p('does-not-exist.img'), p('never.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`blk: ${p('does-not-exist.img')}: no such file or directory\n`);
    r = blk(['convert', '-O', 'vmdk', p('pg.img'), p('never.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^blk: .*unknown format 'vmdk'/);
    // cow v3 needs a backing file: the driver refuses after the temporary file was started.
    r = blk(['convert', '-O', 'cow', '-o', 'version=3', p('pg.img'), p('never.cow')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(fs.existsSync(p('never.img'))).toBe(false);
    expect(fs.existsSync(p('never.cow'))).toBe(false);
    expect(tmpLeftovers()).toEqual([]);
  });

  it('killed mid-way (SIGKILL): the destination is untouched; a re-run completes it', async () => {
    const size = 64 * MiB;
    const { overlay } = alternatingOverlay(scratch.dir, 'kill', size);
    alternatingExpected(p('kill.expected'), size);
    fs.writeFileSync(p('kill.out'), 'previous contents');
    const child = blkSpawn(['convert', overlay, p('kill.out')]);
    let tmp = '';
    await waitFor(
      () => {
        tmp = tmpLeftovers().find((f) => f.startsWith('kill.out.tmp-')) ?? '';
        return tmp !== '' && diskUsage(p(tmp)) > 4 * MiB;
      },
      20_000,
      'the conversion to get under way',
    );
    child.kill('SIGKILL');
    const end = await exited(child);
    expect(end.signal).toBe('SIGKILL');
    // Half-way: the temporary file holds part of the data, the destination its old contents.
    expect(diskUsage(p(tmp))).toBeLessThan(size);
    expect(fs.readFileSync(p('kill.out'), 'utf8')).toBe('previous contents');
    const again = blk(['convert', overlay, p('kill.out')]);
    expect(again).toMatchObject({ code: 0, stderr: '' });
    same(p('kill.expected'), p('kill.out'));
    fs.unlinkSync(p(tmp));
  });

  it('interrupted (SIGTERM/SIGINT): the temporary file is removed', async () => {
    const size = 64 * MiB;
    const { overlay } = alternatingOverlay(scratch.dir, 'term', size);
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      const child = blkSpawn(['convert', overlay, p('term.out')]);
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      await waitFor(
        () => tmpLeftovers().some((f) => f.startsWith('term.out.tmp-') && diskUsage(p(f)) > 2 * MiB),
        20_000,
        'the conversion to get under way',
      );
      child.kill(sig);
      const end = await exited(child);
      expect(end.code).toBe(sig === 'SIGTERM' ? 143 : 130);
      expect(stderr).toBe(`blk: interrupted by ${sig}\n`);
      expect(fs.existsSync(p('term.out'))).toBe(false);
      expect(tmpLeftovers()).toEqual([]);
    }
  });
});
