/**
 * What an allocating write costs the storage, counted through a filter under the image: scattered
 * 4 KiB writes into a fresh qcow2 (each into a cluster of its own, over two L2 tables) are one
 * storage write each, issued before `Image.write` returns (the L2 lookup, the new L2 tables and the
 * refcount allocation happen synchronously in memory, as QEMU keeps them in its metadata caches:
 * no promise per metadata step, no metadata write, no flush per write); the flush then writes each
 * changed refcount block, L2 table and the L1 table once, behind a handful of storage flushes in
 * QEMU's order. qemu-img check and compare judge the result.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DriverRegistry,
  FilterStorage,
  ForwardingVfs,
  NodeVfs,
  openImage,
  type Storage,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qcow2Driver } from '../src/index.js';

const QEMU = hasCommand('qemu-img');
if (!QEMU) console.warn('qemu-img is not installed (apt-get install qemu-utils): the qcow2 write-cost test is skipped');

const registry = new DriverRegistry([qcow2Driver, rawDriver]);
let dir: string;
const p = (name: string) => path.join(dir, name);

/** Counts the writes (with their offsets) and flushes that reach the file. */
class CountingStorage extends FilterStorage {
  writes: number[] = [];
  flushes = 0;
  override write(offset: number, data: Uint8Array): Promise<void> {
    this.writes.push(offset);
    return super.write(offset, data);
  }
  override flush(): Promise<void> {
    this.flushes++;
    return super.flush();
  }
}

class CountingVfs extends ForwardingVfs {
  storage: CountingStorage | undefined;
  override async open(file: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = new CountingStorage(await this.inner.open(file, options));
    this.storage = storage;
    return storage;
  }
}

function qemuImg(args: string[], ok: number[] = [0]): { status: number; out: string } {
  const r = spawnSync('qemu-img', args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  if (!ok.includes(r.status ?? -1))
    throw new Error(`qemu-img ${args.join(' ')} (exit ${r.status}): ${r.stderr}${r.stdout}`);
  return { status: r.status ?? -1, out: r.stdout + r.stderr };
}

beforeAll(() => {
  dir = tempDir('blk-qcow2-write-cost-');
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('qcow2 allocating writes: storage requests per write', () => {
  it('scattered 4 KiB writes into a fresh image: one storage write each, issued at once; the flush writes each table once', async () => {
    const size = 1 << 30; // two L2 tables of 64 KiB clusters (512 MiB each)
    qemuImg(['create', '-q', '-f', 'qcow2', p('fresh.qcow2'), String(size)]);
    const vfs = new CountingVfs(new NodeVfs());
    const image = await openImage(p('fresh.qcow2'), { registry, vfs });
    const storage = vfs.storage!;
    const opened = storage.writes.length;
    const model = new Map<number, number>();
    const n = 300;
    const writes: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const offset = (i * 7919 * 4096) % size; // each in a 64 KiB cluster of its own
      const data = new Uint8Array(4096).fill((i % 250) + 1);
      model.set(offset, (i % 250) + 1);
      writes.push(image.write(offset, data));
      // On the storage before write() returned: no await on the way (the old path awaited first).
      expect(storage.writes.length - opened).toBe(i + 1);
    }
    await Promise.all(writes);
    // Data only: the L2 entries and refcounts wait in memory for the flush, and nothing was flushed.
    expect(storage.writes.length - opened).toBe(n);
    expect(storage.flushes).toBe(0);
    const before = storage.writes.length;
    await image.flush();
    // One refcount block, two L2 tables, the L1 table: each written once, behind at most four flushes.
    expect(storage.writes.length - before).toBe(4);
    expect(storage.flushes).toBeLessThanOrEqual(4);
    await image.close();
    expect(qemuImg(['check', p('fresh.qcow2')]).status).toBe(0);
    const raw = new Uint8Array(size);
    for (const [offset, value] of model) raw.fill(value, offset, offset + 4096);
    fs.writeFileSync(p('model.raw'), raw);
    expect(qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', p('fresh.qcow2'), p('model.raw')]).status).toBe(0);
  });
});
