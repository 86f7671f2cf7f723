/**
 * An independent (test-side) reading of the UML COW layout, from
 * packages/cow/FORMAT.md §4-§5. Used only to find WHERE a given
 * sector's data, bitmap bit or header field lives, so a test can corrupt a
 * blk-made file on purpose, and to cross-check blk's headers. The real
 * judges of blk's bytes are uml_moo and the UML kernel.
 */
import { SECTOR } from './files.js';

export type UmlVariant = 'v1' | 'v2-uml' | 'v3';

export interface CowGeometry {
  variant: UmlVariant;
  headerSize: number;
  bitmapOffset: number;
  bitmapLen: number;
  dataOffset: number;
  /** Offset and byte order of the 32-bit mtime field. */
  mtimeField: { offset: number; le: boolean };
}

const roundUp = (a: number, b: number) => Math.ceil(a / b) * b;

/** Geometry of a `variant` overlay over a backing file of `size` bytes (v3: alignment 4096). */
export function cowGeometry(variant: UmlVariant, size: number, alignment = 4096): CowGeometry {
  switch (variant) {
    case 'v3': {
      const bitmapOffset = roundUp(4128, alignment);
      const bitmapLen = Math.ceil(Math.ceil(size / SECTOR) / 8);
      return {
        variant,
        headerSize: 4128,
        bitmapOffset,
        bitmapLen,
        dataOffset: roundUp(bitmapOffset + bitmapLen, alignment),
        mtimeField: { offset: 8, le: false },
      };
    }
    case 'v2-uml': {
      const bitmapLen = Math.floor((size + SECTOR - 1) / (8 * SECTOR));
      return {
        variant,
        headerSize: 4120,
        bitmapOffset: 4120,
        bitmapLen,
        dataOffset: roundUp(4120 + bitmapLen, SECTOR),
        mtimeField: { offset: 4104, le: false },
      };
    }
    case 'v1': {
      const bitmapLen = Math.floor((size + SECTOR - 1) / (8 * SECTOR));
      return {
        variant,
        headerSize: 280,
        bitmapOffset: 280,
        bitmapLen,
        dataOffset: roundUp(280 + bitmapLen, SECTOR),
        mtimeField: { offset: 264, le: true },
      };
    }
  }
}

/** Where sector `s` lives in the COW file. */
export function sectorDataOffset(g: CowGeometry, s: number): number {
  return g.dataOffset + s * SECTOR;
}

/** Bitmap byte offset and mask (LSB first) of sector `s`. */
export function sectorBit(g: CowGeometry, s: number): { offset: number; mask: number } {
  return { offset: g.bitmapOffset + Math.floor(s / 8), mask: 1 << (s % 8) };
}

/** Header facts read independently of blk (v1 little-endian, v2/v3 big-endian). */
export interface CowHeader {
  magicOk: boolean;
  version: number;
  backingFile: string;
  mtime: number;
  size: bigint;
  sectorSize: number;
  alignment?: number;
  cowFormat?: number;
}

function cstring(b: Uint8Array, start: number, len: number): string {
  const field = b.subarray(start, start + len);
  const nul = field.indexOf(0);
  return Buffer.from(nul < 0 ? field : field.subarray(0, nul)).toString('utf8');
}

export function parseCowHeader(file: Uint8Array, variant: UmlVariant): CowHeader {
  const b = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  switch (variant) {
    case 'v3':
      return {
        magicOk: b.readUInt32BE(0) === 0x4f4f4f4d,
        version: b.readUInt32BE(4),
        mtime: b.readUInt32BE(8),
        size: b.readBigUInt64BE(12),
        sectorSize: b.readUInt32BE(20),
        alignment: b.readUInt32BE(24),
        cowFormat: b.readUInt32BE(28),
        backingFile: cstring(b, 32, 4096),
      };
    case 'v2-uml':
      return {
        magicOk: b.readUInt32BE(0) === 0x4f4f4f4d,
        version: b.readUInt32BE(4),
        backingFile: cstring(b, 8, 4096),
        mtime: b.readUInt32BE(4104),
        size: b.readBigUInt64BE(4108),
        sectorSize: b.readUInt32BE(4116),
      };
    case 'v1':
      return {
        magicOk: b.readUInt32LE(0) === 0x4f4f4f4d,
        version: b.readUInt32LE(4),
        backingFile: cstring(b, 8, 256),
        mtime: b.readUInt32LE(264),
        size: b.readBigUInt64LE(268),
        sectorSize: b.readUInt32LE(276),
      };
  }
}
