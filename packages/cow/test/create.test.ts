/** create: what each variant writes, and the arguments it refuses. */
import { describe, expect, it } from 'vitest';
import { BlockError, MemoryFile, MemoryStorage } from '@blk/core';
import { cowDriver, parseHeader } from '../src/index.js';
import { MiB, VECTOR_BACKING, openFile, toSpec } from './helpers.js';

type Backing = { path: string; size: number; mtimeSec: number };

async function createError(options: {
  size: number;
  backing?: Backing;
  driverOptions?: Record<string, unknown>;
}): Promise<BlockError> {
  const err = await cowDriver.create!(new MemoryStorage(new MemoryFile(), '/new.cow'), {
    ...options,
    backing: toSpec(options.backing),
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BlockError);
  expect((err as BlockError).path).toBe('/new.cow');
  return err as BlockError;
}

async function create(options: {
  size: number;
  backing?: Backing;
  driverOptions?: Record<string, unknown>;
}): Promise<MemoryFile> {
  const file = new MemoryFile();
  await cowDriver.create!(new MemoryStorage(file, '/new.cow'), { ...options, backing: toSpec(options.backing) });
  return file;
}

describe('create writes', () => {
  it('v3 by default, sparse: only the header chunk holds memory', async () => {
    const file = await create({ size: 64 * MiB, backing: toSpec(VECTOR_BACKING) });
    const header = new Uint8Array(4128);
    file.readAt(0, header);
    expect(parseHeader(header, 'v3')).toMatchObject({ alignment: 4096, cowFormat: 0, backingFile: '/tmp/base.img' });
    expect(file.allocatedBytes).toBe(65536);
  });

  it('the backing mtime modulo 2^32', async () => {
    const file = await create({ size: 64 * MiB, backing: { ...VECTOR_BACKING, mtimeSec: 2 ** 32 + 5 } });
    const header = new Uint8Array(4128);
    file.readAt(0, header);
    expect(parseHeader(header, 'v3').mtime).toBe(5);
  });

  it('v2-qemu-lp64 without a backing file: empty path, mtime 0, no backing reference on open', async () => {
    const file = await create({ size: MiB, driverOptions: { variant: 'v2-qemu-lp64' } });
    const header = new Uint8Array(1056);
    file.readAt(0, header);
    expect(parseHeader(header, 'v2-qemu-lp64')).toMatchObject({ backingFile: '', mtime: 0, size: MiB });
    expect(file.length).toBe(1056 + 256);
    const image = await openFile(file);
    expect(image.backing).toBeUndefined();
    await image.close();
  });

  it("without a backing file and no variant named: v2-qemu-lp64, as QEMU's cow_create wrote (v3 cannot store an empty path)", async () => {
    const file = await create({ size: MiB });
    const named = await create({ size: MiB, driverOptions: { variant: 'v2-qemu-lp64' } });
    expect(Buffer.from(file.snapshot()).equals(Buffer.from(named.snapshot()))).toBe(true);
    const image = await openFile(file);
    expect(image.variant).toBe('v2-qemu-lp64');
    await image.close();
  });

  it('v2-qemu-lp64 with a backing file: a reference without size/mtime expectations (QEMU checks neither)', async () => {
    const image = await openFile(
      await create({
        size: MiB,
        backing: { path: '/base', size: 5 * MiB, mtimeSec: 9 },
        driverOptions: { variant: 'v2-qemu-lp64' },
      }),
    );
    expect(image.backing).toEqual({ path: '/base' });
    expect(image.size).toBe(MiB);
    await image.close();
  });

  it('UML variants report the backing size and mtime to check', async () => {
    const image = await openFile(await create({ size: 64 * MiB, backing: VECTOR_BACKING }));
    expect(image.backing).toEqual({ path: '/tmp/base.img', expect: { size: 64 * MiB, mtimeSec: 0x5f000000 } });
    await image.close();
  });

  it('replaces whatever the storage held: the new bitmap is all clear', async () => {
    const file = new MemoryFile(new Uint8Array(100_000).fill(0xff));
    await cowDriver.create!(new MemoryStorage(file), { size: 64 * MiB, backing: toSpec(VECTOR_BACKING) });
    const image = await openFile(file);
    expect(await image.blockStatus(0, image.size)).toEqual({ allocated: false, length: image.size });
    await image.close();
  });
});

describe('create refuses', () => {
  it('v3 without a backing file (an empty path would read back as v3-broken)', async () => {
    expect(await createError({ size: MiB, driverOptions: { variant: 'v3' } })).toMatchObject({
      kind: 'invalid-argument',
      field: 'backing_file',
    });
  });

  it('a size that is not a multiple of 512', async () => {
    expect(await createError({ size: 1000, backing: { ...VECTOR_BACKING, size: 1000 } })).toMatchObject({
      kind: 'invalid-argument',
      field: 'size',
    });
  });

  it('size 0', async () => {
    expect(await createError({ size: 0, driverOptions: { variant: 'v2-qemu-lp64' } })).toMatchObject({
      kind: 'invalid-argument',
      field: 'size',
    });
  });

  it('v1 / v2-uml sizes that are not a multiple of 4096', async () => {
    for (const variant of ['v1', 'v2-uml']) {
      const err = await createError({
        size: 4608,
        backing: { ...VECTOR_BACKING, size: 4608 },
        driverOptions: { variant },
      });
      expect(err).toMatchObject({ kind: 'invalid-argument', field: 'size' });
      expect(err.message).toMatch(/4096/);
    }
  });

  it('a UML image whose size differs from its backing file (UML would refuse to open it)', async () => {
    const err = await createError({ size: 32 * MiB, backing: VECTOR_BACKING });
    expect(err).toMatchObject({ kind: 'invalid-argument', field: 'size' });
  });

  it('variant v3-broken (no writer may produce it)', async () => {
    expect(
      await createError({
        size: MiB,
        backing: { ...VECTOR_BACKING, size: MiB },
        driverOptions: { variant: 'v3-broken' },
      }),
    ).toMatchObject({ kind: 'invalid-argument', field: 'variant' });
  });

  it('an alignment that is not a power of two, or one given for a non-v3 variant', async () => {
    expect(
      await createError({ size: MiB, backing: { ...VECTOR_BACKING, size: MiB }, driverOptions: { alignment: 1000 } }),
    ).toMatchObject({ kind: 'invalid-argument', field: 'alignment' });
    expect(await createError({ size: MiB, driverOptions: { variant: 'v2-qemu-lp64', alignment: 512 } })).toMatchObject({
      kind: 'invalid-argument',
      field: 'alignment',
    });
  });

  const limits: Array<[string, number]> = [
    ['v1', 255],
    ['v2-uml', 4095],
    ['v3', 4095],
    ['v2-qemu-lp64', 1023],
    ['v2-qemu-ilp32', 1023],
  ];
  for (const [variant, max] of limits) {
    it(`${variant}: a backing path of ${max} UTF-8 bytes fits, ${max + 1} is invalid-argument`, async () => {
      const fits = `/${'é'.repeat((max - 1) / 2)}${(max - 1) % 2 ? 'x' : ''}`;
      expect(new TextEncoder().encode(fits).length).toBe(max);
      const backing = { path: fits, size: 64 * MiB, mtimeSec: 1 };
      await create({ size: 64 * MiB, backing, driverOptions: { variant } });
      const err = await createError({
        size: 64 * MiB,
        backing: { ...backing, path: `${fits}x` },
        driverOptions: { variant },
      });
      expect(err).toMatchObject({ kind: 'invalid-argument', field: 'backing_file' });
    });
  }
});
