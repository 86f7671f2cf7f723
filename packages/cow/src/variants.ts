/**
 * The six on-disk COW header layouts as data (spec §1, §4).
 *
 * Every variant is described field by field (offset, size, type, byte order)
 * instead of by a struct, because the format's history is one of struct
 * layouts silently differing between compilers: QEMU's unpacked header is
 * 1056 bytes on x86_64 and 1048 on i386, and UML's own v3 was 4136 bytes on
 * 64-bit hosts until 2005. The codec (codec.ts) reads and writes only what
 * these tables say.
 */

/** A COW header layout. See the README's variant table for who writes which. */
export type CowVariant = 'v1' | 'v2-uml' | 'v2-qemu-lp64' | 'v2-qemu-ilp32' | 'v3' | 'v3-broken';

/** Byte order of a header field. */
export type ByteOrder = 'be' | 'le';

/** Header field names, spelled as in the spec and UML's cow_user.c (used as `BlockError.field`). */
export type HeaderField =
  | 'magic'
  | 'version'
  | 'backing_file'
  | 'mtime'
  | 'size'
  | 'sectorsize'
  | 'alignment'
  | 'cow_format';

export interface FieldSpec {
  readonly field: HeaderField;
  readonly offset: number;
  /** Bytes on disk. */
  readonly size: number;
  /** `path`: a NUL-terminated byte string filling the field. */
  readonly type: 'u32' | 'u64' | 'path';
  /**
   * `magic`: in the byte order the magic number was found in (magic and
   * version of every variant, and all v1 fields: v1 is host-endian);
   * `be`: always big-endian (v2/v3 fields after the version).
   */
  readonly order: 'magic' | 'be';
}

/**
 * Which of the spec's §5 formulas computes the bitmap length and data offset.
 * - `uml-legacy` (v1, v2-uml): bitmap right after the header, its length
 *   rounded *down* (the rounding bug), data aligned to the sector size.
 * - `uml-v3`: bitmap and data both aligned to the header's `alignment`.
 * - `qemu`: bitmap right after the header, data aligned to 512.
 */
export type LayoutFormula = 'uml-legacy' | 'uml-v3' | 'qemu';

export interface VariantSpec {
  readonly variant: CowVariant;
  readonly version: 1 | 2 | 3;
  /** Header size in bytes; also where the bitmap starts for v1/v2. */
  readonly headerSize: number;
  /** UML variants record the backing file's size and mtime and check both at open; QEMU's do not. */
  readonly family: 'uml' | 'qemu';
  readonly formula: LayoutFormula;
  /** Byte order of the magic that writers of this variant used. */
  readonly defaultMagicOrder: ByteOrder;
  readonly fields: readonly FieldSpec[];
  /** Who writes (or wrote) this variant. */
  readonly writtenBy: string;
}

/** The magic number of every variant: 'OOOM' when stored big-endian, 'MOOO' little-endian. */
export const COW_MAGIC = 0x4f4f4f4d;

/** The longest header (v3-broken); enough bytes to detect and parse any variant (spec §3). */
export const MAX_HEADER_SIZE = 4136;

/** Sector size of every COW file: bits, data slots and virtual sizes are in these units. */
export const COW_SECTOR_SIZE = 512;

const magicAndVersion: readonly FieldSpec[] = [
  { field: 'magic', offset: 0, size: 4, type: 'u32', order: 'magic' },
  { field: 'version', offset: 4, size: 4, type: 'u32', order: 'magic' },
];

const be = (field: HeaderField, offset: number, type: 'u32' | 'u64'): FieldSpec => ({
  field,
  offset,
  size: type === 'u32' ? 4 : 8,
  type,
  order: 'be',
});
const path = (offset: number, size: number): FieldSpec => ({
  field: 'backing_file',
  offset,
  size,
  type: 'path',
  order: 'be',
});

