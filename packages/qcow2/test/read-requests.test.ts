/**
 * How many storage requests a qcow2 read costs: clusters that lie next to each other in the file
 * (as qemu-io's sequential write leaves them) are read with one request, on the synchronous path
 * and on the asynchronous one (a storage without synchronous reads), and a run stops where the
 * host clusters stop being contiguous. Block status reports consecutive compressed clusters as one
 * run (a copy of a compressed image walks runs, not clusters), as qemu-img map merges them.
 */
import * as fs from 'node:fs';
import { FilterStorage, NodeVfs, openImage, type Storage, type Vfs, type VfsOpenOptions } from '@blk/images';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
const SKIP = 'qemu-img/qemu-io are not installed (apt-get install qemu-utils): skipped';

let dir: string;
const { p, img, io } = qemuTools(() => dir);
const KiB = 1024;
const MiB = 1024 * KiB;

/** Counts the data requests (longer than one 64 KiB cluster: L2 tables are one cluster) a storage gets. */
class CountingStorage extends FilterStorage {
  constructor(
    next: Storage,
    private readonly log: number[],
  ) {
    super(next);
  }
  override read(offset: number, into: Uint8Array): Promise<number> {
    if (into.length > 64 * KiB) this.log.push(into.length);
    return super.read(offset, into);
  }
  override readSync(offset: number, into: Uint8Array): number {
    if (into.length > 64 * KiB) this.log.push(into.length);
    return super.readSync(offset, into);
  }
}

/** Without readSync: the driver takes its asynchronous path. */
class AsyncCountingStorage extends FilterStorage {
  constructor(
    next: Storage,
    private readonly log: number[],
  ) {
    super(next);
  }
  override read(offset: number, into: Uint8Array): Promise<number> {
    if (into.length > 64 * KiB) this.log.push(into.length);
    return super.read(offset, into);
  }
}

function countingVfs(log: number[], sync: boolean): Vfs {
  const base = new NodeVfs();
  return new Proxy(base, {
    get(target, key) {
      if (key === 'open') {
        return async (path: string, options?: VfsOpenOptions) => {
          const storage = await target.open(path, options);
          return sync ? new CountingStorage(storage, log) : new AsyncCountingStorage(storage, log);
        };
      }
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

beforeAll(() => {
  if (!QEMU) return;
  dir = tempDir('qcow2-requests');
  img('create', '-q', '-f', 'qcow2', 'seq.qcow2', '8M');
  // 0-4M written in order: host clusters in guest order. Then 6M, then 5M: not contiguous with 4M.
  io('seq.qcow2', 'write -P 0x5a 0 4M', 'write -P 0x5b 6M 1M', 'write -P 0x5c 5M 1M');
  img('convert', '-q', '-c', '-O', 'qcow2', 'seq.qcow2', 'comp.qcow2');
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('qcow2 reads of host-contiguous clusters', () => {
  for (const sync of [true, false]) {
    it(`one request for a 2 MiB run of 32 clusters (${sync ? 'synchronous' : 'asynchronous'} path)`, async (ctx) => {
      if (!QEMU) return ctx.skip(SKIP);
      const log: number[] = [];
      const image = await openImage(p('seq.qcow2'), { readOnly: true, vfs: countingVfs(log, sync) });
      try {
        const into = new Uint8Array(2 * MiB);
        await image.readInto(MiB, into);
        expect(into.every((b) => b === 0x5a)).toBe(true);
        expect(log).toEqual([2 * MiB]);
        // 5M-7M: two runs (5M lies after 6M in the file), one request each.
        log.length = 0;
        const two = new Uint8Array(2 * MiB);
        await image.readInto(5 * MiB, two);
        expect(two.subarray(0, MiB).every((b) => b === 0x5c)).toBe(true);
        expect(two.subarray(MiB).every((b) => b === 0x5b)).toBe(true);
        expect(log).toEqual([MiB, MiB]);
      } finally {
        await image.close();
      }
    });
  }
});

describe('qcow2 block status of compressed clusters', () => {
  it('consecutive compressed clusters are one run (data, no host offset), up to the next kind', async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const image = await openImage(p('comp.qcow2'), { readOnly: true });
    try {
      const runs = [];
      for await (const r of image.map()) runs.push([r.start, r.length, r.data, r.hostOffset]);
      // 0-4M and 5M-7M hold data (every cluster compressed), 4M-5M and 7M-8M nothing.
      expect(runs).toEqual([
        [0, 4 * MiB, true, undefined],
        [4 * MiB, MiB, false, undefined],
        [5 * MiB, 2 * MiB, true, undefined],
        [7 * MiB, MiB, false, undefined],
      ]);
      // One answer of the driver covers the run (Image.map merges answers; status is one of them).
      const status = await image.status(64 * KiB, 7 * MiB);
      expect(status).toMatchObject({ allocated: true, length: 4 * MiB - 64 * KiB });
    } finally {
      await image.close();
    }
  });
});
