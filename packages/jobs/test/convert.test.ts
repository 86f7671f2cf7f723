/**
 * The convert job and its copy engine over MemoryVfs (portable: no host file
 * system): each run is read once, from the layer that holds it; holes stay
 * holes; -n writes zeros over an existing target; an AbortSignal stops the
 * job with `aborted` and leaves DST untouched.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createImage, Image, MemoryVfs, openImage } from '@blk/core';
import { isBlockError, type BlockErrorKind } from '@blk/core';
import { convertImage, copyImageData, copyOwnRuns, sparseGranule, targetGranule } from '@blk/jobs';
import { chain as chainOf, contents, firstDifference, KiB, midIsCow, registry, SIZE } from './fixtures/chain.js';

const isBlockErrorKind = (kind: BlockErrorKind) => (err: unknown) => isBlockError(err, kind);

/** base.raw (512 KiB) <- mid.cow (1 MiB) <- top.cow; the top holds 8 KiB of zeros (data that is zero) at 900 KiB. */
const chain = () =>
  chainOf({
    baseSize: SIZE / 2, // shorter than the overlays: [512K, 1M) is held by no layer
    top: [
      { start: 80 * KiB, length: 4 * KiB, seed: 4 }, // inside mid's run
      { start: 300 * KiB, length: 12 * KiB, seed: 5 },
      { start: 900 * KiB, length: 8 * KiB }, // zeros the top holds: data that is zero
    ],
  });

afterEach(() => {
  vi.restoreAllMocks();
});

