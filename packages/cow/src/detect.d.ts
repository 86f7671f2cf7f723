import { type ByteOrder, type CowVariant } from './variants.js';
export type Detection = {
    ok: true;
    variant: CowVariant;
    version: number;
    magicOrder: ByteOrder;
} | {
    ok: false;
    /**
     * - `not-cow`: no magic (or fewer than 8 bytes with no magic);
     * - `unsupported-version`: magic found, version not 1, 2 or 3;
     * - `truncated`: too few bytes to hold (or tell apart) the header;
     * - `unknown-layout`: a version-2 header that matches none of the three v2 layouts.
     */
    reason: 'not-cow' | 'unsupported-version' | 'truncated' | 'unknown-layout';
    version?: number;
    magicOrder?: ByteOrder;
    /** For `truncated`: how many bytes the decision needs. */
    needBytes?: number;
    message: string;
};
/**
 * Tells the COW variant of a file from its first bytes (`head`, at least
 * 4136 bytes when the file is that long) and the file's length. The v2
 * layouts share magic and version, so a v2 verdict is a heuristic (§3 step 4);
 * callers that know better name the variant instead.
 */
export declare function detectVariant(head: Uint8Array, fileSize: number): Detection;
