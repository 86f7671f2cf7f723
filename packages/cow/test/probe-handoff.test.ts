/**
 * The bytes probing read are handed to the driver's open (DriverOpenOptions.probe):
 * a probed image's header is read from the storage once, and its size asked once,
 * which is one round trip less per file over HTTP.
 */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  ForwardingVfs,
  MemoryVfs,
  createImage,
  openImage,
  type Storage,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '../src/index.js';

interface Call {
  op: 'read' | 'size';
  offset?: number;
  length?: number;
}

/** Records every read and size() of the storages it opens, per path. */
class CountingVfs extends ForwardingVfs {
  readonly calls = new Map<string, Call[]>();
  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = await this.inner.open(path, options);
    const calls: Call[] = this.calls.get(path) ?? [];
    this.calls.set(path, calls);
    // A proxy forwards every member the storage has (capabilities, readSync, ...), counting two.
    return new Proxy(storage, {
      get(target, key) {
        if (key === 'read') {
          return (offset: number, into: Uint8Array) => {
            calls.push({ op: 'read', offset, length: into.length });
            return target.read(offset, into);
          };
        }
        if (key === 'readSync') return undefined; // every read goes through the counted path
        if (key === 'size') {
          return () => {
            calls.push({ op: 'size' });
            return target.size();
          };
        }
        const value = Reflect.get(target, key, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }
}

const registry = new DriverRegistry([cowDriver, rawDriver]);

async function chain(): Promise<MemoryVfs> {
  const vfs = new MemoryVfs();
  await createImage('/base.raw', { registry, vfs, format: 'raw', size: 1024 * 1024 });
  await createImage('/top.cow', { registry, vfs, format: 'cow', backing: '/base.raw' });
  return vfs;
}

const headerReads = (calls: Call[]) => calls.filter((c) => c.op === 'read' && c.offset === 0);

describe('probe bytes handed to open', () => {
  it('a probed cow image: its header is read once and its size asked once', async () => {
    const counting = new CountingVfs(await chain());
    const image = await openImage('/top.cow', { registry, vfs: counting, readOnly: true });
    await image.close();
    const calls = counting.calls.get('/top.cow')!;
    expect(headerReads(calls)).toHaveLength(1);
    expect(calls.filter((c) => c.op === 'size')).toHaveLength(1);
  });

  it('a cow image opened by name (nothing probed) reads its header itself', async () => {
    const counting = new CountingVfs(await chain());
    const image = await openImage('/top.cow', { registry, vfs: counting, format: 'cow', readOnly: true });
    expect(image.format).toBe('cow');
    await image.close();
    expect(headerReads(counting.calls.get('/top.cow')!)).toHaveLength(1);
  });

  it('a raw backing file opened as raw by default: its size is asked once (the disguise check read it)', async () => {
    const counting = new CountingVfs(await chain());
    const image = await openImage('/top.cow', { registry, vfs: counting, readOnly: true });
    expect(image.backing?.format).toBe('raw');
    expect(image.backing?.size).toBe(1024 * 1024);
    await image.close();
    expect(counting.calls.get('/base.raw')!.filter((c) => c.op === 'size')).toHaveLength(1);
  });

  it('the handed bytes are what the file holds: a cow image reads the same probed or named', async () => {
    const vfs = await chain();
    const w = await openImage('/top.cow', { registry, vfs });
    await w.write(4096, new Uint8Array(512).fill(7));
    await w.close();
    const probed = await openImage('/top.cow', { registry, vfs, readOnly: true });
    const named = await openImage('/top.cow', { registry, vfs, format: 'cow', readOnly: true });
    expect(await probed.read(0, 8192)).toEqual(await named.read(0, 8192));
    expect(probed.size).toBe(named.size);
    await probed.close();
    await named.close();
  });
});