describe('convert (@blk/jobs over MemoryVfs)', () => {
  it('reads each run once, from the layer that holds it (never through the top), and copies the chain', async () => {
    const vfs = await chain();
    const expected = await contents(vfs, '/top.cow');
    // Which layer holds what, as the job will see it.
    const probe = await openImage('/top.cow', { registry, vfs, backing: midIsCow });
    const held = new Map<string, number>();
    const runs: Array<{ start: number; end: number; path: string | undefined }> = [];
    for await (const run of probe.map()) {
      const path = run.depth === undefined || run.zero ? undefined : probe.chain()[run.depth]!.path;
      runs.push({ start: run.start, end: run.start + run.length, path });
      if (path) held.set(path, (held.get(path) ?? 0) + run.length);
    }
    await probe.close();
    expect(held.get('/base.raw')).toBeGreaterThan(0);
    expect(held.get('/mid.cow')).toBeGreaterThan(0);
    expect(held.get('/top.cow')).toBeGreaterThan(0);

    const reads: Array<{ path: string; offset: number; length: number }> = [];
    const original = Image.prototype.readInto;
    vi.spyOn(Image.prototype, 'readInto').mockImplementation(function (this: Image, offset, into, options) {
      reads.push({ path: this.path, offset, length: into.length });
      return original.call(this, offset, into, options);
    });
    await convertImage('/top.cow', '/out.raw', { registry, vfs, backingProbe: true, chunkSize: 64 * KiB });
    vi.restoreAllMocks();

    expect(firstDifference(await contents(vfs, '/out.raw', { format: 'raw' }), expected)).toBe(-1);
    const sourceReads = reads.filter((r) => ['/top.cow', '/mid.cow', '/base.raw'].includes(r.path));
    // Every read lies inside runs held by the layer it was made on...
    for (const r of sourceReads) {
      for (const run of runs) {
        if (run.end <= r.offset || run.start >= r.offset + r.length) continue;
        expect({ ...r, heldBy: run.path }).toEqual({ ...r, heldBy: r.path });
      }
    }
    // ...and each layer was read exactly for the bytes it holds: once each.
    for (const [path, bytes] of held) {
      const read = sourceReads.filter((r) => r.path === path).reduce((n, r) => n + r.length, 0);
      expect({ path, read }).toEqual({ path, read: bytes });
    }
  });

  it('writes large windows: runs of several layers inside one window go out as one write', async () => {
    const vfs = await chain();
    const writes: Array<{ offset: number; length: number }> = [];
    const original = Image.prototype.write;
    vi.spyOn(Image.prototype, 'write').mockImplementation(function (this: Image, offset, data) {
      if (this.path.startsWith('/out.raw')) writes.push({ offset, length: data.length });
      return original.call(this, offset, data);
    });
    await convertImage('/top.cow', '/out.raw', { registry, vfs, backingProbe: true, chunkSize: 1024 * KiB });
    // One window of 1 MiB: base [0, 512K) with mid and top runs inside it is one contiguous span;
    // mid's run at 700K is another; the top's zeros at 900K and the unallocated rest are holes.
    expect(writes).toEqual([
      { offset: 0, length: 512 * KiB },
      { offset: 700 * KiB, length: 8 * KiB },
    ]);
  });

  it('keeps holes: nothing is written where the chain reads zeros; -n writes zeros over an existing target', async () => {
    const vfs = await chain();
    const expected = await contents(vfs, '/top.cow');
    vfs.put('/existing.raw', new Uint8Array(SIZE).fill(0xff));
    const zeroed: Array<{ offset: number; length: number }> = [];
    const original = Image.prototype.writeZeroes;
    vi.spyOn(Image.prototype, 'writeZeroes').mockImplementation(function (this: Image, offset, length, o) {
      zeroed.push({ offset, length });
      return original.call(this, offset, length, o);
    });
    await convertImage('/top.cow', '/existing.raw', {
      registry,
      vfs,
      backingProbe: true,
      existingTarget: true,
      outputFormat: 'raw',
    });
    expect(firstDifference(await contents(vfs, '/existing.raw', { format: 'raw' }), expected)).toBe(-1);
    expect(zeroed.length).toBeGreaterThan(0);
    expect(zeroed.every((z) => z.offset >= 512 * KiB)).toBe(true);
  });

  it('stops with `aborted` between windows and leaves DST untouched (the temporary file removed)', async () => {
    const vfs = await chain();
    vfs.put('/out.raw', new Uint8Array([1, 2, 3]));
    const controller = new AbortController();
    let updates = 0;
    const temps: Array<string | undefined> = [];
    const job = convertImage('/top.cow', '/out.raw', {
      registry,
      vfs,
      backingProbe: true,
      chunkSize: 64 * KiB,
      signal: controller.signal,
      onTempFile: (p) => temps.push(p),
      onProgress: (e) => {
        if (e.phase === 'update' && ++updates === 2) controller.abort();
      },
    });
    await expect(job).rejects.toSatisfy(isBlockErrorKind('aborted'));
    expect(updates).toBeLessThan(SIZE / (64 * KiB));
    const head = new Uint8Array(4);
    expect(vfs.file('/out.raw').readAt(0, head)).toBe(3);
    expect(head.subarray(0, 3)).toEqual(new Uint8Array([1, 2, 3]));
    expect(temps).toHaveLength(2);
    expect(temps[1]).toBeUndefined();
    expect(await vfs.exists(temps[0]!)).toBe(false);
  });

  it('refuses to start when the signal has fired already', async () => {
    const vfs = await chain();
    const controller = new AbortController();
    controller.abort(new Error('user said stop'));
    await expect(
      convertImage('/top.cow', '/out.raw', { registry, vfs, backingProbe: true, signal: controller.signal }),
    ).rejects.toSatisfy(isBlockErrorKind('aborted'));
    expect(await vfs.exists('/out.raw')).toBe(false);
  });

  it('the copy engine stops between windows when aborted (copyImageData)', async () => {
    const vfs = await chain();
    const source = await openImage('/top.cow', { registry, vfs, readOnly: true, backing: midIsCow });
    await createImage('/copy.raw', { registry, vfs, format: 'raw', size: source.size });
    const target = await openImage('/copy.raw', { registry, vfs, format: 'raw' });
    const controller = new AbortController();
    const writes: number[] = [];
    const original = Image.prototype.write;
    vi.spyOn(Image.prototype, 'write').mockImplementation(function (this: Image, offset, data) {
      writes.push(offset);
      controller.abort();
      return original.call(this, offset, data);
    });
    await expect(
      copyImageData(source, target, { chunk: 16 * KiB, depth: 1, sparseSize: 4096, signal: controller.signal }),
    ).rejects.toSatisfy(isBlockErrorKind('aborted'));
    expect(writes).toHaveLength(1);
    await target.close();
    await source.close();
  });

  it("packs a window's runs at the start of its buffer: the memory a copy touches follows the data, not the window size", async () => {
    const vfs = await chain();
    const top = await openImage('/top.cow', { registry, vfs, readOnly: true, backing: midIsCow });
    await createImage('/into.raw', { registry, vfs, format: 'raw', size: top.size });
    const into = await openImage('/into.raw', { registry, vfs, format: 'raw' });
    // Where in its buffer each read and write of the copy lands (the buffer is the engine's 1 MiB window).
    const touched: number[] = [];
    const readInto = Image.prototype.readInto;
    vi.spyOn(Image.prototype, 'readInto').mockImplementation(function (this: Image, offset, buf, options) {
      touched.push(buf.byteOffset + buf.length);
      return readInto.call(this, offset, buf, options);
    });
    const write = Image.prototype.write;
    vi.spyOn(Image.prototype, 'write').mockImplementation(function (this: Image, offset, data, options) {
      touched.push(data.byteOffset + data.length);
      return write.call(this, offset, data, options);
    });
    let copied = 0;
    // top.cow's own runs: 4 KiB at 80 KiB, 12 KiB at 300 KiB, 8 KiB at 900 KiB: one 1 MiB window, 24 KiB of data.
    await copyOwnRuns(top, into, 1024 * KiB, (n) => {
      copied += n;
    });
    expect(copied).toBe(24 * KiB);
    expect(touched.length).toBeGreaterThanOrEqual(6);
    expect(Math.max(...touched)).toBeLessThanOrEqual(24 * KiB);
    const got = await into.read(0, into.size);
    const want = await top.read(0, top.size);
    for (const [at, n] of [
      [80 * KiB, 4 * KiB],
      [300 * KiB, 12 * KiB],
      [900 * KiB, 8 * KiB],
    ] as const) {
      expect(firstDifference(got.subarray(at, at + n), want.subarray(at, at + n))).toBe(-1);
    }
    await into.close();
    await top.close();
  });

  it('zero detection: stretches of zero granules between data are skipped, the rest written in coalesced requests', async () => {
    // 2 MiB of data with zero stretches of every shape: several granules long, one granule, shorter than a
    // granule, crossing a window boundary, at the very start and at the very end, and granules whose
    // first and last bytes are zero around data.
    const size = 2048 * KiB;
    const src = new Uint8Array(size).fill(0x5a);
    const zero = (start: number, length: number) => src.fill(0, start, start + length);
    zero(0, 12 * KiB); // the first three granules
    zero(20 * KiB, 4 * KiB); // one granule
    zero(30 * KiB + 100, 3 * KiB); // inside one granule only: written
    zero(100 * KiB + 1, 40 * KiB); // starts one byte into a granule: the granules wholly inside go
    zero(1020 * KiB, 12 * KiB); // across the 1 MiB window boundary
    zero(1500 * KiB, 4 * KiB - 1); // a granule whose last byte only is data
    zero(1600 * KiB + 1, 4 * KiB - 1); // a granule whose first byte only is data
    zero(1700 * KiB, 8 * KiB);
    src[1702 * KiB] = 1; // data in the middle of zeros: first and last byte of its granule zero
    zero(size - 36 * KiB, 36 * KiB); // the end
    const vfs = new MemoryVfs();
    vfs.put('/z.raw', src);
    for (const sparse of [4 * KiB, 16 * KiB]) {
      const source = await openImage('/z.raw', { registry, vfs, format: 'raw', readOnly: true });
      const name = `/z-${sparse}.raw`;
      await createImage(name, { registry, vfs, format: 'raw', size });
      const target = await openImage(name, { registry, vfs, format: 'raw' });
      const writes: Array<[number, number]> = [];
      const write = Image.prototype.write;
      vi.spyOn(Image.prototype, 'write').mockImplementation(function (this: Image, offset, data, options) {
        if (this === target) writes.push([offset, data.length]);
        return write.call(this, offset, data, options);
      });
      await copyImageData(source, target, { chunk: 1024 * KiB, depth: 2, sparseSize: sparse });
      vi.restoreAllMocks();
      // What a granule-by-granule test gives: every granule holding a non-zero byte written, neighbours in one
      // write, windows (1 MiB) written separately.
      const want: Array<[number, number]> = [];
      for (let g = 0; g < size; g += sparse) {
        if (src.subarray(g, g + sparse).every((b) => b === 0)) continue;
        const last = want[want.length - 1];
        if (last && last[0] + last[1] === g && g % (1024 * KiB) !== 0) last[1] += sparse;
        else want.push([g, sparse]);
      }
      expect(writes).toEqual(want);
      expect(firstDifference(await target.read(0, size), src)).toBe(-1);
      await target.close();
      await source.close();
    }
  });

  it('sparse granule: the larger of -S and the target allocation unit', async () => {
    const vfs = new MemoryVfs();
    await createImage('/t.cow', { registry, vfs, format: 'cow', size: SIZE });
    const t = await openImage('/t.cow', { registry, vfs });
    expect(targetGranule(t)).toBeGreaterThanOrEqual(512);
    expect(sparseGranule(4096, t)).toBe(Math.max(4096, targetGranule(t)));
    expect(sparseGranule(0, t)).toBe(targetGranule(t));
    const fake = Object.create(t, {
      capabilities: { value: { limits: { clusterSize: 65536, requestAlignment: 512 } } },
    }) as Image;
    expect(targetGranule(fake)).toBe(65536);
    expect(sparseGranule(4096, fake)).toBe(65536);
    await t.close();
  });
});
