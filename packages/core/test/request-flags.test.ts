/** Request flags (issue 12): write { fua }, writeZeroes { mayUnmap, noFallback, fua }, advisory discard; unaligned writes without a whole-payload bounce. */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, createImage, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { overlayDriver } from './fixtures/overlay-driver.js';
import { flagDriver, type FlagCall, type FlagDriverOptions } from './fixtures/flag-driver.js';
import { bytes } from './fixtures/helpers.js';

async function openFlags(o: FlagDriverOptions, size = 8192, content?: Uint8Array) {
  const calls: FlagCall[] = [];
  const vfs = new MemoryVfs();
  vfs.put('/f.img', content ?? new Uint8Array(size));
  const driver = flagDriver(o, calls);
  const image = await openImage('/f.img', { registry: new DriverRegistry([driver]), vfs, format: 'flags' });
  calls.length = 0;
  return { image, calls, bytes: () => driver.bytes! };
}

/** Byte equality without vitest's element-by-element diff (slow on megabytes). */
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

const ops = (calls: FlagCall[]) =>
  calls.map((c) => (c.offset === undefined ? c.op : `${c.op} ${c.offset}+${c.length}`));

describe('write { fua }', () => {
  it('emulated: the driver gets no flag and is flushed after the write', async () => {
    const { image, calls } = await openFlags({});
    await image.write(10, new Uint8Array(5).fill(1), { fua: true });
    expect(ops(calls)).toEqual(['write 10+5', 'flush']);
    expect(calls[0]!.flags).toBeUndefined();
    calls.length = 0;
    await image.write(10, new Uint8Array(5).fill(1));
    expect(ops(calls)).toEqual(['write 10+5']);
  });

  it('native: the driver gets { fua: true } on every piece of an unaligned write and is not flushed', async () => {
    const { image, calls } = await openFlags({ requestAlignment: 512, capabilities: { fua: 'native' } }, 256 * 1024);
    await image.write(100, new Uint8Array(128 * 1024).fill(2), { fua: true });
    expect(ops(calls)).toEqual(['write 0+512', `write 512+${128 * 1024 - 512}`, `write ${128 * 1024}+512`]);
    expect(calls.every((c) => (c.flags as { fua?: boolean } | undefined)?.fua === true)).toBe(true);
  });

  it('emulated over an unaligned write: one flush, after every piece', async () => {
    const { image, calls, bytes: content } = await openFlags({ requestAlignment: 512 }, 256 * 1024);
    const n = 128 * 1024;
    await image.write(100, new Uint8Array(n).fill(2), { fua: true });
    expect(ops(calls)).toEqual(['write 0+512', `write 512+${n - 512}`, `write ${n}+512`, 'flush']);
    expect(
      content()
        .subarray(100, n + 100)
        .every((b) => b === 2),
    ).toBe(true);
    expect(
      content()
        .subarray(0, 100)
        .every((b) => b === 0)
        && content()
          .subarray(n + 100)
          .every((b) => b === 0),
    ).toBe(true);
    calls.length = 0;
    // Up to 64 KiB an unaligned write is copied into one bounce buffer: one driver write, then the flush.
    await image.write(100, new Uint8Array(2000).fill(3), { fua: true });
    expect(ops(calls)).toEqual(['write 0+2560', 'flush']);
  });

  it("refuses flags that are not booleans, and unknown flags, with 'invalid-argument' (nothing written)", async () => {
    const { image, calls } = await openFlags({});
    await expect(image.write(0, new Uint8Array(1), { fua: 'yes' } as never)).rejects.toMatchObject({
      kind: 'invalid-argument',
      field: 'flags.fua',
    });
    await expect(image.write(0, new Uint8Array(1), { fau: true } as never)).rejects.toMatchObject({
      kind: 'invalid-argument',
      field: 'flags.fau',
    });
    await expect(image.writeZeroes(0, 1, { noFallbak: true } as never)).rejects.toMatchObject({
      kind: 'invalid-argument',
    });
    expect(calls).toEqual([]);
  });
});

describe('unaligned writes do not bounce the whole payload', () => {
  it("a 1 MiB write at offset 1 (512-byte units): only the first and last units are bounced; the middle is a view of the caller's buffer", async () => {
    const MiB = 1024 * 1024;
    const { image, calls, bytes: content } = await openFlags({ requestAlignment: 512 }, 2 * MiB, bytes(2 * MiB, 9));
    const data = bytes(MiB, 3);
    await image.write(1, data);
    const writes = calls.filter((c) => c.op === 'write');
    expect(ops(writes)).toEqual(['write 0+512', `write 512+${MiB - 512}`, `write ${MiB}+512`]);
    // The middle is the caller's memory, not a copy: the bytes bounced are the two partial units.
    const middle = writes[1]!.data!;
    expect(middle.buffer).toBe(data.buffer);
    expect(middle.byteOffset).toBe(data.byteOffset + 511);
    const bounced = writes.filter((w) => w.data!.buffer !== data.buffer).reduce((n, w) => n + w.length!, 0);
    expect(bounced).toBe(1024);
    const expected = bytes(2 * MiB, 9);
    expected.set(data, 1);
    expect(same(content(), expected)).toBe(true);
    expect(same(await image.read(0, 2 * MiB), expected)).toBe(true);
  });

  it('a write inside one or two units, or of at most 64 KiB, still goes out as one bounced write', async () => {
    const { image, calls } = await openFlags({ requestAlignment: 512 });
    await image.write(500, new Uint8Array(30).fill(1));
    await image.write(1000, new Uint8Array(10).fill(1));
    await image.write(1, new Uint8Array(4096).fill(1));
    expect(ops(calls.filter((c) => c.op === 'write'))).toEqual(['write 0+1024', 'write 512+512', 'write 0+4608']);
  });
});

