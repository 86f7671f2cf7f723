/**
 * Formats blk has no driver for are recognised by their signatures and never
 * guessed to be raw (signatures.ts, DriverRegistry.recognise); the probe guard
 * counts them as "another format". Real files made by qemu-img are checked
 * through the CLI in packages/cli/test/foreign-formats.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  BlockError,
  DriverRegistry,
  MemoryFile,
  MemoryStorage,
  MemoryVfs,
  findForeignFormat,
  openImage,
  signatureTail,
  type BlockDriver,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { FOREIGN_SAMPLES, sampleFile as file } from '../../../test/fixtures/foreign-samples.js';
import { CountingStorage, ascii } from './fixtures/helpers.js';
import { overlayDriver } from './fixtures/overlay-driver.js';

const enc = new TextEncoder();
const be32 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
const le32 = (n: number) => be32(n).reverse();

const registry = () => new DriverRegistry([rawDriver]);

async function probeOf(bytes: Uint8Array, reg = registry()): Promise<unknown> {
  return reg.probe(new MemoryStorage(new MemoryFile(bytes), '/disk.img')).catch((e: unknown) => e);
}

describe('foreign-format signatures', () => {
  it.each(FOREIGN_SAMPLES.map((s, i) => [`${s.format} #${i}`, s] as const))(
    'recognises %s and refuses to guess raw, naming the format and -f raw',
    async (_name, sample) => {
      const err = await probeOf(sample.bytes);
      expect(err).toBeInstanceOf(BlockError);
      expect(err).toMatchObject({ kind: 'unsupported-format', format: sample.format, path: '/disk.img' });
      expect((err as Error).message).toContain(`a ${sample.format} image`);
      expect((err as Error).message).toContain('-f raw');
    },
  );

  it('leaves plain disks raw: zeros, random-looking data, text that is not a VMDK descriptor, near-miss magics', async () => {
    const near = [
      file(4096),
      file(4096, [[0, 'QFI']]),
      file(4096, [[0, 'QED!']]),
      file(4096, [[0, '# Disk DescriptorFile\nCID=1\nversion=1\n']]),
      file(4096, [[0, 'conectiX']]),
      file(4096, [[0, 'Bochs Virtual HD Imagf']]),
      file(4096, [[64, le32(0xbeda107e)]]),
      // 'conectix' in the last sector without the footer's version, and 'koly' with the wrong version.
      file(
        8192,
        [],
        [
          [0, 'conectix'],
          [12, be32(0x00020000)],
        ],
      ),
      file(
        8192,
        [],
        [
          [0, 'koly'],
          [4, be32(3)],
          [8, be32(512)],
        ],
      ),
      Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) & 255),
    ];
    for (const bytes of near) {
      const result = await registry().probe(new MemoryStorage(new MemoryFile(bytes), '/d.img'));
      expect(result.driver.name).toBe('raw');
    }
  });

  it('is pure over bytes: signatureTail takes the tail from a head that reaches the end of the file', () => {
    const fixed = FOREIGN_SAMPLES.find((s) => s.format === 'vpc' && s.bytes.length === 8704)!.bytes;
    expect(findForeignFormat(fixed, signatureTail(fixed, undefined, fixed.length))?.format).toBe('vpc');
    // A head cut short of the end, without a tail, cannot see the footer.
    expect(
      findForeignFormat(fixed.subarray(0, 4096), signatureTail(fixed.subarray(0, 4096), undefined, fixed.length)),
    ).toBeUndefined();
  });

  it('reads the tail once, 512 bytes, and only when the head does not reach it', async () => {
    const sample = FOREIGN_SAMPLES.find((s) => s.format === 'dmg')!.bytes;
    const storage = new CountingStorage(new MemoryStorage(new MemoryFile(sample), '/x.dmg'));
    await expect(registry().probe(storage)).rejects.toMatchObject({ kind: 'unsupported-format', format: 'dmg' });
    expect(storage.ops).toEqual(['read 0+2048', `read ${sample.length - 512}+512`]);
  });
});

describe('composition with registered drivers', () => {
  /** A driver claiming qcow2 files with certainty, as a future @blk/qcow2 would. */
  const qcow2Driver: BlockDriver = {
    name: 'qcow2',
    probeBytes: 8,
    probe: (head) => (head[0] === 0x51 && head[1] === 0x46 && head[2] === 0x49 && head[3] === 0xfb ? 100 : 0),
    open: () => Promise.reject(new Error('not used')),
  };

  it('a registered driver for the format wins over the signature (and probes it itself)', async () => {
    const sample = FOREIGN_SAMPLES[0]!.bytes;
    const reg = new DriverRegistry([rawDriver, qcow2Driver]);
    const result = await reg.probe(new MemoryStorage(new MemoryFile(sample), '/q.qcow2'));
    expect(result.driver.name).toBe('qcow2');
  });

  it('a registered driver of that name that does not claim the file leaves it raw, not refused', async () => {
    const reg = new DriverRegistry([rawDriver, { ...qcow2Driver, probe: () => 0 }]);
    const result = await reg.probe(new MemoryStorage(new MemoryFile(FOREIGN_SAMPLES[0]!.bytes), '/q.qcow2'));
    expect(result.driver.name).toBe('raw');
  });

  it('a driver certain of its own magic (100) wins over a trailer in its guest data, e.g. a VHD footer in its last sector', async () => {
    const certain: BlockDriver = {
      name: 'mine',
      probeBytes: 4,
      probe: (h) => (h[0] === 0x4d && h[1] === 0x49 && h[2] === 0x4e && h[3] === 0x45 ? 100 : 0),
      open: () => Promise.reject(new Error('not used')),
    };
    const bytes = file(
      8192,
      [[0, 'MINE']],
      [
        [0, 'conectix'],
        [12, be32(0x00010000)],
      ],
    );
    const result = await new DriverRegistry([certain, rawDriver]).probe(new MemoryStorage(new MemoryFile(bytes), '/m'));
    expect(result.driver.name).toBe('mine');
  });

  it('hands drivers the tail in the probe hint, so a future driver can probe footers itself', async () => {
    const seen: Array<Uint8Array | undefined> = [];
    const looker: BlockDriver = {
      name: 'looker',
      probeBytes: 4,
      probe: (_h, hint) => {
        seen.push(hint.tail);
        return 0;
      },
      open: () => Promise.reject(new Error('not used')),
    };
    const bytes = file(8192, [], [[0, 'tailmark']]);
    await new DriverRegistry([looker, rawDriver]).probe(new MemoryStorage(new MemoryFile(bytes), '/t'));
    expect(seen[0]?.length).toBe(512);
    expect(seen[0]?.subarray(0, 8)).toEqual(ascii('tailmark'));
  });
});

