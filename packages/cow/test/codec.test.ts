/** Header codec: encode -> parse round trips for every variant, and tolerance of what real writers leave behind. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BlockError, MemoryFile } from '@blk/core';
import {
  COW_VARIANTS,
  VARIANTS,
  detectVariant,
  encodeHeader,
  maxPathBytes,
  parseHeader,
  type CowHeader,
  type CowVariant,
} from '../src/index.js';
import { openFile } from './helpers.js';

function headerArb(variant: CowVariant): fc.Arbitrary<CowHeader> {
  const spec = VARIANTS[variant];
  const v3 = spec.version === 3;
  return fc
    .record({
      // Non-empty for v3: an empty path is what tells v3-broken apart.
      backingFile: fc
        .string({ unit: 'grapheme', minLength: v3 ? 1 : 0, maxLength: 40 })
        .filter((s) => !s.includes('\0') && new TextEncoder().encode(s).length <= maxPathBytes(variant)),
      mtime: fc.integer({ min: 0, max: 0xffff_ffff }),
      size: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      sectorSize: fc.integer({ min: 0, max: 0xffff_ffff }),
      alignment: fc.integer({ min: 0, max: 0xffff_ffff }),
      magicOrder: variant === 'v1' ? fc.constantFrom('le' as const, 'be' as const) : fc.constant('be' as const),
    })
    .map(({ alignment, ...r }) => {
      const h: CowHeader = { variant, version: spec.version, ...r };
      if (v3) {
        h.alignment = alignment;
        h.cowFormat = 0;
      }
      return h;
    });
}

describe('encode -> parse round trip', () => {
  for (const variant of COW_VARIANTS) {
    it(`${variant}: every field survives, and the bytes are the header size`, () => {
      fc.assert(
        fc.property(headerArb(variant), (header) => {
          const bytes = encodeHeader(header);
          expect(bytes.length).toBe(VARIANTS[variant].headerSize);
          expect(parseHeader(bytes, variant)).toEqual(header);
        }),
        { numRuns: 200 },
      );
    });
  }

  it('parse -> encode reproduces the exact bytes of a zero-padded header (v2-qemu-lp64)', () => {
    const header: CowHeader = {
      variant: 'v2-qemu-lp64',
      magicOrder: 'be',
      version: 2,
      backingFile: 'base.img',
      mtime: 7,
      size: 1 << 20,
      sectorSize: 512,
    };
    const bytes = encodeHeader(header);
    expect(encodeHeader(parseHeader(bytes, 'v2-qemu-lp64'))).toEqual(bytes);
  });

  it('v1 fields follow the magic: a big-endian v1 (hypothetical non-x86 writer) reads back with BE fields', () => {
    const header: CowHeader = {
      variant: 'v1',
      magicOrder: 'be',
      version: 1,
      backingFile: '/b',
      mtime: 0x01020304,
      size: 4096,
      sectorSize: 512,
    };
    const bytes = encodeHeader(header);
    expect([...bytes.subarray(0, 8)]).toEqual([0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 1]);
    expect([...bytes.subarray(264, 268)]).toEqual([1, 2, 3, 4]);
    expect(detectVariant(bytes, bytes.length)).toMatchObject({ ok: true, variant: 'v1', magicOrder: 'be' });
    expect(parseHeader(bytes, 'v1')).toEqual(header);
  });

  it('a v3 file with a little-endian magic reads its version LE and the other fields BE (as UML does)', () => {
    const bytes = encodeHeader({
      variant: 'v3',
      magicOrder: 'le',
      version: 3,
      backingFile: '/b',
      mtime: 1,
      size: 4096,
      sectorSize: 512,
      alignment: 4096,
      cowFormat: 0,
    });
    expect([...bytes.subarray(0, 8)]).toEqual([0x4d, 0x4f, 0x4f, 0x4f, 3, 0, 0, 0]);
    expect([...bytes.subarray(20, 24)]).toEqual([0, 0, 2, 0]);
    expect(parseHeader(bytes, 'v3')).toMatchObject({ magicOrder: 'le', version: 3, sectorSize: 512, size: 4096 });
  });
});

describe('what real writers leave in headers', () => {
  it('garbage after the path NUL (UML heap bytes) is ignored by parse and open', async () => {
    const header = encodeHeader({
      variant: 'v3',
      magicOrder: 'be',
      version: 3,
      backingFile: '/tmp/base.img',
      mtime: 5,
      size: 4096,
      sectorSize: 512,
      alignment: 4096,
      cowFormat: 0,
    });
    header.set([0xde, 0xad, 0xbe], 32 + 14); // 3 junk bytes after the NUL, as UML 6.1 leaves them
    header.fill(0x5a, 4000, 4128);
    expect(parseHeader(header, 'v3').backingFile).toBe('/tmp/base.img');
    const file = new MemoryFile(header);
    file.truncate(12288 + 4096);
    const image = await openFile(file, { readOnly: true });
    expect(image.backing?.path).toBe('/tmp/base.img');
    await image.close();
  });

  it('encoding into existing bytes keeps non-field bytes (v3-broken padding) and zero-fills the path field', () => {
    const original = encodeHeader({
      variant: 'v3-broken',
      magicOrder: 'be',
      version: 3,
      backingFile: '/a/long/old/path',
      mtime: 1,
      size: 4096,
      sectorSize: 512,
      alignment: 4096,
      cowFormat: 0,
    });
    original.set([9, 9, 9, 9], 12); // uninitialised padding of the kernel writer
    original.set([7, 7, 7, 7], 4132); // tail padding
    const header = parseHeader(original, 'v3-broken');
    const rewritten = encodeHeader({ ...header, backingFile: '/new' }, original.slice());
    expect([...rewritten.subarray(12, 16)]).toEqual([9, 9, 9, 9]);
    expect([...rewritten.subarray(4132, 4136)]).toEqual([7, 7, 7, 7]);
    expect(rewritten.subarray(36 + 4, 36 + 4096).every((b) => b === 0)).toBe(true);
    expect(parseHeader(rewritten, 'v3-broken').backingFile).toBe('/new');
  });

  it('a UTF-8 backing path survives the round trip byte for byte', () => {
    const header: CowHeader = {
      variant: 'v3',
      magicOrder: 'be',
      version: 3,
      backingFile: '/données/bäse-镜像.img',
      mtime: 0,
      size: 512,
      sectorSize: 512,
      alignment: 512,
      cowFormat: 0,
    };
    expect(parseHeader(encodeHeader(header), 'v3').backingFile).toBe(header.backingFile);
  });
});

describe('encode refuses values that do not fit', () => {
  const base: CowHeader = {
    variant: 'v1',
    magicOrder: 'le',
    version: 1,
    backingFile: '/b',
    mtime: 0,
    size: 4096,
    sectorSize: 512,
  };

  it('a 256-byte path does not fit v1 (255 max): invalid-argument naming backing_file', () => {
    const err = (() => {
      try {
        encodeHeader({ ...base, backingFile: `/${'x'.repeat(255)}` });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'invalid-argument', field: 'backing_file' });
  });

  it('a 255-byte path fits v1 exactly', () => {
    const path = `/${'x'.repeat(254)}`;
    expect(parseHeader(encodeHeader({ ...base, backingFile: path }), 'v1').backingFile).toBe(path);
  });

  it('an mtime of 2^32 does not fit 32 bits', () => {
    expect(() => encodeHeader({ ...base, mtime: 2 ** 32 })).toThrow(/mtime/);
  });
});
