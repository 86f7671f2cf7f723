import { type ByteOrder, type CowVariant } from './variants.js';
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
/** Byte order of the magic at the start of `bytes`, or undefined when there is no COW magic. */
export declare function magicOrderOf(bytes: Uint8Array): ByteOrder | undefined;
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
export declare function parseHeader(bytes: Uint8Array, variant: CowVariant, options?: ParseOptions): CowHeader;
/** UTF-8 bytes of a backing path, checked against the variant's field. Throws `invalid-argument`. */
export declare function encodeBackingPath(variant: CowVariant, backingFile: string, path?: string): Uint8Array;
/**
 * Encodes `header` in its variant's layout. With `into` (a copy of the
 * file's current header bytes), only the fields are overwritten and every
 * other byte (padding, for instance) is kept; without it, unlisted bytes are
 * zero, as QEMU and uml_mkcow write them. The path field is always
 * zero-filled after the string. Throws `invalid-argument` for values that do
 * not fit their fields.
 */
export declare function encodeHeader(header: CowHeader, into?: Uint8Array): Uint8Array;
