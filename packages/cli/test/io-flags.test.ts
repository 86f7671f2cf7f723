/**
 * blk io's request flags, as qemu-io's: `write -f` is Force Unit Access (the
 * request is durable when it completes: the image's FUA or a flush after it),
 * `write -z -n` refuses rather than write a buffer of zeros ("Operation not
 * supported", nothing written), `-u` may unmap.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as images from '@blk/images';
import { blk, blkSpawn, exited, filterQemuIo, hasCommand, qemuIo, rawFile, scratchDir, waitFor } from './helpers.js';

const scratch = scratchDir('io-flags');
const { p } = scratch;
const KiB = 1024;
const MiB = 1024 * KiB;

function overlay(name: string): string {
  rawFile(p(`${name}.raw`), MiB, [[0, MiB, 0x42]]);
  const r = blk(['create', '-f', 'cow', '-b', p(`${name}.raw`), '-F', 'raw', p(`${name}.cow`)]);
  expect(r.code).toBe(0);
  return p(`${name}.cow`);
}

describe('blk io write flags', () => {
  it('raw: -f, -z -n, -z -n -u and -z -f (unaligned too) give what qemu-io gives, byte for byte', () => {
    const script = [
      'write -z -n 0 4k',
      'write -z -n -u 4k 4k',
      'write -z -n 1 4k',
      'write -f -P 0x11 8193 4k',
      'write -f -z 20k 4k',
      'write -f -z -u 24k 4k',
      'read -P 0 1 4k',
      'read -P 0x11 8193 4k',
      'read -P 0 20k 8k',
      'read -P 0x42 28k 4k',
    ];
    const args = (file: string) => ['-f', 'raw', ...script.flatMap((c) => ['-c', c]), file];
    rawFile(p('r.img'), MiB, [[0, MiB, 0x42]]);
    const ours = blk(['io', ...args(p('r.img'))]);
    expect(ours.stderr).toBe('');
    expect(ours.stdout).not.toMatch(/failed/);
    expect(ours.code).toBe(0);
    if (hasCommand('qemu-io')) {
      rawFile(p('r-qemu.img'), MiB, [[0, MiB, 0x42]]);
      const theirs = qemuIo(args(p('r-qemu.img')));
      expect(filterQemuIo(ours.stdout)).toBe(filterQemuIo(theirs.stdout));
      expect(fs.readFileSync(p('r.img')).equals(fs.readFileSync(p('r-qemu.img')))).toBe(true);
    }
  });

  it("cow: write -z -n fails with 'Operation not supported' (cow has no zeroing of its own, as QEMU's) and writes nothing; without -n it zeroes", () => {
    const file = overlay('n');
    const r = blk([
      'io',
      '-f',
      'cow',
      '-c',
      'write -z -n 0 4k',
      '-c',
      'write -z -n -u 4k 4k',
      '-c',
      'read -P 0x42 0 8k',
      file,
    ]);
    expect(r.stdout).toContain('write failed: Operation not supported\nwrite failed: Operation not supported\n');
    expect(r.stdout).not.toContain('Pattern verification failed');
    const map = blk(['map', '--output=json', file]);
    expect(JSON.parse(map.stdout)).toEqual([expect.objectContaining({ start: 0, length: MiB, depth: 1 })]);
    const z = blk(['io', '-f', 'cow', '-c', 'write -z -u 0 8k', '-c', 'read -P 0 0 8k', file]);
    expect(z.code).toBe(0);
    expect(z.stdout).not.toMatch(/failed/);
  });

  it('cow, cache writeback: after write -f the data and its bitmap bit are on disk while blk io still runs; after a plain write they are not yet', async () => {
    for (const fua of [true, false]) {
      const file = overlay(fua ? 'fua' : 'plain');
      const child = blkSpawn([
        'io',
        '-t',
        'writeback',
        '-f',
        'cow',
        '-c',
        `write ${fua ? '-f ' : ''}-P 0x77 512 4k`,
        '-c',
        'sleep 20000',
        file,
      ]);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      try {
        await waitFor(() => out.includes('wrote 4096/4096'), 20_000, 'the write to complete');
        // Another reader sees what is on disk now (forceShare: blk io holds the write lock).
        const image = await images.openImage(file, { readOnly: true, forceShare: true, format: 'cow' });
        try {
          const got = await image.read(512, 4096);
          expect(got.every((b) => b === (fua ? 0x77 : 0x42))).toBe(true);
          expect((await image.chainStatus(512, 4096)).depth).toBe(fua ? 0 : 1);
        } finally {
          await image.close();
        }
      } finally {
        child.kill('SIGKILL');
        await exited(child);
      }
    }
  });
});
