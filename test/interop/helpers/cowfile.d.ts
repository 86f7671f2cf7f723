export type UmlVariant = 'v1' | 'v2-uml' | 'v3';
export interface CowGeometry {
    variant: UmlVariant;
    headerSize: number;
    bitmapOffset: number;
    bitmapLen: number;
    dataOffset: number;
    /** Offset and byte order of the 32-bit mtime field. */
    mtimeField: {
        offset: number;
        le: boolean;
    };
}
/** Geometry of a `variant` overlay over a backing file of `size` bytes (v3: alignment 4096). */
export declare function cowGeometry(variant: UmlVariant, size: number, alignment?: number): CowGeometry;
/** Where sector `s` lives in the COW file. */
export declare function sectorDataOffset(g: CowGeometry, s: number): number;
/** Bitmap byte offset and mask (LSB first) of sector `s`. */
export declare function sectorBit(g: CowGeometry, s: number): {
    offset: number;
    mask: number;
};
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
export declare function parseCowHeader(file: Uint8Array, variant: UmlVariant): CowHeader;
