/** Spec §14 test vectors: exact header bytes, layouts, bit positions and detection. */
import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '@blk/core';
import { computeLayout, cowDriver, detectVariant, encodeHeader, parseHeader, type CowVariant } from '../src/index.js';
import { MiB, VECTOR_BACKING, bitmapByte, createFile, openFile, pattern, sha256 } from './helpers.js';

interface Golden {
  variant: CowVariant;
  alignment?: number;
  headerSize: number;
  sha: string;
  bitmapOffset: number;
  bitmapLength: number;
  dataOffset: number;
  fileLength: number;
}

// §14.1 - §14.6. File lengths: UML layouts extend to data offset + size; QEMU's end after the bitmap.
const GOLDEN: Golden[] = [
  {
    variant: 'v3',
    headerSize: 4128,
    sha: '067683afd0e4210d2418cf2358ed4841088c0ce2d15387e760ff03b7734d5f34',
    bitmapOffset: 8192,
    bitmapLength: 16384,
    dataOffset: 24576,
    fileLength: 67_133_440,
  },
  {
    variant: 'v2-qemu-lp64',
    headerSize: 1056,
    sha: 'a4071d4d0923bf9698359520d173ea656af0e69576ba4159a0303bcb64a0c580',
    bitmapOffset: 1056,
    bitmapLength: 16384,
    dataOffset: 17920,
    fileLength: 17440,
  },
  {
    variant: 'v2-qemu-ilp32',
    headerSize: 1048,
    sha: '2b321ac46a4d96eda0d590fd05040ac059c705a6002ff7535fe2766d4c63312b',
    bitmapOffset: 1048,
    bitmapLength: 16384,
    dataOffset: 17920,
    fileLength: 17432,
  },
  {
    variant: 'v2-uml',
    headerSize: 4120,
    sha: 'd805f38145c29b7b289e160df7e6fd68beb929f9fd8cbf7764981844bac5547f',
    bitmapOffset: 4120,
    bitmapLength: 16384,
    dataOffset: 20992,
    fileLength: 20992 + 64 * MiB,
  },
  {
    variant: 'v1',
    headerSize: 280,
    sha: '7d0d493dacff44f30a44e43a524352225efd890a4a1040c4c5166c7c8268f1a2',
    bitmapOffset: 280,
    bitmapLength: 16384,
    dataOffset: 16896,
    fileLength: 16896 + 64 * MiB,
  },
];

describe('create writes the §14 golden headers', () => {
  for (const g of GOLDEN) {
    it(`${g.variant}: header SHA-256, layout and file length match §14`, async () => {
      const file = await createFile({ variant: g.variant });
      const header = new Uint8Array(g.headerSize);
      file.readAt(0, header);
      expect(sha256(header)).toBe(g.sha);
      expect(file.length).toBe(g.fileLength);
      const image = await openFile(file, { readOnly: true });
      expect(image.variant).toBe(g.variant);
      expect(image.layout).toMatchObject({
        bitmapOffset: g.bitmapOffset,
        bitmapLength: g.bitmapLength,
        dataOffset: g.dataOffset,
      });
      expect(image.size).toBe(64 * MiB);
      await image.close();
    });
  }

  it('v3 with alignment 512: same header bytes but for the alignment field; bitmap at 4608, data at 20992', async () => {
    const file = await createFile({ variant: 'v3', alignment: 512 });
    const header = new Uint8Array(4128);
    file.readAt(0, header);
    expect([...header.subarray(24, 28)]).toEqual([0x00, 0x00, 0x02, 0x00]);
    const reference = new Uint8Array(4128);
    (await createFile({ variant: 'v3' })).readAt(0, reference);
    reference.set([0, 0, 2, 0], 24);
    expect(sha256(header)).toBe(sha256(reference));
    expect(computeLayout(parseHeader(header, 'v3'))).toMatchObject({ bitmapOffset: 4608, dataOffset: 20992 });
    expect(file.length).toBe(20992 + 64 * MiB);
  });

  it('v3 hex dump of the first 48 bytes matches §14.3', async () => {
    const file = await createFile();
    const head = new Uint8Array(48);
    file.readAt(0, head);
    expect(Buffer.from(head).toString('hex')).toBe(
      ['4f4f4f4d000000035f00000000000000', '04000000000002000000100000000000', '2f746d702f626173652e696d67000000'].join(
        '',
      ),
    );
  });
});

/** Builds the §14.4 header byte by byte, independently of the codec. */
function handBuiltV3Broken(alignment = 4096): Uint8Array {
  const b = new Uint8Array(4136);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x4f4f4f4d);
  dv.setUint32(4, 3);
  dv.setUint32(8, 0x5f000000);
  dv.setBigUint64(16, BigInt(64 * MiB));
  dv.setUint32(24, 512);
  dv.setUint32(28, alignment);
  dv.setUint32(32, 0);
  b.set(new TextEncoder().encode('/tmp/base.img'), 36);
  return b;
}

