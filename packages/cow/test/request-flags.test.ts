/** cow under the v2 request flags (issue 12): capabilities, write-zeroes over a backing file, FUA, unaligned writes. */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, createImage, openImage, type Storage, type VfsOpenOptions } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '../src/index.js';
import { MiB, SS } from './helpers.js';

const registry = new DriverRegistry([cowDriver, rawDriver]);

/** Records the writes and flushes of the storages it opens (the cow file's, by path). */
class RecordingVfs extends MemoryVfs {
  readonly log = new Map<string, Array<{ op: 'write' | 'flush'; offset?: number; data?: Uint8Array }>>();
  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const inner = await super.open(path, options);
    const log: Array<{ op: 'write' | 'flush'; offset?: number; data?: Uint8Array }> = [];
    this.log.set(path, log);
    return Object.assign(Object.create(inner) as Storage, {
      write: async (offset: number, data: Uint8Array) => {
        log.push({ op: 'write', offset, data });
        await inner.write(offset, data);
      },
      flush: async () => {
        log.push({ op: 'flush' });
        await inner.flush();
      },
    });
  }
}

/** A cow overlay over a raw base of `size` bytes of 0x42 (never zeros). */
async function overlay(size = MiB, vfs: MemoryVfs = new MemoryVfs()) {
  vfs.put('/img/base.raw', new Uint8Array(size).fill(0x42));
  await createImage('/img/top.cow', { registry, vfs, format: 'cow', backing: '/img/base.raw' });
  const image = await openImage('/img/top.cow', { registry, vfs, format: 'cow' });
  return { vfs, image };
}

describe('cow capabilities', () => {
  it('declares 512-byte sectors as request alignment and cluster, discard to the backing file, zeroes by the core', async () => {
    const { image } = await overlay();
    expect(image.capabilities).toMatchObject({
      write: true,
      flush: true,
      fua: 'emulated',
      writeZeroes: 'emulated',
      discard: 'backing',
    });
    expect(image.capabilities.limits).toMatchObject({
      requestAlignment: SS,
      clusterSize: SS,
      discardAlignment: SS,
      zeroAlignment: SS,
    });
    expect(image.info()).toMatchObject({ requestAlignment: SS, clusterSize: SS });
  });

  it("a cow without a backing file: a discarded sector reads zeros ('zero')", async () => {
    const vfs = new MemoryVfs();
    await createImage('/img/alone.cow', {
      registry,
      vfs,
      format: 'cow',
      size: MiB,
      driverOptions: { variant: 'v2-qemu-lp64' },
    });
    const image = await openImage('/img/alone.cow', { registry, vfs, format: 'cow' });
    expect(image.capabilities.discard).toBe('zero');
  });
});

describe('cow transfer limits', () => {
  it("takes the storage's preferred transfer (at least 4 KiB) and maximum as the image's", async () => {
    const vfs = new MemoryVfs();
    vfs.put('/img/base.raw', new Uint8Array(MiB));
    await createImage('/img/top.cow', { registry, vfs, format: 'cow', backing: '/img/base.raw' });
    const limited = Object.assign(Object.create(vfs) as MemoryVfs, {
      open: async (path: string, options?: VfsOpenOptions): Promise<Storage> => {
        const inner = await vfs.open(path, options);
        const limits = { requestAlignment: 1, preferredTransfer: 256 * 1024, maxTransfer: 4 * MiB };
        return Object.assign(Object.create(inner) as Storage, { capabilities: { ...inner.capabilities, limits } });
      },
    });
    const image = await openImage('/img/top.cow', { registry, vfs: limited, format: 'cow' });
    expect(image.capabilities.limits).toMatchObject({
      requestAlignment: SS,
      clusterSize: SS,
      preferredTransfer: 256 * 1024,
      maxTransfer: 4 * MiB,
    });
    // The backing file's image (raw) takes them too.
    expect(image.backing!.capabilities.limits).toMatchObject({ preferredTransfer: 256 * 1024, maxTransfer: 4 * MiB });
    await image.close();
  });
});

