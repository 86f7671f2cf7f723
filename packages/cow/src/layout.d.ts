import { type CowVariant } from './variants.js';
export interface CowLayout {
    headerSize: number;
    bitmapOffset: number;
    /** Bytes of bitmap this variant owns; never write beyond. */
    bitmapLength: number;
    dataOffset: number;
    /** Virtual sectors (512 bytes each). */
    sectors: number;
    /**
     * Sectors that have a bit inside `bitmapLength`. Smaller than `sectors`
     * only for v1/v2-uml images whose sector count is not a multiple of 8
     * (the rounding bug): the sectors past it always read from the backing file.
     */
    trackedSectors: number;
}
export interface LayoutInput {
    variant: CowVariant;
    size: number;
    sectorSize: number;
    /** v3 / v3-broken only. */
    alignment?: number;
}
/**
 * Computes the layout. Preconditions (checked, `invalid-argument` otherwise):
 * `size` a non-negative safe integer, `sectorSize` and, for v3, `alignment`
 * powers of two up to 1 GiB. Validation of header values against what UML
 * accepts is `validateHeader`'s job; this function only does arithmetic.
 */
export declare function computeLayout(input: LayoutInput): CowLayout;