describe('v3-broken (§14.4, hand-built)', () => {
  it('hand-built header has the §14.4 SHA-256 and the codec encodes the same bytes', () => {
    const bytes = handBuiltV3Broken();
    expect(sha256(bytes)).toBe('95a6aaefa566be73ade51dd458bda23c3b29ee23e63beed15520200260dd2990');
    expect(sha256(encodeHeader(parseHeader(bytes, 'v3-broken')))).toBe(sha256(bytes));
  });

  it('is detected as v3-broken and parses to the right fields', () => {
    const bytes = handBuiltV3Broken();
    expect(detectVariant(bytes, bytes.length)).toMatchObject({ ok: true, variant: 'v3-broken' });
    expect(parseHeader(bytes, 'v3-broken')).toEqual({
      variant: 'v3-broken',
      magicOrder: 'be',
      version: 3,
      backingFile: '/tmp/base.img',
      mtime: 0x5f000000,
      size: 64 * MiB,
      sectorSize: 512,
      alignment: 4096,
      cowFormat: 0,
    });
  });

  it('layout: bitmap 8192 / data 24576 with alignment 4096, 4608 / 20992 with 512', () => {
    expect(computeLayout(parseHeader(handBuiltV3Broken(), 'v3-broken'))).toMatchObject({
      bitmapOffset: 8192,
      bitmapLength: 16384,
      dataOffset: 24576,
    });
    expect(computeLayout(parseHeader(handBuiltV3Broken(512), 'v3-broken'))).toMatchObject({
      bitmapOffset: 4608,
      dataOffset: 20992,
    });
  });

  it('opens read-write from a file built around the hand-built header', async () => {
    const file = new (await import('@blk/core')).MemoryFile(handBuiltV3Broken());
    file.truncate(24576 + 64 * MiB);
    const image = await openFile(file);
    expect(image.variant).toBe('v3-broken');
    expect(image.backing).toEqual({ path: '/tmp/base.img', expect: { size: 64 * MiB, mtimeSec: 0x5f000000 } });
    await image.write(0, pattern(0, 1));
    await image.close();
    expect(bitmapByte(file, 8192, 0)).toBe(0x01);
  });
});

describe('§14.7 rounding case: 64 MiB + 3 sectors', () => {
  const size = 64 * MiB + 3 * 512;
  const rows: Array<[CowVariant, number, number, number, number]> = [
    // variant, bitmap offset, bitmap length, data offset, tracked sectors
    ['v1', 280, 16384, 16896, 131072],
    ['v2-uml', 4120, 16384, 20992, 131072],
    ['v3', 8192, 16385, 28672, 131075],
    ['v2-qemu-lp64', 1056, 16385, 17920, 131075],
    ['v2-qemu-ilp32', 1048, 16385, 17920, 131075],
  ];
  for (const [variant, bitmapOffset, bitmapLength, dataOffset, trackedSectors] of rows) {
    it(`${variant}: bitmap ${bitmapOffset}+${bitmapLength}, data ${dataOffset}, ${trackedSectors} of 131075 sectors tracked`, () => {
      const layout = computeLayout({ variant, size, sectorSize: 512, alignment: 4096 });
      expect(layout).toEqual({
        headerSize: layout.headerSize,
        bitmapOffset,
        bitmapLength,
        dataOffset,
        sectors: 131075,
        trackedSectors,
      });
    });
  }
});

describe('§14.8 bit positions', () => {
  it('writing sectors 8..15 only sets bitmap byte 1 to 0xFF and leaves every other byte 0', async () => {
    const file = await createFile();
    const image = await openFile(file);
    await image.write(8 * 512, pattern(8, 8));
    await image.flush();
    const bitmap = new Uint8Array(16384);
    file.readAt(8192, bitmap);
    expect(bitmap[1]).toBe(0xff);
    expect(bitmap.reduce((n, b, i) => n + (i !== 1 && b !== 0 ? 1 : 0), 0)).toBe(0);
    await image.close();
  });

  it.each([
    [0, 0, 0x01],
    [9, 1, 0x02],
    [1000, 125, 0x01],
    [131071, 16383, 0x80],
  ])('sector %i sets bitmap byte %i to mask %i', async (sector, byte, mask) => {
    const file = await createFile();
    const image = await openFile(file);
    await image.write(sector * 512, pattern(sector, 1));
    await image.close();
    expect(bitmapByte(file, 8192, byte)).toBe(mask);
  });
});

