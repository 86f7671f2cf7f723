/**
 * blk io's `write -z` asks the image for zeroes instead of writing a buffer,
 * and `-u` lets it deallocate, as qemu-io does: a raw file gets a hole
 * (fallocate punch) with -u and zeroed blocks without; a cow overlay
 * deallocates only where the layers below read as zeros, and keeps zeros
 * allocated over a non-zero backing file. In every case the range reads back
 * as zeros.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { testTimeScale } from '@blk/faults';
import { blk, diskUsage, filterQemuIo, hasCommand, qemuIo, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('io-zeroes');
const { p } = scratch;
const KiB = 1024;
const MiB = 1024 * KiB;

/** `blk map --output=json` of a raw file: which runs are holes (zero, no data). */
function rawMap(file: string): Array<{ start: number; length: number; zero: boolean; data: boolean }> {
  const r = blk(['map', '--output=json', '-f', 'raw', file]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Array<{ start: number; length: number; zero: boolean; data: boolean }>;
}

function ioOk(args: string[]): string {
  const r = blk(['io', ...args]);
  expect(r.stderr).toBe('');
  expect(r.stdout).not.toContain('Pattern verification failed');
  expect(r.stdout).not.toContain('failed');
  expect(r.code).toBe(0);
  return r.stdout;
}

describe('blk io write -z', () => {
  it('raw, -u: punches a hole (the file shrinks on disk, map shows a zero run), reads zeros; qemu-io does the same', () => {
    const script = [
      'write -z -u 256k 256k',
      'aio_write -z -u 768k 64k',
      'aio_flush',
      'read -P 0 256k 256k',
      'read -P 0 768k 64k',
      'read -P 1 0 256k',
      'read -P 1 512k 256k',
    ];
    const args = (file: string) => ['-f', 'raw', ...script.flatMap((c) => ['-c', c]), file];
    rawFile(p('u.img'), MiB, [[0, MiB, 1]]);
    const before = diskUsage(p('u.img'));
    const ours = ioOk(args(p('u.img')));
    expect(before - diskUsage(p('u.img'))).toBeGreaterThanOrEqual(256 * KiB + 64 * KiB);
    const map = rawMap(p('u.img'));
    expect(map).toContainEqual(
      expect.objectContaining({ start: 256 * KiB, length: 256 * KiB, zero: true, data: false }),
    );
    expect(map).toContainEqual(
      expect.objectContaining({ start: 768 * KiB, length: 64 * KiB, zero: true, data: false }),
    );
    if (hasCommand('qemu-io')) {
      rawFile(p('u-qemu.img'), MiB, [[0, MiB, 1]]);
      const theirs = qemuIo(args(p('u-qemu.img')));
      expect(filterQemuIo(ours)).toBe(filterQemuIo(theirs.stdout));
      expect(fs.readFileSync(p('u.img')).equals(fs.readFileSync(p('u-qemu.img')))).toBe(true);
      expect(rawMap(p('u.img'))).toEqual(rawMap(p('u-qemu.img')));
    }
  });

  it('raw, without -u: zeroes in place (blocks stay allocated), reads zeros, unaligned edges included', () => {
    rawFile(p('z.img'), MiB, [[0, MiB, 1]]);
    const before = diskUsage(p('z.img'));
    ioOk([
      '-f',
      'raw',
      '-c',
      'write -z 100 300000',
      '-c',
      'read -P 0 100 300000',
      '-c',
      'read -P 1 0 100',
      '-c',
      'read -P 1 300100 100',
      p('z.img'),
    ]);
    expect(diskUsage(p('z.img'))).toBe(before);
    const want = Buffer.alloc(MiB, 1);
    want.fill(0, 100, 300100);
    expect(fs.readFileSync(p('z.img')).equals(want)).toBe(true);
  });

  it('raw, -z over 1 GiB of a sparse file: no data written, -u allocates nothing, plain -z only zeroed extents (as qemu-io)', () => {
    rawFile(p('big.img'), 2048 * MiB);
    const t0 = Date.now();
    ioOk(['-f', 'raw', '-c', 'write -z -u 0 1G', '-c', 'read -P 0 1023M 1M', p('big.img')]);
    expect(diskUsage(p('big.img'))).toBeLessThan(MiB);
    ioOk(['-f', 'raw', '-c', 'write -z 1G 256M', '-c', 'read -P 0 1279M 1M', p('big.img')]);
    // fallocate(ZERO_RANGE) reserves the blocks as qemu-io's write -z does; a zero buffer would take seconds.
    expect(diskUsage(p('big.img'))).toBeLessThan(260 * MiB);
    expect(Date.now() - t0).toBeLessThan(20_000 * testTimeScale()); // seconds of writing zeros, on an idle machine
  });

  it('cow without a backing file: -u deallocates (reads zeros), plain -z allocates zeros', () => {
    const img = p('nb.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', img, '1M']).code).toBe(0);
    const out = ioOk([
      '-c',
      'write -P 5 0 64k',
      '-c',
      'write -z -u 0 16k',
      '-c',
      'write -z 16k 16k',
      '-c',
      'alloc 0 16k',
      '-c',
      'alloc 16k 16k',
      '-c',
      'read -P 0 0 32k',
      '-c',
      'read -P 5 32k 32k',
      img,
    ]);
    expect(out).toContain('0/16384 bytes allocated at offset 0 bytes\n');
    expect(out).toContain('16384/16384 bytes allocated at offset 16 KiB\n');
  });

  it('cow over a non-zero backing file: zeros are allocated even with -u (deallocating would show the backing data)', () => {
    rawFile(p('nz.base'), MiB, [[0, MiB, 0x11]]);
    const img = p('nz.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('nz.base'), img]).code).toBe(0);
    const out = ioOk([
      '-c',
      'write -z -u 0 16k',
      '-c',
      'aio_write -z -u 64k 8k',
      '-c',
      'aio_flush',
      '-c',
      'write -z -u 100 1000',
      '-c',
      'alloc 0 16k',
      '-c',
      'alloc 64k 8k',
      '-c',
      'read -P 0 0 16k',
      '-c',
      'read -P 0x11 16k 48k',
      '-c',
      'read -P 0 64k 8k',
      img,
    ]);
    expect(out).toContain('16384/16384 bytes allocated at offset 0 bytes\n');
    expect(out).toContain('8192/8192 bytes allocated at offset 64 KiB\n');
    // And in a new process, through the file.
    ioOk(['-c', 'read -P 0 0 16k', '-c', 'read -P 0 64k 8k', '-c', 'read -P 0x11 72k 8k', img]);
  });

  it('cow over a backing file that reads zeros (a hole): -u leaves the range unallocated', () => {
    rawFile(p('hole.base'), MiB, [[512 * KiB, 4 * KiB, 0x77]]);
    const img = p('hole.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('hole.base'), img]).code).toBe(0);
    const out = ioOk([
      '-c',
      'write -P 3 0 64k',
      '-c',
      'write -z -u 0 64k',
      '-c',
      'write -z -u 508k 8k',
      '-c',
      'alloc 0 64k',
      '-c',
      'alloc 508k 8k',
      '-c',
      'read -P 0 0 64k',
      '-c',
      'read -P 0 508k 8k',
      img,
    ]);
    expect(out).toContain('0/65536 bytes allocated at offset 0 bytes\n');
    // Over the backing file's data the zeros must be allocated.
    expect(out).toContain('8192/8192 bytes allocated at offset 508 KiB\n');
  });
});