describe('cow write-zeroes over a non-zero backing file', () => {
  for (const mayUnmap of [false, true]) {
    it(`reads back as zeros (mayUnmap ${mayUnmap}), never the backing file's bytes; the range stays allocated in the overlay`, async () => {
      const { image } = await overlay();
      await image.write(0, new Uint8Array(8 * SS).fill(9));
      // Half written before, half not; unaligned edges too.
      await image.writeZeroes(4 * SS + 7, 8 * SS, { mayUnmap });
      const got = await image.read(0, 16 * SS);
      expect(got.subarray(0, 4 * SS + 7).every((b) => b === 9)).toBe(true);
      expect(got.subarray(4 * SS + 7, 12 * SS + 7).every((b) => b === 0)).toBe(true);
      expect(got.subarray(12 * SS + 7).every((b) => b === 0x42)).toBe(true);
      expect(await image.chainStatus(5 * SS, 7 * SS)).toMatchObject({ depth: 0, length: 7 * SS });
      await image.close();
    });
  }

  it('noFallback: cow has no zeroing of its own, so ENOTSUP and nothing changes', async () => {
    const { image } = await overlay();
    await expect(image.writeZeroes(0, 4 * SS, { noFallback: true, mayUnmap: true })).rejects.toMatchObject({
      kind: 'not-supported',
      code: 'ENOTSUP',
    });
    expect((await image.read(0, 4 * SS)).every((b) => b === 0x42)).toBe(true);
    expect(await image.chainStatus(0, 4 * SS)).toMatchObject({ depth: 1 });
  });
});

describe('cow FUA and unaligned writes', () => {
  it('write { fua }: the data and its bitmap bit are on disk when it resolves (emulated by a flush)', async () => {
    const vfs = new RecordingVfs();
    const { image } = await overlay(MiB, vfs);
    const log = vfs.log.get('/img/top.cow')!;
    log.length = 0;
    await image.write(SS, new Uint8Array(SS).fill(1), { fua: true });
    // The data write, a flush, the bitmap byte, a flush.
    expect(log.map((e) => e.op)).toEqual(['write', 'flush', 'write', 'flush']);
    log.length = 0;
    await image.write(2 * SS, new Uint8Array(SS).fill(1));
    expect(log.map((e) => e.op)).toEqual(['write']);
  });

  it("a 1 MiB write at offset 1 reaches the file as head sector, the caller's own middle bytes, tail sector", async () => {
    const vfs = new RecordingVfs();
    const { image } = await overlay(2 * MiB, vfs);
    const log = vfs.log.get('/img/top.cow')!;
    log.length = 0;
    const data = new Uint8Array(MiB).fill(7);
    await image.write(1, data);
    const writes = log.filter((e) => e.op === 'write');
    expect(writes.map((w) => w.data!.length)).toEqual([SS, MiB - SS, SS]);
    expect(writes[1]!.data!.buffer).toBe(data.buffer);
    // The bytes copied into bounce buffers: the two partial sectors, not the payload.
    expect(writes.filter((w) => w.data!.buffer !== data.buffer).reduce((n, w) => n + w.data!.length, 0)).toBe(2 * SS);
    const got = await image.read(0, MiB + SS);
    expect(got[0]).toBe(0x42);
    expect(got.subarray(1, MiB + 1).every((b) => b === 7)).toBe(true);
    expect(got.subarray(MiB + 1).every((b) => b === 0x42)).toBe(true);
  });
});

describe('write-zeroes with the backing chain not opened', () => {
  it("an overlay opened with backing.mode 'ignore' zeroes by writing, never by a discard that exposes the base later", async () => {
    const { vfs, image } = await overlay();
    await image.close();
    const ignored = await openImage('/img/top.cow', { registry, vfs, format: 'cow', backing: { mode: 'ignore' } });
    await ignored.write(0, new Uint8Array(2 * SS).fill(7));
    await ignored.writeZeroes(0, 2 * SS, { mayUnmap: true });
    await ignored.writeZeroes(4 * SS, 2 * SS, { mayUnmap: true });
    expect(await ignored.read(0, 6 * SS)).toEqual(new Uint8Array(6 * SS));
    await ignored.close();
    // With the chain opened, the zeroed sectors still read as zeros (not the base's 0x42).
    const chain = await openImage('/img/top.cow', { registry, vfs, format: 'cow' });
    expect(await chain.read(0, 2 * SS)).toEqual(new Uint8Array(2 * SS));
    expect(await chain.read(4 * SS, 2 * SS)).toEqual(new Uint8Array(2 * SS));
    expect((await chain.read(2 * SS, SS))[0]).toBe(0x42);
    await chain.close();
  });
});
