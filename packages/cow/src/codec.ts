/**
 * Header codec: bytes <-> `CowHeader`, driven by the tables in variants.ts.
 *
 * Only decoding and encoding live here. Whether a decoded value makes sense
 * (sector size 512, a usable alignment, ...) is validate.ts's job, so that
 * tests and tools can decode broken headers too. The one exception is a u64
 * that does not fit a JS number: it cannot be represented at all, so the
 * codec refuses it here (the only place bigint is used).
 */
import { BlockError } from '@blk/core/portable';
import {
  COW_MAGIC,
  VARIANTS,
  fieldOf,
  maxPathBytes,
  type ByteOrder,
  type CowVariant,
  type FieldSpec,
  type HeaderField,
} from './variants.js';

/** A decoded COW header. Numbers are plain values; the byte layout is the variant's. */
export interface CowHeader {
  variant: CowVariant;
  /**
   * Byte order the magic (and version) is stored in. v1 stores every field
   * in this order (host order of the writer, LE in practice); the other
   * variants store their remaining fields big-endian whatever this says.
   */
  magicOrder: ByteOrder;
  /** 1, 2 or 3 (implied by the variant). */
  version: number;
  /** Backing file path as stored: bytes up to the first NUL, decoded as UTF-8. Empty = none. */
  backingFile: string;
  /**
   * The stored path bytes, only when they are not valid UTF-8 (`backingFile`
   * is then a lossy rendering that names another file; see
   * BackingReference.rawPath).
   */
  backingFileBytes?: Uint8Array;
  /** Backing file's mtime in whole seconds, as the unsigned 32-bit value stored. */
  mtime: number;
  /** Size in bytes: the backing file's size (UML) or the virtual disk size (QEMU); equal in practice. */
  size: number;
  /** Stored sector size (512 in every valid file). */
  sectorSize: number;
  /** v3 / v3-broken only: alignment of the bitmap and data area. */
  alignment?: number;
  /** v3 / v3-broken only: 0 = bitmap, the only scheme ever defined. */
  cowFormat?: number;
}

const MAX_U32 = 0xffff_ffff;

