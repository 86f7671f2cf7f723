/**
 * A raw image reports the holes of its file as zero runs (qemu-img map's
 * "zero": true, "data": false) when the storage can tell where they are
 * (Storage.extentAt), and every byte as data when it cannot.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ForwardingVfs,
  MemoryFile,
  MemoryVfs,
  createImage,
  openImage,
  type Storage,
  type StorageExtent,
  type VfsOpenOptions,
} from '@blk/images';

const CHUNK = 64 * 1024; // MemoryFile's granule

/** A Vfs whose storages answer extentAt with `answer` (or hide extentAt when answer is undefined). */
class ExtentVfs extends ForwardingVfs {
  constructor(
    inner: MemoryVfs,
    private readonly answer?: (offset: number, length: number) => StorageExtent | undefined,
  ) {
    super(inner);
  }
  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const s = await this.inner.open(path, options);
    const answer = this.answer;
    return {
      path: s.path,
      readOnly: s.readOnly,
      capabilities: { ...s.capabilities, syncRead: false, extents: answer !== undefined },
      read: (o, into) => s.read(o, into),
      write: (o, d) => s.write!(o, d),
      size: () => s.size(),
      truncate: (n) => s.truncate!(n),
      flush: () => s.flush!(),
      close: () => s.close(),
      ...(answer ? { extentAt: async (o: number, n: number) => answer(o, n) } : {}),
    };
  }
}

