/**
 * The public API checks what callers pass it: option typos, wrong types and
 * NaN fail with `invalid-argument` naming the option, instead of silently
 * choosing another behaviour (issue 10, point 7).
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, createImage, openImage, type Image } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { overlayDriver } from './fixtures/overlay-driver.js';
import { bytes } from './fixtures/helpers.js';

const registry = new DriverRegistry([overlayDriver, rawDriver]);
const SIZE = 8192;

/** raw base of pattern bytes under an empty ovl overlay (512-byte sectors). */
async function chain(): Promise<{ vfs: MemoryVfs; base: Uint8Array }> {
  const vfs = new MemoryVfs();
  const base = bytes(SIZE, 3);
  vfs.put('/d/base.raw', base);
  await createImage('/d/top.ovl', { registry, vfs, format: 'ovl', backing: '/d/base.raw' });
  return { vfs, base };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => 'resolved',
    (err: unknown) => err,
  );
}

describe('openImage and createImage options', () => {
  it("a backing.mode typo is refused with 'invalid-argument' naming backing.mode (it used to act as 'ignore')", async () => {
    const { vfs } = await chain();
    for (const mode of ['opne', 'Open', '', 1, null]) {
      const err = await rejection(openImage('/d/top.ovl', { registry, vfs, backing: { mode: mode as never } }));
      expect(err, `mode ${String(mode)}`).toMatchObject({
        kind: 'invalid-argument',
        field: 'backing.mode',
        path: '/d/top.ovl',
      });
    }
  });

  it('refuses unknown option names, wrong types and NaN anywhere in the options, naming the option', async () => {
    const { vfs } = await chain();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ readonly: true }, 'options.readonly'],
      [{ readOnly: 'yes' }, 'readOnly'],
      [{ cache: 'write-back' }, 'cache'],
      [{ format: 7 }, 'format'],
      [{ driverOptions: 'variant=v3' }, 'driverOptions'],
      [{ backing: { maxDepth: Number.NaN } }, 'backing.maxDepth'],
      [{ backing: { maxDepth: 2.5 } }, 'backing.maxDepth'],
      [{ backing: { allowedDirs: '/d' } }, 'backing.allowedDirs'],
      [{ backing: { allowedDirs: ['/d', 3] } }, 'backing.allowedDirs[1]'],
      [{ backing: { onMismatch: 'ignore' } }, 'backing.onMismatch'],
      [{ backing: { allowDirs: ['/d'] } }, 'backing.allowDirs'],
      [{ backing: { overridePath: '' } }, 'backing.overridePath'],
      [{ backing: 'open' }, 'backing'],
      [{ registry: {} }, 'registry'],
      [{ onRepair: 'print' }, 'onRepair'],
    ];
    for (const [extra, field] of cases) {
      const err = await rejection(openImage('/d/top.ovl', { registry, vfs, ...extra } as never));
      expect(err, JSON.stringify(extra)).toMatchObject({ kind: 'invalid-argument', field });
      expect((err as Error).message).toContain(field);
    }
  });

  it('a backing.format function must return a format name or undefined', async () => {
    const { vfs } = await chain();
    const err = await rejection(openImage('/d/top.ovl', { registry, vfs, backing: { format: () => 42 as never } }));
    expect(err).toMatchObject({ kind: 'invalid-argument', field: 'backing.format' });
    // undefined means "the default for this level" (raw here) and opens.
    const image = await openImage('/d/top.ovl', { registry, vfs, backing: { format: () => undefined } });
    expect(image.backing?.format).toBe('raw');
    await image.close();
  });

  it('driver options raw does not have are refused, not ignored', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/d/disk.raw', new Uint8Array(SIZE));
    const err = await rejection(
      openImage('/d/disk.raw', { registry, vfs, format: 'raw', driverOptions: { variant: 'v3' } }),
    );
    expect(err).toMatchObject({ kind: 'invalid-argument', field: 'driverOptions.variant' });
    const created = await rejection(
      createImage('/d/new.raw', { registry, vfs, format: 'raw', size: 512, driverOptions: { sise: 1 } }),
    );
    expect(created).toMatchObject({ kind: 'invalid-argument', field: 'driverOptions.sise' });
    expect(await vfs.exists('/d/new.raw')).toBe(false);
  });

  it('createImage refuses unknown options and wrong types before creating anything', async () => {
    const vfs = new MemoryVfs();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ format: 'raw', size: 512, overwite: true }, 'options.overwite'],
      [{ format: 'raw', size: '512' }, 'size'],
      [{ format: 'raw', size: 512, overwrite: 'yes' }, 'overwrite'],
      [{ format: 'ovl', backing: { path: '/d/b', fmt: 'raw' } }, 'backing.fmt'],
      [{ format: 'ovl', backing: 5 }, 'backing'],
    ];
    for (const [options, field] of cases) {
      const err = await rejection(createImage('/d/x.img', { registry, vfs, ...options } as never));
      expect(err, JSON.stringify(options)).toMatchObject({ kind: 'invalid-argument', field });
    }
    expect(await vfs.exists('/d/x.img')).toBe(false);
  });
});