function isLittle(spec: FieldSpec, magicOrder: ByteOrder): boolean {
  return spec.order === 'magic' && magicOrder === 'le';
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Byte order of the magic at the start of `bytes`, or undefined when there is no COW magic. */
export function magicOrderOf(bytes: Uint8Array): ByteOrder | undefined {
  if (bytes.length < 4) return undefined;
  const dv = view(bytes);
  if (dv.getUint32(0, false) === COW_MAGIC) return 'be';
  if (dv.getUint32(0, true) === COW_MAGIC) return 'le';
  return undefined;
}

/** Reads a u32 field; `undefined` when the variant has no such field. */
function readU32(dv: DataView, variant: CowVariant, field: HeaderField, magicOrder: ByteOrder): number | undefined {
  const spec = fieldOf(variant, field);
  return spec && dv.getUint32(spec.offset, isLittle(spec, magicOrder));
}

export interface ParseOptions {
  /** File name for error messages. */
  path?: string;
}

/**
 * Decodes the header of `variant` from `bytes` (at least the variant's header
 * size). Throws `bad-magic` when the magic is absent, `truncated` when
 * `bytes` is shorter than the header, `invalid-header` for a size that does
 * not fit in 2^53 - 1 or a backing path without its NUL terminator.
 */
export function parseHeader(bytes: Uint8Array, variant: CowVariant, options: ParseOptions = {}): CowHeader {
  const spec = VARIANTS[variant];
  const where = { path: options.path, driver: 'cow' };
  const magicOrder = magicOrderOf(bytes);
  if (magicOrder === undefined) {
    throw new BlockError('bad-magic', 'not a COW file: no COW magic (OOOM/MOOO) at offset 0', {
      ...where,
      field: 'magic',
    });
  }
  if (bytes.length < spec.headerSize) {
    throw new BlockError(
      'truncated',
      `${variant} header needs ${spec.headerSize} bytes, only ${bytes.length} present`,
      { ...where, field: 'header' },
    );
  }
  const dv = view(bytes);
  const sizeSpec = fieldOf(variant, 'size')!;
  const size64 = dv.getBigUint64(sizeSpec.offset, isLittle(sizeSpec, magicOrder));
  if (size64 > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new BlockError('invalid-header', `size ${size64} is beyond what the file can address (2^53 - 1 bytes)`, {
      ...where,
      field: 'size',
    });
  }
  const pathSpec = fieldOf(variant, 'backing_file')!;
  const field = bytes.subarray(pathSpec.offset, pathSpec.offset + pathSpec.size);
  const nul = field.indexOf(0);
  if (nul < 0) {
    throw new BlockError(
      'invalid-header',
      `backing file path field (${pathSpec.size} bytes at offset ${pathSpec.offset}) has no NUL terminator`,
      { ...where, field: 'backing_file' },
    );
  }
  // Bytes after the NUL are unspecified (UML leaves heap garbage there): ignore them.
  const pathBytes = field.subarray(0, nul);
  const exact = decodeExactly(pathBytes);
  const header: CowHeader = {
    variant,
    magicOrder,
    version: readU32(dv, variant, 'version', magicOrder)!,
    backingFile: exact ?? new TextDecoder().decode(pathBytes),
    mtime: readU32(dv, variant, 'mtime', magicOrder)!,
    size: Number(size64),
    sectorSize: readU32(dv, variant, 'sectorsize', magicOrder)!,
  };
  if (exact === undefined) header.backingFileBytes = pathBytes.slice();
  const alignment = readU32(dv, variant, 'alignment', magicOrder);
  if (alignment !== undefined) header.alignment = alignment;
  const cowFormat = readU32(dv, variant, 'cow_format', magicOrder);
  if (cowFormat !== undefined) header.cowFormat = cowFormat;
  return header;
}

/** `bytes` as text when they are valid UTF-8 (what a path string can name exactly), else undefined. */
function decodeExactly(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** UTF-8 bytes of a backing path, checked against the variant's field. Throws `invalid-argument`. */
export function encodeBackingPath(variant: CowVariant, backingFile: string, path?: string): Uint8Array {
  const bytes = new TextEncoder().encode(backingFile);
  if (bytes.includes(0)) {
    throw new BlockError('invalid-argument', 'backing file path contains a NUL byte', {
      path,
      driver: 'cow',
      field: 'backing_file',
    });
  }
  const max = maxPathBytes(variant);
  if (bytes.length > max) {
    throw new BlockError(
      'invalid-argument',
      `backing file path is ${bytes.length} bytes of UTF-8; a ${variant} header holds at most ${max}`,
      { path, driver: 'cow', field: 'backing_file' },
    );
  }
  return bytes;
}

/**
 * Encodes `header` in its variant's layout. With `into` (a copy of the
 * file's current header bytes), only the fields are overwritten and every
 * other byte (padding, for instance) is kept; without it, unlisted bytes are
 * zero, as QEMU and uml_mkcow write them. The path field is always
 * zero-filled after the string. Throws `invalid-argument` for values that do
 * not fit their fields.
 */
export function encodeHeader(header: CowHeader, into?: Uint8Array): Uint8Array {
  const spec = VARIANTS[header.variant];
  const out = into ?? new Uint8Array(spec.headerSize);
  if (out.length < spec.headerSize) {
    throw new BlockError(
      'invalid-argument',
      `buffer of ${out.length} bytes is shorter than a ${header.variant} header`,
    );
  }
  const dv = view(out);
  const values: Record<HeaderField, number | undefined> = {
    magic: COW_MAGIC,
    version: spec.version,
    backing_file: undefined,
    mtime: header.mtime,
    size: header.size,
    sectorsize: header.sectorSize,
    alignment: header.alignment ?? 0,
    cow_format: header.cowFormat ?? 0,
  };
  for (const field of spec.fields) {
    const little = isLittle(field, header.magicOrder);
    if (field.type === 'path') {
      const bytes = encodeBackingPath(header.variant, header.backingFile);
      out.fill(0, field.offset, field.offset + field.size);
      out.set(bytes, field.offset);
      continue;
    }
    const value = values[field.field]!;
    if (field.type === 'u32') {
      if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
        throw new BlockError('invalid-argument', `${field.field} ${value} does not fit 32 unsigned bits`, {
          field: field.field,
        });
      }
      dv.setUint32(field.offset, value, little);
    } else {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new BlockError('invalid-argument', `${field.field} ${value} is not a non-negative integer below 2^53`, {
          field: field.field,
        });
      }
      dv.setBigUint64(field.offset, BigInt(value), little);
    }
  }
  return out;
}
