/**
 * `blk measure -O qcow2` against `qemu-img measure -O qcow2`: for a size (with cluster_size,
 * refcount_bits, compat and preallocation options) and for input images (a qcow2 image with data
 * and zero clusters, the same file read as raw), JSON and human output identical.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 measure interop tests are skipped');

let dir: string;

const { run } = qemuTools(() => dir);

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-measure');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', 'src.qcow2', '1G']);
  run('qemu-io', [
    '-c',
    'write 0 1M',
    '-c',
    'write 100M 64k',
    '-c',
    'write 300M 1k',
    '-c',
    'write -z 200M 1M',
    'src.qcow2',
  ]);
  run('qemu-img', ['create', '-q', '-f', 'raw', 'holes.raw', '64M']);
  run('qemu-io', ['-f', 'raw', '-c', 'write 1M 3M', '-c', 'write 40M 5k', 'holes.raw']);
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const CASES: string[][] = [
  ['--size', '1G', '-o', 'cluster_size=512'],
  ['--size', '100G', '-o', 'refcount_bits=1,cluster_size=4k'],
  ['--size', '5G', '-o', 'preallocation=falloc'],
  ['--size', '5G', '-o', 'preallocation=metadata,compat=0.10'],
  ['src.qcow2'],
  ['src.qcow2', '-o', 'compat=0.10'],
  ['src.qcow2', '-o', 'preallocation=full'],
  ['-f', 'raw', 'src.qcow2'],
  ['-f', 'raw', 'holes.raw', '-o', 'cluster_size=4k'],
];

describe.skipIf(!QEMU)('blk measure -O qcow2 gives qemu-img measure numbers', () => {
  it.each(CASES)('measure %s %s %s %s', (...args) => {
    const q = run('qemu-img', ['measure', '-O', 'qcow2', '--output=json', ...args]);
    const b = blk(['measure', '-O', 'qcow2', '--output=json', ...args], { cwd: dir });
    expect(b.stderr).toBe('');
    expect(JSON.parse(b.stdout)).toEqual(JSON.parse(q));
  });

  it('human output, including "bitmaps size" for a qcow2 source, is qemu-img measure output', () => {
    const q = run('qemu-img', ['measure', '-O', 'qcow2', path.join(dir, 'src.qcow2')]);
    expect(q).toContain('bitmaps size: 0');
    expect(blk(['measure', '-O', 'qcow2', path.join(dir, 'src.qcow2')]).stdout).toBe(q);
    const q2 = run('qemu-img', ['measure', '-O', 'qcow2', '--size', '7G']);
    expect(blk(['measure', '-O', 'qcow2', '--size', '7G']).stdout).toBe(q2);
  });
});
