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
export type HeaderField = 'magic' | 'version' | 'backing_file' | 'mtime' | 'size' | 'sectorsize' | 'alignment' | 'cow_format';
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
export declare const COW_MAGIC = 1330597709;
/** The longest header (v3-broken); enough bytes to detect and parse any variant (spec §3). */
export declare const MAX_HEADER_SIZE = 4136;
/** Sector size of every COW file: bits, data slots and virtual sizes are in these units. */
export declare const COW_SECTOR_SIZE = 512;
export declare const VARIANTS: Readonly<Record<CowVariant, VariantSpec>>;
export declare const COW_VARIANTS: readonly CowVariant[];
export declare function isCowVariant(value: unknown): value is CowVariant;
/** The field spec of `field` in `variant`, if the variant has that field. */
export declare function fieldOf(variant: CowVariant, field: HeaderField): FieldSpec | undefined;
/** Longest backing path (UTF-8 bytes, without the NUL) the variant's field holds: 255, 4095 or 1023. */
export declare function maxPathBytes(variant: CowVariant): number;
