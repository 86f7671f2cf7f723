/**
 * `write -z` over a backing file on a v3 image (QEMU iotest 154's finding): an unaligned zero write
 * whose cluster otherwise reads as zeros through the chain becomes a zero cluster (qemu-img map:
 * "zero": true, "data": false), as qcow2_co_pwrite_zeroes does, and a cluster whose rest holds the
 * backing file's data is written as data. The same commands through `qemu-io` and `blk io` on twin
 * images must leave byte-identical files (same directory layout, same backing name).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 write -z over backing tests are skipped');

let dir: string;

/** qemu-img/qemu-io run in `cwd` (each twin chain has a directory of its own). */
const ok = (cwd: string, cmd: string, ...args: string[]): string => qemuTools(() => cwd).ok(cmd, ...args);

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-zero-backing');
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Twin chains (base: 512-byte clusters; top: 4 KiB clusters), `baseCmds` through qemu-io in both. */
function twins(label: string, baseCmds: string[]): { q: string; b: string } {
  const out = { q: path.join(dir, label, 'q'), b: path.join(dir, label, 'b') };
  for (const d of [out.q, out.b]) {
    fs.mkdirSync(d, { recursive: true });
    ok(d, 'qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', 'base', '128M');
    for (const c of baseCmds) ok(d, 'qemu-io', '-c', c, 'base');
    ok(
      d,
      'qemu-img',
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      'cluster_size=4k',
      '-b',
      'base',
      '-F',
      'qcow2',
      'img',
      '128M',
    );
  }
  return out;
}

const CASES: Array<[string, string[], string[]]> = [
  // iotest 154, "backing file contains zeros": aligned to nothing, each piece in one cluster.
  ['154-zeros', [], ['write -z 0 2k', 'write -z 10k 2k', 'write -z 17k 2k', 'write -z 27k 2k']],
  ['unmap-unaligned', [], ['write -z -u 0 2k', 'write -z -u 10k 2k', 'write -z -u 5k 6k']],
  ['aligned', [], ['write -z 0 8k', 'write -z -u 16k 8k']],
  // Backing data in the rest of the cluster: the piece is data, the rest copied from below.
  ['backing-data', ['write -P 0x11 0 64k'], ['write -z 0 2k', 'write -z 5k 1k', 'write -z -u 9k 3k']],
  // Backing data in another part of the cluster only.
  ['backing-partial', ['write -P 0x22 2560 512'], ['write -z 0 2k', 'write -z 2k 2k', 'write -z 12k 1k']],
  // Over this layer's own data: written in place; over its zero cluster: unchanged.
  ['own-data', [], ['write -P 1 0 4k', 'write -z 1k 1k', 'write -z 8k 4k', 'write -z 9k 1k']],
  ['spanning', [], ['write -z 3k 3k', 'write -z 30k 7k']],
  // iotest 154, "spanning two clusters, partially overwriting backing file": both clusters data,
  // allocated front to back (QEMU's order: the head piece, then the tail piece).
  ['154-spanning-backing', ['write -P 0x11 2k 4k'], ['write -z 3k 2k']],
  ['spanning-many', ['write -P 0x11 14k 1k'], ['write -z 3k 14k', 'write -z -u 40k 13k']],
];

describe.skipIf(!QEMU)('write -z over a backing file (v3): image bytes and map as QEMU', () => {
  it.each(CASES)('%s', (label, baseCmds, cmds) => {
    const { q, b } = twins(label, baseCmds);
    for (const c of cmds) {
      ok(q, 'qemu-io', '-c', c, 'img');
      const r = blk(['io', '-c', c, 'img'], { cwd: b });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    expect(blk(['map', '--output=json', 'img'], { cwd: b }).stdout).toBe(
      ok(q, 'qemu-img', 'map', '--output=json', 'img'),
    );
    expect(ok(b, 'qemu-img', 'map', '--output=json', 'img')).toBe(ok(q, 'qemu-img', 'map', '--output=json', 'img'));
    expect(spawnSync('qemu-img', ['check', '-q', 'img'], { cwd: b }).status).toBe(0);
    expect(spawnSync('qemu-img', ['compare', '-q', path.join(q, 'img'), path.join(b, 'img')]).status).toBe(0);
    const qb = fs.readFileSync(path.join(q, 'img'));
    const bb = fs.readFileSync(path.join(b, 'img'));
    expect(bb.length).toBe(qb.length);
    expect(Buffer.compare(bb, qb)).toBe(0);
  });
});