export const VARIANTS: Readonly<Record<CowVariant, VariantSpec>> = {
  // §4.1: the i386 struct; no padding because i386 aligns 64-bit integers to 4.
  'v1': {
    variant: 'v1',
    version: 1,
    headerSize: 280,
    family: 'uml',
    formula: 'uml-legacy',
    defaultMagicOrder: 'le',
    writtenBy: 'UML until 2001 (obsolete)',
    fields: [
      ...magicAndVersion,
      path(8, 256),
      { field: 'mtime', offset: 264, size: 4, type: 'u32', order: 'magic' },
      { field: 'size', offset: 268, size: 8, type: 'u64', order: 'magic' },
      { field: 'sectorsize', offset: 276, size: 4, type: 'u32', order: 'magic' },
    ],
  },
  // §4.2: MAXPATHLEN = PATH_MAX = 4096 on Linux/glibc.
  'v2-uml': {
    variant: 'v2-uml',
    version: 2,
    headerSize: 4120,
    family: 'uml',
    formula: 'uml-legacy',
    defaultMagicOrder: 'be',
    writtenBy: 'UML and uml-utilities 2002 to Sept 2003 (obsolete)',
    fields: [
      ...magicAndVersion,
      path(8, 4096),
      be('mtime', 4104, 'u32'),
      be('size', 4108, 'u64'),
      be('sectorsize', 4116, 'u32'),
    ],
  },
  // §4.5: QEMU's unpacked struct on x86_64: 4 bytes of padding before `size`, 4 after `sectorsize`.
  'v2-qemu-lp64': {
    variant: 'v2-qemu-lp64',
    version: 2,
    headerSize: 1056,
    family: 'qemu',
    formula: 'qemu',
    defaultMagicOrder: 'be',
    writtenBy: 'QEMU cow driver on x86_64 and other LP64/8-byte-aligning ABIs (2004-2014)',
    fields: [
      ...magicAndVersion,
      path(8, 1024),
      be('mtime', 1032, 'u32'),
      be('size', 1040, 'u64'),
      be('sectorsize', 1048, 'u32'),
    ],
  },
  // §4.5: the same struct on i386: no padding.
  'v2-qemu-ilp32': {
    variant: 'v2-qemu-ilp32',
    version: 2,
    headerSize: 1048,
    family: 'qemu',
    formula: 'qemu',
    defaultMagicOrder: 'be',
    writtenBy: 'QEMU cow driver on i386 (2004-2014)',
    fields: [
      ...magicAndVersion,
      path(8, 1024),
      be('mtime', 1032, 'u32'),
      be('size', 1036, 'u64'),
      be('sectorsize', 1044, 'u32'),
    ],
  },
  // §4.3: the packed v3 header, the only format UML creates.
  'v3': {
    variant: 'v3',
    version: 3,
    headerSize: 4128,
    family: 'uml',
    formula: 'uml-v3',
    defaultMagicOrder: 'be',
    writtenBy: 'UML and uml_mkcow since 2003 (current)',
    fields: [
      ...magicAndVersion,
      be('mtime', 8, 'u32'),
      be('size', 12, 'u64'),
      be('sectorsize', 20, 'u32'),
      be('alignment', 24, 'u32'),
      be('cow_format', 28, 'u32'),
      path(32, 4096),
    ],
  },
  // §4.4: v3 as 64-bit builds laid it out before Dec 2005 (mtime padded to 8, struct rounded to 8).
  'v3-broken': {
    variant: 'v3-broken',
    version: 3,
    headerSize: 4136,
    family: 'uml',
    formula: 'uml-v3',
    defaultMagicOrder: 'be',
    writtenBy: '64-bit UML and uml-utilities before Dec 2005 (read-write, never created)',
    fields: [
      ...magicAndVersion,
      be('mtime', 8, 'u32'),
      be('size', 16, 'u64'),
      be('sectorsize', 24, 'u32'),
      be('alignment', 28, 'u32'),
      be('cow_format', 32, 'u32'),
      path(36, 4096),
    ],
  },
};

export const COW_VARIANTS: readonly CowVariant[] = ['v1', 'v2-uml', 'v2-qemu-lp64', 'v2-qemu-ilp32', 'v3', 'v3-broken'];

export function isCowVariant(value: unknown): value is CowVariant {
  return typeof value === 'string' && (COW_VARIANTS as readonly string[]).includes(value);
}

/** The field spec of `field` in `variant`, if the variant has that field. */
export function fieldOf(variant: CowVariant, field: HeaderField): FieldSpec | undefined {
  return VARIANTS[variant].fields.find((f) => f.field === field);
}

/** Longest backing path (UTF-8 bytes, without the NUL) the variant's field holds: 255, 4095 or 1023. */
export function maxPathBytes(variant: CowVariant): number {
  return fieldOf(variant, 'backing_file')!.size - 1;
}
