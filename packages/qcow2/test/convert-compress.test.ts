/**
 * `blk convert -c -O qcow2` as `qemu-img convert -c`: every cluster holding data stored compressed
 * (the partial last cluster too, padded with zeros as QEMU does), all-zero clusters left as holes.
 * The judge is qemu-img: `check` exits 0 and counts compressed clusters, `compare` says identical
 * to the source, and the output is smaller than the uncompressed convert. `-c` into a format that
 * cannot compress, or with -B / -n, is refused.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';

const QEMU = hasCommand('qemu-img');
if (!QEMU) console.warn('qemu-img is not installed: the convert -c tests are skipped');

let dir: string;
const SIZE = 5 * 1024 * 1024 + 1536; // the last cluster is partial

function qemu(...args: string[]) {
  return spawnSync('qemu-img', args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
}

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-convert-c');
  const src = new Uint8Array(SIZE);
  const text = new TextEncoder().encode('compressible text, again and again. ');
  for (let i = 0; i < 200_000; i++) src[i] = text[i % text.length]!;
  let x = 12345;
  for (let i = 0; i < 70_000; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    src[2 * 1024 * 1024 + 700 + i] = x >>> 24;
  }
  for (let i = 0; i < 1200; i++) src[5 * 1024 * 1024 + i] = 0x41 + (i % 7);
  fs.writeFileSync(path.join(dir, 'src.raw'), src);
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('blk convert -c (compressed qcow2 output)', () => {
  it.each([['64k'], ['4k']])('cluster_size=%s: qemu-img check 0, compare identical, smaller than plain', (cs) => {
    const out = `c-${cs}.qcow2`;
    const plain = `p-${cs}.qcow2`;
    const r = blk(['convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs}`, 'src.raw', out], { cwd: dir });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(blk(['convert', '-O', 'qcow2', '-o', `cluster_size=${cs}`, 'src.raw', plain], { cwd: dir }).code).toBe(0);
    const check = qemu('check', '--output=json', out);
    expect(check.status).toBe(0);
    const info = JSON.parse(check.stdout) as { 'compressed-clusters'?: number; 'allocated-clusters': number };
    expect(info['compressed-clusters'] ?? 0).toBeGreaterThan(0);
    expect(qemu('compare', '-q', '-f', 'raw', '-F', 'qcow2', 'src.raw', out).status).toBe(0);
    expect(fs.statSync(path.join(dir, out)).size).toBeLessThan(fs.statSync(path.join(dir, plain)).size);
    // The partial last cluster holds data and is compressed: blk reads it back as qemu-img does.
    const back = blk(['convert', '-O', 'raw', out, `back-${cs}.raw`], { cwd: dir });
    expect(back.code).toBe(0);
    expect(
      Buffer.compare(fs.readFileSync(path.join(dir, `back-${cs}.raw`)), fs.readFileSync(path.join(dir, 'src.raw'))),
    ).toBe(0);
    // The holes stay holes (qemu-img map: the same extents as for qemu-img convert -c).
    expect(qemu('convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs}`, 'src.raw', `q-${cs}.qcow2`).status).toBe(0);
    const holes = (name: string) =>
      (JSON.parse(qemu('map', '--output=json', name).stdout) as Array<{ start: number; length: number; data: boolean }>)
        .filter((e) => !e.data)
        .map((e) => [e.start, e.length]);
    expect(holes(out)).toEqual(holes(`q-${cs}.qcow2`));
  });

  it('-c where it cannot apply: raw output, -B, -n', () => {
    const raw = blk(['convert', '-c', '-O', 'raw', 'src.raw', 'x.raw'], { cwd: dir });
    expect(raw.code).not.toBe(0);
    expect(raw.stderr).toMatch(/cannot store compressed data/);
    expect(fs.existsSync(path.join(dir, 'x.raw'))).toBe(false);
    const b = blk(['convert', '-c', '-O', 'qcow2', '-B', 'src.raw', '-F', 'raw', 'src.raw', 'y.qcow2'], { cwd: dir });
    expect(b.code).not.toBe(0);
    expect(b.stderr).toMatch(/-c/);
  });
});