describe('raw images: holes as zero runs', () => {
  it("map() gives the file's holes as zero runs (depth 0, with their offsets) and stored bytes as data", async () => {
    const vfs = new MemoryVfs();
    const file = new MemoryFile();
    file.truncate(16 * CHUNK);
    file.writeAt(2 * CHUNK + 100, new Uint8Array([1, 2, 3]));
    file.writeAt(5 * CHUNK, new Uint8Array(CHUNK + 1)); // written zeros: stored, so data
    vfs.put('/disk.raw', file);
    const image = await openImage('/disk.raw', { vfs, readOnly: true });
    const runs = [];
    for await (const r of image.map())
      runs.push({ start: r.start, length: r.length, depth: r.depth, zero: r.zero, hostOffset: r.hostOffset });
    expect(runs).toEqual([
      { start: 0, length: 2 * CHUNK, depth: 0, zero: true, hostOffset: 0 },
      { start: 2 * CHUNK, length: CHUNK, depth: 0, zero: false, hostOffset: 2 * CHUNK },
      { start: 3 * CHUNK, length: 2 * CHUNK, depth: 0, zero: true, hostOffset: 3 * CHUNK },
      { start: 5 * CHUNK, length: 2 * CHUNK, depth: 0, zero: false, hostOffset: 5 * CHUNK },
      { start: 7 * CHUNK, length: 9 * CHUNK, depth: 0, zero: true, hostOffset: 7 * CHUNK },
    ]);
    // Allocation is about the layer: a raw image holds every byte, holes included.
    expect(await image.isAllocated(0, 16 * CHUNK)).toEqual({ allocated: true, length: 2 * CHUNK });
    await image.close();
  });

  it('without extentAt, or with an answer it cannot use, every byte is data', async () => {
    const mem = new MemoryVfs();
    await createImage('/d.raw', { vfs: mem, format: 'raw', size: 8 * CHUNK });
    for (const answer of [
      undefined,
      () => undefined,
      () => ({ data: false, length: 0 }),
      (_o: number, n: number) => ({ data: false, length: n + 1 }),
      () => ({ data: false, length: Number.NaN }),
      () => ({ data: false, length: 1.5 }),
    ]) {
      const image = await openImage('/d.raw', { vfs: new ExtentVfs(mem, answer), readOnly: true, format: 'raw' });
      expect(await image.status(CHUNK, 4 * CHUNK)).toEqual({ allocated: true, length: 4 * CHUNK, hostOffset: CHUNK });
      await image.close();
    }
    // A usable answer is taken as given (here: a hole of 3 bytes).
    const image = await openImage('/d.raw', {
      vfs: new ExtentVfs(mem, () => ({ data: false, length: 3 })),
      readOnly: true,
      format: 'raw',
    });
    expect(await image.status(10, 100)).toEqual({ allocated: true, length: 3, zero: true, hostOffset: 10 });
    await image.close();
  });

  it('after any writes, the zero runs of map() read as zeros and every written byte lies in a data run', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 * CHUNK }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 3 * CHUNK }), fc.integer({ min: 0, max: 255 })), {
          maxLength: 10,
        }),
        async (requested, writes) => {
          const vfs = new MemoryVfs();
          await createImage('/r.raw', { vfs, format: 'raw', size: requested });
          const image = await openImage('/r.raw', { vfs });
          // Whole 512-byte sectors, as QEMU counts a raw disk.
          const size = image.size;
          expect(size).toBe(Math.ceil(requested / 512) * 512);
          const written = new Uint8Array(size);
          for (const [at, n0, byte] of writes) {
            const offset = at % size;
            const n = Math.min(n0, size - offset);
            await image.write(offset, new Uint8Array(n).fill(byte));
            written.fill(1, offset, offset + n);
          }
          let pos = 0;
          for await (const r of image.map()) {
            expect(r.start).toBe(pos);
            expect(r.depth).toBe(0);
            if (r.zero) {
              expect(written.subarray(r.start, r.start + r.length).every((w) => w === 0)).toBe(true);
              expect((await image.read(r.start, r.length)).every((b) => b === 0)).toBe(true);
            }
            pos += r.length;
          }
          expect(pos).toBe(size);
          await image.close();
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('raw block status: data stretches remembered', () => {
  /** A MemoryVfs file whose storage counts extentAt calls and punches holes at its tail (zeroRange). */
  async function counted(chunks: number) {
    const vfs = new MemoryVfs();
    const file = new MemoryFile();
    file.writeAt(0, new Uint8Array(chunks * CHUNK).fill(9));
    vfs.put('/d.raw', file);
    const calls = { extentAt: 0 };
    const wrapped = new (class extends ForwardingVfs {
      override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
        const s = await this.inner.open(path, options);
        return {
          path: s.path,
          readOnly: s.readOnly,
          capabilities: { ...s.capabilities, zeroRange: true },
          read: (o, into) => s.read(o, into),
          write: (o, d) => s.write!(o, d),
          size: () => s.size(),
          truncate: (n) => s.truncate!(n),
          flush: () => s.flush!(),
          close: () => s.close(),
          extentAt: async (o: number, n: number) => {
            calls.extentAt++;
            return s.extentAt!(o, n);
          },
          // Only a tail can be punched here (truncate and grow back): enough for the test.
          zeroRange: async (o: number, n: number) => {
            if (o + n !== file.length) return false;
            const length = file.length;
            file.truncate(o);
            file.truncate(length);
            return true;
          },
        };
      }
    })(vfs);
    const image = await openImage('/d.raw', { vfs: wrapped, format: 'raw' });
    return { image, calls };
  }

  it('status inside a data stretch is answered without asking the storage again', async () => {
    const { image, calls } = await counted(8);
    for (let i = 0; i < 8; i++) {
      const st = await image.status(i * CHUNK, CHUNK);
      expect(st).toMatchObject({ allocated: true, length: CHUNK, zero: false });
    }
    expect(calls.extentAt).toBe(1);
    await image.close();
  });

  it('discard, writeZeroes and resize forget it: a hole made there is reported as one', async () => {
    const { image, calls } = await counted(8);
    expect((await image.status(0, CHUNK)).zero).toBe(false);
    await image.discard(6 * CHUNK, 2 * CHUNK);
    expect((await image.status(6 * CHUNK, CHUNK)).zero).toBe(true);
    expect((await image.status(0, CHUNK)).zero).toBe(false);
    await image.writeZeroes(4 * CHUNK, 4 * CHUNK, { mayUnmap: true });
    expect((await image.status(4 * CHUNK, CHUNK)).zero).toBe(true);
    expect((await image.status(0, CHUNK)).zero).toBe(false);
    await image.resize(2 * CHUNK, { shrink: true });
    await image.resize(8 * CHUNK);
    expect((await image.status(2 * CHUNK, CHUNK)).zero).toBe(true);
    expect(calls.extentAt).toBeGreaterThanOrEqual(4);
    await image.close();
  });
});

describe('raw sizes are whole 512-byte sectors (as QEMU counts them)', () => {
  it('a file whose length is not a multiple of 512 is a disk of whole sectors: the tail reads as zeros, is a zero run, and a write there grows the file only to its end', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/odd.raw', new Uint8Array(1000).fill(7));
    const image = await openImage('/odd.raw', { vfs, format: 'raw' });
    expect(image.size).toBe(1024);
    expect([...(await image.read(996, 28))]).toEqual([7, 7, 7, 7, ...new Array<number>(24).fill(0)]);
    const runs = [];
    for await (const r of image.map()) runs.push({ start: r.start, length: r.length, zero: r.zero });
    expect(runs).toEqual([
      { start: 0, length: 1000, zero: false },
      { start: 1000, length: 24, zero: true },
    ]);
    await image.write(1010, new Uint8Array(10).fill(9));
    expect(vfs.file('/odd.raw').length).toBe(1020);
    await expect(image.write(1020, new Uint8Array(8))).rejects.toMatchObject({ kind: 'out-of-range' });
    await image.close();
  });

  it("create rounds the size up to whole sectors, as qemu-img's file driver does", async () => {
    const vfs = new MemoryVfs();
    await createImage('/c.raw', { vfs, format: 'raw', size: 1234 });
    expect(vfs.file('/c.raw').length).toBe(1536);
  });
});