describe('Image method arguments', () => {
  async function rawImage(): Promise<{ vfs: MemoryVfs; image: Image }> {
    const vfs = new MemoryVfs();
    vfs.put('/d/disk.raw', bytes(SIZE));
    return { vfs, image: await openImage('/d/disk.raw', { registry, vfs, format: 'raw' }) };
  }

  it('write refuses anything but bytes: a Uint16Array (counted in elements) no longer grows the image', async () => {
    const { vfs, image } = await rawImage();
    for (const data of [new Uint16Array(8), 'abcd', [1, 2, 3], new DataView(new ArrayBuffer(4)), new Float64Array(2)]) {
      const err = await rejection(image.write(SIZE - 8, data as never));
      expect(err, Object.prototype.toString.call(data)).toMatchObject({ kind: 'invalid-argument', field: 'data' });
    }
    await image.close();
    expect(vfs.file('/d/disk.raw').length).toBe(SIZE);
    expect(vfs.file('/d/disk.raw').snapshot()).toEqual(bytes(SIZE));
  });

  it('read, readInto, status and discard refuse non-numbers and non-byte buffers with invalid-argument', async () => {
    const { image } = await rawImage();
    expect(await rejection(image.read('5' as never, 1))).toMatchObject({ kind: 'invalid-argument', field: 'offset' });
    expect(await rejection(image.read(0, 10n as never))).toMatchObject({ kind: 'invalid-argument', field: 'length' });
    expect(await rejection(image.readInto(0, new Uint32Array(2) as never))).toMatchObject({
      kind: 'invalid-argument',
      field: 'into',
    });
    expect(await rejection(image.readInto(0, new Uint8Array(2), 'sync' as never))).toMatchObject({
      kind: 'invalid-argument',
      field: 'options',
    });
    expect(await rejection(image.isAllocated(null as never, 1))).toMatchObject({
      kind: 'invalid-argument',
      field: 'offset',
    });
    expect(await rejection(image.discard(0, '512' as never))).toMatchObject({
      kind: 'invalid-argument',
      field: 'length',
    });
    // Numbers out of range keep their kind.
    expect(await rejection(image.read(Number.NaN, 1))).toMatchObject({ kind: 'out-of-range' });
    // Buffers (a Uint8Array subclass) are bytes.
    await image.write(0, Buffer.from([1, 2, 3]));
    expect(await image.read(0, 3)).toEqual(new Uint8Array([1, 2, 3]));
    await image.close();
  });
});

describe("backing.mode 'ignore' on a writable image", () => {
  it('refuses a partial-sector write that would store zeros over the backing data; the chain still reads the base', async () => {
    const { vfs, base } = await chain();
    const image = await openImage('/d/top.ovl', { registry, vfs, backing: { mode: 'ignore' } });
    const err = await rejection(image.write(100, new Uint8Array([0xee])));
    expect(err).toMatchObject({ kind: 'not-supported', path: '/d/top.ovl', offset: 0 });
    expect((err as Error).message).toContain("backing.mode 'ignore'");
    // Whole sectors need nothing from below and are written.
    await image.write(512, new Uint8Array(512).fill(0xab));
    await image.close();
    const whole = await openImage('/d/top.ovl', { registry, vfs, readOnly: true });
    const read = await whole.read(0, 1024);
    await whole.close();
    expect(read.subarray(0, 512)).toEqual(base.subarray(0, 512));
    expect(read.subarray(512)).toEqual(new Uint8Array(512).fill(0xab));
  });
});