describe('§14.11 detection vectors', () => {
  const head = (first8: number[], extra: (dv: DataView, b: Uint8Array) => void = () => {}): Uint8Array => {
    const b = new Uint8Array(4136);
    b.set(first8);
    extra(new DataView(b.buffer), b);
    return b;
  };
  const BE = [0x4f, 0x4f, 0x4f, 0x4d];

  it('4d 4f 4f 4f 01 00 00 00 is v1 with little-endian fields', () => {
    expect(detectVariant(head([0x4d, 0x4f, 0x4f, 0x4f, 1, 0, 0, 0]), 4136)).toMatchObject({
      ok: true,
      variant: 'v1',
      magicOrder: 'le',
    });
  });
  it('version 2 with BE u32 512 at 4116 (and a size at 4108) is v2-uml', () => {
    const b = head([...BE, 0, 0, 0, 2], (dv) => {
      dv.setBigUint64(4108, 1024n);
      dv.setUint32(4116, 512);
    });
    expect(detectVariant(b, 4136)).toMatchObject({ ok: true, variant: 'v2-uml' });
  });
  it('version 2 with BE u32 512 at 1048 and zero padding is v2-qemu-lp64', () => {
    const b = head([...BE, 0, 0, 0, 2], (dv) => {
      dv.setBigUint64(1040, 1024n);
      dv.setUint32(1048, 512);
    });
    expect(detectVariant(b, 4136)).toMatchObject({ ok: true, variant: 'v2-qemu-lp64' });
  });
  it('version 2 with BE u32 512 at 1044 is v2-qemu-ilp32', () => {
    const b = head([...BE, 0, 0, 0, 2], (dv) => {
      dv.setBigUint64(1036, 1024n);
      dv.setUint32(1044, 512);
    });
    expect(detectVariant(b, 4136)).toMatchObject({ ok: true, variant: 'v2-qemu-ilp32' });
  });
  it('version 3 with non-zero bytes 32..35 is v3', () => {
    expect(
      detectVariant(
        head([...BE, 0, 0, 0, 3], (_dv, b) => b.set([0x2f], 32)),
        4136,
      ),
    ).toMatchObject({ ok: true, variant: 'v3' });
  });
  it('version 3 with zero bytes 32..35 is v3-broken', () => {
    expect(
      detectVariant(
        head([...BE, 0, 0, 0, 3], (_dv, b) => b.set([0x2f], 36)),
        4136,
      ),
    ).toMatchObject({ ok: true, variant: 'v3-broken' });
  });
  it('version 4 is unsupported, but probe claims it (100) so that open reports the version, never a raw guess', () => {
    const b = head([...BE, 0, 0, 0, 4]);
    expect(detectVariant(b, 4136)).toMatchObject({ ok: false, reason: 'unsupported-version', version: 4 });
    expect(cowDriver.probe(b, { size: 4136 })).toBe(100);
  });
  it('anything else is not a COW file, and probe scores it 0', () => {
    const b = head([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
    expect(detectVariant(b, 4136)).toMatchObject({ ok: false, reason: 'not-cow' });
    expect(cowDriver.probe(b, { size: 4136 })).toBe(0);
  });

  it('probe scores 100 for every variant create writes', async () => {
    for (const variant of ['v3', 'v2-qemu-lp64', 'v2-qemu-ilp32', 'v2-uml', 'v1'] as const) {
      const file = await createFile({ variant });
      const head4136 = new Uint8Array(cowDriver.probeBytes);
      const n = await new MemoryStorage(file).read(0, head4136);
      expect(cowDriver.probe(head4136.subarray(0, n), { size: file.length }), variant).toBe(100);
    }
  });

  it('probe never throws, even on an empty or odd-sized head; a magic claims the file (open then says truncated)', () => {
    for (const len of [0, 1, 3, 7, 8, 35, 279]) {
      const b = new Uint8Array(len);
      b.set([0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 3].slice(0, len));
      expect(cowDriver.probe(b, { size: len })).toBe(len >= 4 ? 100 : 0);
    }
  });

  it('§14.10: a 1 TiB v3/4096 image has a 256 MiB bitmap and data at 268443648', () => {
    expect(computeLayout({ variant: 'v3', size: 2 ** 40, sectorSize: 512, alignment: 4096 })).toMatchObject({
      bitmapLength: 268_435_456,
      dataOffset: 268_443_648,
    });
  });

  it('the v3 header create writes is byte-identical to §14.3 and independent of the backing mtime mod 2^32', async () => {
    const a = await createFile({ backing: { ...VECTOR_BACKING, mtimeSec: 0x5f000000 + 2 ** 32 } });
    const header = new Uint8Array(4128);
    a.readAt(0, header);
    expect(sha256(header)).toBe('067683afd0e4210d2418cf2358ed4841088c0ce2d15387e760ff03b7734d5f34');
  });
});