describe('probe guard and foreign signatures', () => {
  it.each([
    ['a qcow2 magic at offset 0', 0, [0x51, 0x46, 0x49, 0xfb, ...be32(3)], 'qcow2'],
    ['a VDI signature at offset 64', 64, le32(0xbeda107f), 'vdi'],
    [
      'a VHD footer in the last sector',
      16384 - 512,
      [...enc.encode('conectix'), 0, 0, 0, 2, ...be32(0x00010000)],
      'vpc',
    ],
    ['a DMG trailer in the last sector', 16384 - 512, [...enc.encode('koly'), ...be32(4), ...be32(512)], 'dmg'],
  ] as const)('refuses a write of %s to a probed raw image, and changes nothing', async (_what, at, bytes, format) => {
    const vfs = new MemoryVfs();
    vfs.put('/guest.img', new Uint8Array(16384));
    const image = await openImage('/guest.img', { registry: registry(), vfs });
    expect(image.format).toBe('raw');
    const err = await image.write(at, Uint8Array.from(bytes)).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'probe-guard', format, path: '/guest.img' });
    expect(vfs.file('/guest.img').snapshot()).toEqual(new Uint8Array(16384));
    await image.close();
  });

  it("judges the tail at the file's own end when it is shorter than the disk (raw counts whole sectors)", async () => {
    // A 16384 + 488-byte file is a 16896-byte disk: probing reads the file's last 512 bytes, which
    // start 24 bytes before the disk's last sector. A footer written there, or written so that it
    // ends where a write inside the last sector grows the file to, must be refused all the same.
    const footer = FOREIGN_SAMPLES.find((s) => s.format === 'vpc' && s.bytes.length > 4096)!.bytes.subarray(-512);
    for (const [at, fileAfter] of [
      [16384 - 24, 16384 + 488],
      [16384, 16896],
    ] as const) {
      const vfs = new MemoryVfs();
      vfs.put('/guest.img', new Uint8Array(16384 + 488));
      const image = await openImage('/guest.img', { registry: registry(), vfs });
      expect(image.size).toBe(16896);
      expect(Math.max(16384 + 488, at + 512)).toBe(fileAfter);
      await expect(image.write(at, footer), `footer at ${at}`).rejects.toMatchObject({
        kind: 'probe-guard',
        format: 'vpc',
      });
      expect(vfs.file('/guest.img').snapshot()).toEqual(new Uint8Array(16384 + 488));
      await image.close();
    }
  });

  it('refuses to shrink a probed raw image so that a VHD footer inside it becomes its last sector', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/guest.img', new Uint8Array(16384));
    const footer = FOREIGN_SAMPLES.find((s) => s.format === 'vpc' && s.bytes.length > 4096)!.bytes.subarray(-512);
    const image = await openImage('/guest.img', { registry: registry(), vfs });
    await image.write(8192 - 512, footer); // not the last sector yet: allowed
    await expect(image.resize(8192, { shrink: true })).rejects.toMatchObject({ kind: 'probe-guard', format: 'vpc' });
    expect(image.size).toBe(16384);
    await image.resize(12288, { shrink: true }); // a shrink that keeps it raw is fine
    await image.close();
    const named = await openImage('/guest.img', { registry: registry(), vfs, format: 'raw' });
    await named.resize(8192, { shrink: true });
    await named.close();
  });

  it('refuses to grow a probed raw image so that its new last sector is a VHD footer, and leaves it as it was', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/guest.img', new Uint8Array(16384));
    const footer = FOREIGN_SAMPLES.find((s) => s.format === 'vpc' && s.bytes.length > 4096)!.bytes.subarray(-512);
    const image = await openImage('/guest.img', { registry: registry(), vfs });
    // 100 bytes into the last sector: no footer yet, so the write is allowed; the footer ends in zeros.
    const cut = footer.subarray(0, 412);
    expect(footer.subarray(412).every((b) => b === 0)).toBe(true);
    await image.write(16384 - 412, cut);
    const before = vfs.file('/guest.img').snapshot();
    await expect(image.resize(16384 + 100)).rejects.toMatchObject({ kind: 'probe-guard', format: 'vpc' });
    expect(image.size).toBe(16384);
    expect(vfs.file('/guest.img').snapshot()).toEqual(before);
    await image.resize(16384 + 512); // a grow that keeps it raw is fine
    await image.close();
  });

  it('refuses to grow a probed raw image whose short head the new zeros complete (a Bochs magic wants its NUL)', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/guest.img', enc.encode('Bochs Virtual HD Image'));
    const image = await openImage('/guest.img', { registry: registry(), vfs });
    expect(image.format).toBe('raw');
    // A raw disk is whole sectors: this 22-byte file is a 512-byte disk, and a resize to that same size
    // still writes the zeros into the file (as qemu-img resize does), so it is judged too.
    for (const size of [512, 1024]) {
      await expect(image.resize(size)).rejects.toMatchObject({ kind: 'probe-guard', format: 'bochs' });
    }
    expect(vfs.file('/guest.img').snapshot()).toEqual(enc.encode('Bochs Virtual HD Image'));
    await image.close();
  });

  it.each([
    ['a QED magic at offset 0', 0, [...enc.encode('QEDx')], 3, 1, 'qed'],
    [
      'a VHD footer in the last sector',
      16384 - 512,
      [...enc.encode('conectix'), 0, 0, 0, 2, 0, 1, 0xff, 0],
      14,
      1,
      'vpc',
    ],
  ] as const)(
    'refuses zero writes and discards that would complete %s in a probed raw image',
    async (_what, at, bytes, zeroAt, zeroLength, format) => {
      const vfs = new MemoryVfs();
      vfs.put('/guest.img', new Uint8Array(16384));
      const named = await openImage('/guest.img', { registry: registry(), vfs, format: 'raw' });
      await named.write(at, Uint8Array.from(bytes));
      await named.close();
      const before = vfs.file('/guest.img').snapshot();
      const image = await openImage('/guest.img', { registry: registry(), vfs });
      expect(image.format).toBe('raw');
      for (const mayUnmap of [false, true]) {
        await expect(image.writeZeroes(at + zeroAt, zeroLength, { mayUnmap })).rejects.toMatchObject({
          kind: 'probe-guard',
          format,
        });
      }
      await expect(image.discard(at + zeroAt, zeroLength)).rejects.toMatchObject({ kind: 'probe-guard', format });
      // A zero write over both the guarded head and tail and the middle, that keeps the image raw, goes through.
      await image.writeZeroes(at + zeroAt + zeroLength, 16384 - (at + zeroAt + zeroLength));
      expect(
        vfs
          .file('/guest.img')
          .snapshot()
          .subarray(0, at + zeroAt + zeroLength),
      ).toEqual(before.subarray(0, at + zeroAt + zeroLength));
      await image.close();
    },
  );

  it('allows the same writes when the format was named raw', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/guest.img', new Uint8Array(16384));
    const image = await openImage('/guest.img', { registry: registry(), vfs, format: 'raw' });
    await image.write(16384 - 512, ascii('conectix'));
    await image.write(0, ascii('QFI\xfb'));
    await image.close();
  });

  it('guards an image whose format was only assumed (formatAssumed), as a probed one', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/base.img', new Uint8Array(16384));
    const image = await openImage('/base.img', { registry: registry(), vfs, format: 'raw', formatAssumed: true });
    await expect(image.write(0, Uint8Array.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]))).rejects.toMatchObject({
      kind: 'probe-guard',
      format: 'qcow2',
    });
    await image.close();
  });

  it('createImage refuses a backing file of a foreign format named without a format, and takes it as raw when told', async () => {
    const { createImage } = await import('@blk/core');
    const vfs = new MemoryVfs();
    vfs.put('/base.qcow2', FOREIGN_SAMPLES[0]!.bytes);
    const reg = new DriverRegistry([overlayDriver, rawDriver]);
    await expect(
      createImage('/top.ovl', { registry: reg, vfs, format: 'ovl', backing: '/base.qcow2' }),
    ).rejects.toMatchObject({ kind: 'backing-format', format: 'qcow2' });
    expect(vfs.files.has('/top.ovl')).toBe(false);
    await createImage('/top.ovl', {
      registry: reg,
      vfs,
      format: 'ovl',
      backing: { path: '/base.qcow2', format: 'raw' },
    });
  });

  it('refuses to open a file whose assumed format is contradicted by a signature (backing-format)', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/base.img', FOREIGN_SAMPLES[0]!.bytes);
    await expect(
      openImage('/base.img', { registry: registry(), vfs, format: 'raw', formatAssumed: true, readOnly: true }),
    ).rejects.toMatchObject({ kind: 'backing-format', format: 'qcow2' });
  });
});
