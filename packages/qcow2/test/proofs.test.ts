/**
 * The testkit's proofs on writable qcow2 images that the real qemu-img made: read-after-write
 * (random writes, write-zeroes, discards, flushes, reopens, checked against a model, with
 * capabilities, status and map invariants) and the race proof (concurrent writes, reads, status
 * and flushes under a scheduler that reorders every storage operation), on qcow2 alone and on
 * chains mixing qcow2, cow and raw: qcow2 > raw, qcow2 > cow > raw, cow > qcow2 > raw.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DriverRegistry, createImage, openImage, type Image, type MemoryVfs } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '@blk/cow';
import { checkConcurrentWrites, checkReadAfterWrite, pattern, type TestSubject } from '@blk/testkit';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qcow2Driver } from '../src/index.js';

const QEMU = hasCommand('qemu-img');
if (!QEMU) console.warn('qemu-img is not installed (apt-get install qemu-utils): the qcow2 testkit proofs are skipped');

const registry = new DriverRegistry([qcow2Driver, cowDriver, rawDriver]);
const SIZE = 256 * 1024;
let dir: string;

function qemuImage(name: string, options: string, backing?: string): Uint8Array {
  const file = path.join(dir, name);
  fs.rmSync(file, { force: true });
  const args = ['create', '-q', '-f', 'qcow2', '-o', options];
  // -u: the backing file lives in the test's MemoryVfs, not here; the open names its format by depth.
  if (backing) args.push('-u', '-b', backing, '-F', 'raw');
  args.push(file, String(SIZE));
  const r = spawnSync('qemu-img', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${r.stderr}`);
  return new Uint8Array(fs.readFileSync(file));
}

/** A chain from the base up, e.g. ['raw', 'cow', 'qcow2']; qcow2 layers come from qemu-img. */
function subject(name: string, layers: readonly string[], qcow2Options: string): TestSubject {
  return {
    name,
    size: SIZE,
    async setup({ vfs, seed }: { vfs: MemoryVfs; seed: number }) {
      const paths = layers.map((format, i) => `/images/layer${i}.${format}`);
      let initial = new Uint8Array(SIZE);
      for (const [i, format] of layers.entries()) {
        const below = i > 0 ? paths[i - 1]!.slice('/images/'.length) : undefined;
        if (format === 'qcow2') {
          vfs.put(paths[i]!, qemuImage(`l${i}-${name.replace(/\W/g, '_')}.qcow2`, qcow2Options, below));
        } else if (format === 'raw') {
          initial = pattern(SIZE, seed);
          vfs.put(paths[i]!, initial);
        } else {
          await createImage(paths[i]!, {
            registry,
            vfs,
            format,
            size: SIZE,
            ...(below ? { backing: { path: paths[i - 1]!, format: layers[i - 1]! } } : {}),
          });
        }
      }
      const top = layers.length - 1;
      return {
        initial,
        open: ({ vfs: through, readOnly }): Promise<Image> =>
          openImage(paths[top]!, {
            registry,
            vfs: through,
            readOnly,
            format: layers[top]!,
            backing: { format: (_ref, depth) => layers[top - depth] ?? 'raw' },
          }),
      };
    },
  };
}

const SUBJECTS: Array<[string, readonly string[], string]> = [
  ['qcow2 (v3, 4 KiB clusters, 1-bit refcounts)', ['qcow2'], 'cluster_size=4096,refcount_bits=1'],
  ['qcow2 (v2, 1 KiB clusters) > raw', ['raw', 'qcow2'], 'compat=0.10,cluster_size=1024'],
  ['qcow2 (v3, 64 KiB clusters, lazy refcounts) > cow > raw', ['raw', 'cow', 'qcow2'], 'lazy_refcounts=on'],
  ['cow > qcow2 (v3, 2 KiB clusters) > raw', ['raw', 'qcow2', 'cow'], 'cluster_size=2048'],
];

beforeAll(() => {
  if (QEMU) dir = tempDir('qcow2-proofs');
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('testkit proofs on qcow2 and mixed chains', () => {
  for (const [i, [name, layers, options]] of SUBJECTS.entries()) {
    it(`read-after-write: ${name}`, async () => {
      await checkReadAfterWrite(subject(name, layers, options), { numRuns: 12, seed: 0x7e5 + i });
    }, 60_000);
    it(`concurrent writes: ${name}`, async () => {
      await checkConcurrentWrites(subject(name, layers, options), { numRuns: 12, seed: 0x7e6 + i });
    }, 60_000);
  }
});
