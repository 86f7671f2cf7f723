/** setBacking, discard, and the driver inside @blk/core's backing chains (memory and real files). */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockError, DriverRegistry, MemoryVfs, NodeVfs, createImage, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver, parseHeader, type CowVariant } from '../src/index.js';
import { MiB, SS, bitmapByte, createFile, openFile, pattern, recordingBelow, sameBytes, sha256 } from './helpers.js';

const registry = new DriverRegistry([cowDriver, rawDriver]);

describe('setBacking', () => {
  const variants: CowVariant[] = ['v1', 'v2-uml', 'v3', 'v2-qemu-lp64', 'v2-qemu-ilp32'];
  for (const variant of variants) {
    it(`${variant}: rewrites path and mtime in the same layout and leaves every byte after the header alone`, async () => {
      const file = await createFile({ variant, size: 4 * MiB });
      const image = await openFile(file);
      const { headerSize } = image.layout;
      await image.write(5 * SS, pattern(5, 3));
      await image.flush();
      const rest = sha256(file.snapshot().subarray(headerSize));
      await image.setBacking({ path: '/new/base.img', facts: { size: 4 * MiB, mtimeSec: 1234 } });
      await image.close();
      expect(sha256(file.snapshot().subarray(headerSize))).toBe(rest);
      const again = await openFile(file);
      expect(again.variant).toBe(variant);
      expect(again.backing?.path).toBe('/new/base.img');
      expect(again.info()).toMatchObject({ backingMtime: 1234, backingSize: 4 * MiB });
      expect((await again.blockStatus(5 * SS, 3 * SS)).allocated).toBe(true);
      await again.close();
    });
  }

  it('v3-broken keeps its layout and its padding bytes', async () => {
    const { encodeHeader } = await import('../src/index.js');
    const header = encodeHeader({
      variant: 'v3-broken',
      magicOrder: 'be',
      version: 3,
      backingFile: '/old',
      mtime: 1,
      size: MiB,
      sectorSize: 512,
      alignment: 4096,
      cowFormat: 0,
    });
    header.set([1, 2, 3, 4], 12);
    const { MemoryFile } = await import('@blk/core');
    const file = new MemoryFile(header);
    file.truncate(8192 + 256 + 4096 + MiB);
    const image = await openFile(file);
    await image.setBacking({ path: '/newer', facts: { size: MiB, mtimeSec: 2 } });
    await image.close();
    const bytes = file.snapshot().subarray(0, 4136);
    expect([...bytes.subarray(12, 16)]).toEqual([1, 2, 3, 4]);
    expect(parseHeader(bytes, 'v3-broken')).toMatchObject({ backingFile: '/newer', mtime: 2, size: MiB });
  });

  it('a UML image refuses a backing file of another size (the size fixes its layout)', async () => {
    const image = await openFile(await createFile());
    const err = await image.setBacking({ path: '/x', facts: { size: 32 * MiB, mtimeSec: 1 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'not-supported', field: 'size' });
    await image.close();
  });

  it('a UML image refuses to drop its backing file', async () => {
    const image = await openFile(await createFile());
    await expect(image.setBacking(undefined)).rejects.toMatchObject({ kind: 'not-supported' });
    await image.close();
  });

  it('a QEMU image can drop its backing file (empty path, mtime 0)', async () => {
    const file = await createFile({ variant: 'v2-qemu-lp64' });
    const image = await openFile(file);
    await image.setBacking(undefined);
    await image.close();
    const again = await openFile(file);
    expect(again.backing).toBeUndefined();
    expect(again.info()).toMatchObject({ backingFile: '', backingMtime: 0 });
    await again.close();
  });

  it('a path too long for the variant is invalid-argument and the header is untouched', async () => {
    const file = await createFile({ variant: 'v1', size: MiB });
    const before = sha256(file.snapshot().subarray(0, 280));
    const image = await openFile(file);
    await expect(
      image.setBacking({ path: `/${'a'.repeat(300)}`, facts: { size: MiB, mtimeSec: 1 } }),
    ).rejects.toMatchObject({ kind: 'invalid-argument', field: 'backing_file' });
    await image.close();
    expect(sha256(file.snapshot().subarray(0, 280))).toBe(before);
  });
});

describe('discard', () => {
  it('clears the bits (on disk at the next flush) so reads fall through again', async () => {
    const file = await createFile();
    const image = await openFile(file);
    await image.write(0, pattern(0, 16));
    await image.flush();
    expect(bitmapByte(file, 8192, 0)).toBe(0xff);
    await image.discard(4 * SS, 8 * SS);
    await image.flush();
    expect(bitmapByte(file, 8192, 0)).toBe(0x0f);
    expect(bitmapByte(file, 8192, 1)).toBe(0xf0);
    const { calls, below } = recordingBelow();
    await image.read(0, new Uint8Array(16 * SS), below);
    expect(calls).toEqual([[4 * SS, 8 * SS]]);
    await image.close();
  });

  it('in writethrough mode the cleared bits are on disk when discard resolves', async () => {
    const file = await createFile();
    const image = await openFile(file, { cache: 'writethrough' });
    await image.write(0, pattern(0, 8));
    await image.discard(0, 8 * SS);
    expect(bitmapByte(file, 8192, 0)).toBe(0);
    await image.close();
  });

  it('discarding the whole image empties it', async () => {
    const image = await openFile(await createFile());
    await image.write(0, pattern(0, 3));
    await image.write(image.size - SS, pattern(0, 1));
    await image.discard(0, image.size);
    expect(await image.blockStatus(0, image.size)).toEqual({ allocated: false, length: image.size });
    await image.close();
  });
});

describe('in a backing chain (@blk/core, MemoryVfs)', () => {
  async function chain(variant?: string) {
    const vfs = new MemoryVfs();
    const base = vfs.put('/img/base.raw', new Uint8Array(MiB).fill(0x42));
    await createImage('/img/top.cow', {
      registry,
      vfs,
      format: 'cow',
      backing: '/img/base.raw',
      driverOptions: variant ? { variant } : undefined,
    });
    return { vfs, base };
  }

  it('probes as cow, reads through to the raw backing file, keeps writes in the overlay', async () => {
    const { vfs } = await chain();
    const image = await openImage('/img/top.cow', { registry, vfs });
    expect(image.format).toBe('cow');
    await image.write(SS + 10, new Uint8Array([1, 2, 3]));
    const got = await image.read(SS, 2 * SS);
    expect(got[9]).toBe(0x42);
    expect([...got.subarray(10, 13)]).toEqual([1, 2, 3]);
    expect(got[SS]).toBe(0x42);
    expect(await image.isAllocated(0, 3 * SS)).toEqual({ allocated: false, length: SS });
    expect(await image.isAllocated(SS, 3 * SS)).toEqual({ allocated: true, length: SS });
    await image.close();
    expect(
      vfs
        .file('/img/base.raw')
        .snapshot()
        .every((b) => b === 0x42),
    ).toBe(true);
  });

  it('a changed backing mtime is refused as UML does, and onMismatch update rewrites the header', async () => {
    const { vfs, base } = await chain();
    base.mtimeSec += 10;
    await expect(openImage('/img/top.cow', { registry, vfs })).rejects.toMatchObject({ kind: 'backing-mismatch' });
    const image = await openImage('/img/top.cow', { registry, vfs, backing: { onMismatch: 'update' } });
    await image.close();
    const header = vfs.file('/img/top.cow').snapshot().subarray(0, 4128);
    expect(parseHeader(header, 'v3').mtime).toBe(base.mtimeSec);
    const again = await openImage('/img/top.cow', { registry, vfs });
    await again.close();
  });

  it('a QEMU overlay ignores a changed backing mtime', async () => {
    const { vfs, base } = await chain('v2-qemu-lp64');
    base.mtimeSec += 10;
    const image = await openImage('/img/top.cow', { registry, vfs });
    expect(image.info().formatSpecific).toMatchObject({ variant: 'v2-qemu-lp64' });
    await image.close();
  });
});

describe('on real files (NodeVfs)', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('create writes the uml_mkcow layout and length; data written survives close and reopen', async () => {
    dir = mkdtempSync(join(tmpdir(), 'blk-cow-'));
    const vfs = new NodeVfs();
    const basePath = join(dir, 'base.img');
    writeFileSync(basePath, new Uint8Array(4 * MiB).fill(7));
    const top = join(dir, 'top.cow');
    await createImage(top, { registry, vfs, format: 'cow', backing: basePath });
    expect(statSync(top).size).toBe(8192 + 1024 + 3072 + 4 * MiB); // data offset 12288
    const header = parseHeader(new Uint8Array(readFileSync(top).subarray(0, 4128)), 'v3');
    expect(header).toMatchObject({
      backingFile: basePath,
      size: 4 * MiB,
      mtime: Number(statSync(basePath, { bigint: true }).mtimeNs / 1_000_000_000n),
    });

    const image = await openImage(top, { registry, vfs, cache: 'writethrough' });
    await image.write(MiB, pattern(2048, 4, 3));
    await image.close();
    const again = await openImage(top, { registry, vfs, readOnly: true });
    expect(sameBytes(await again.read(MiB, 4 * SS), pattern(2048, 4, 3))).toBe(true);
    expect((await again.read(0, SS)).every((b) => b === 7)).toBe(true);
    await again.close();
    const onDisk = readFileSync(top);
    expect(onDisk[8192 + 256]).toBe(0x0f); // sectors 2048..2051
    expect(sameBytes(onDisk.subarray(12288 + MiB, 12288 + MiB + 4 * SS), pattern(2048, 4, 3))).toBe(true);
  });

  it('a truncated file on disk is reported as truncated with its path', async () => {
    dir = mkdtempSync(join(tmpdir(), 'blk-cow-'));
    const path = join(dir, 'short.cow');
    const full = (await createFile({ size: MiB })).snapshot().subarray(0, 8192 + 255);
    writeFileSync(path, full);
    await expect(openImage(path, { registry, vfs: new NodeVfs(), format: 'cow' })).rejects.toMatchObject({
      kind: 'truncated',
      field: 'bitmap',
      path,
    });
  });
});