describe('writeZeroes { noFallback, mayUnmap, fua }', () => {
  it("noFallback where zeroes would be a buffer (no writeZeroes in the driver): 'not-supported', ENOTSUP, nothing written", async () => {
    const { image, calls, bytes: content } = await openFlags({}, 4096, new Uint8Array(4096).fill(7));
    expect(image.capabilities.writeZeroes).toBe('emulated');
    await expect(image.writeZeroes(0, 4096, { noFallback: true })).rejects.toMatchObject({
      kind: 'not-supported',
      code: 'ENOTSUP',
    });
    expect(calls).toEqual([]);
    expect(content().every((b) => b === 7)).toBe(true);
    // Without it, the core writes zeros.
    await image.writeZeroes(0, 4096);
    expect(content().every((b) => b === 0)).toBe(true);
  });

  it('noFallback with native zeroing: the driver zeroes; when it declines, ENOTSUP and nothing written', async () => {
    const yes = await openFlags({ requestAlignment: 512, writeZeroes: true }, 4096, new Uint8Array(4096).fill(7));
    await yes.image.writeZeroes(512, 1024, { noFallback: true });
    expect(ops(yes.calls)).toEqual(['writeZeroes 512+1024']);
    expect(
      yes
        .bytes()
        .subarray(512, 1536)
        .every((b) => b === 0),
    ).toBe(true);
    const no = await openFlags({ requestAlignment: 512, writeZeroes: false }, 4096, new Uint8Array(4096).fill(7));
    expect(no.image.capabilities.writeZeroes).toBe('native');
    await expect(no.image.writeZeroes(512, 1024, { noFallback: true, mayUnmap: true })).rejects.toMatchObject({
      kind: 'not-supported',
      code: 'ENOTSUP',
    });
    expect(ops(no.calls)).toEqual(['writeZeroes 512+1024']);
    expect(no.bytes().every((b) => b === 7)).toBe(true);
  });

  it('noFallback with unaligned edges (they would be written from a buffer): ENOTSUP before anything is done', async () => {
    const {
      image,
      calls,
      bytes: content,
    } = await openFlags({ requestAlignment: 512, writeZeroes: true }, 4096, new Uint8Array(4096).fill(7));
    await expect(image.writeZeroes(100, 1024, { noFallback: true })).rejects.toMatchObject({
      kind: 'not-supported',
      code: 'ENOTSUP',
    });
    await expect(image.writeZeroes(512, 1000, { noFallback: true })).rejects.toMatchObject({ kind: 'not-supported' });
    expect(calls).toEqual([]);
    expect(content().every((b) => b === 7)).toBe(true);
  });

  it("passes mayUnmap to the driver as a flag (false over a backing file is the core's business, see the cow tests)", async () => {
    const { image, calls } = await openFlags({ writeZeroes: true });
    await image.writeZeroes(0, 100, { mayUnmap: true });
    await image.writeZeroes(100, 100);
    expect(calls.map((c) => c.flags)).toEqual([{ mayUnmap: true }, { mayUnmap: false }]);
  });

  it('fua: flushed after the zeroing', async () => {
    const { image, calls } = await openFlags({ writeZeroes: true });
    await image.writeZeroes(0, 100, { fua: true });
    expect(ops(calls)).toEqual(['writeZeroes 0+100', 'flush']);
  });
});

describe('discard (advisory)', () => {
  it('clips an unaligned range inwards to the discard alignment, never refusing it', async () => {
    const { image, calls } = await openFlags(
      { requestAlignment: 512, discard: true, capabilities: { limits: { discardAlignment: 4096 } } },
      16384,
    );
    await image.discard(100, 10000);
    expect(ops(calls)).toEqual(['discard 4096+4096']);
    calls.length = 0;
    // Nothing whole inside: nothing to do, and no error.
    await image.discard(100, 4000);
    expect(calls).toEqual([]);
  });

  it('a range that reaches the end of the image is discarded to the end, even when the end is not aligned', async () => {
    const { image, calls } = await openFlags(
      { requestAlignment: 512, discard: true, capabilities: { limits: { discardAlignment: 4096 } } },
      10000,
    );
    await image.discard(4000, 6000);
    expect(ops(calls)).toEqual(['discard 4096+6144']);
  });

  it("'not-supported' (ENOTSUP) where the image cannot discard; range and read-only checks still come first", async () => {
    const { image } = await openFlags({});
    await expect(image.discard(0, 512)).rejects.toMatchObject({ kind: 'not-supported', code: 'ENOTSUP' });
    await expect(image.discard(0, 1 << 20)).rejects.toMatchObject({ kind: 'out-of-range' });
  });

  it('an overlay: an unaligned discard drops the whole sectors inside it, which read from the backing file again', async () => {
    const registry = new DriverRegistry([overlayDriver, rawDriver]);
    const vfs = new MemoryVfs();
    const base = bytes(4096, 5);
    vfs.put('/img/base.raw', base);
    await createImage('/img/top.ovl', { registry, vfs, format: 'ovl', backing: '/img/base.raw' });
    const image = await openImage('/img/top.ovl', { registry, vfs, format: 'ovl' });
    await image.write(0, new Uint8Array(4096).fill(9));
    await image.discard(100, 1500);
    const got = await image.read(0, 4096);
    expect(got.subarray(0, 512).every((b) => b === 9)).toBe(true);
    expect(got.subarray(512, 1536)).toEqual(base.subarray(512, 1536));
    expect(got.subarray(1536).every((b) => b === 9)).toBe(true);
  });
});
