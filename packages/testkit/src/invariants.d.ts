import type { Image } from '@blk/core/portable';
/** What the proofs know about the guest-visible image. */
export interface ImageModel {
    /** Guest-visible content, byte for byte. */
    content: Uint8Array;
    /** 1 for every byte written (to the top layer) since the run started. */
    written: Uint8Array;
}
export interface InvariantOptions {
    /** See `ProofOptions.writesAllocate`. */
    writesAllocate: boolean;
}
/**
 * Checks one run of a chain status against the model:
 * - `0 < length <= requested` (0 only for an empty request);
 * - depth is undefined or in [0, chain length);
 * - a run no layer holds (depth undefined), or one flagged `zero`, reads as zeros;
 * - a run held below the top contains no byte written since the run started;
 * - `isAllocated` agrees: allocated in this layer exactly when depth is 0.
 */
export declare function checkStatusAt(image: Image, model: ImageModel, offset: number, length: number, options: InvariantOptions): Promise<void>;
/**
 * Walks `image.map()` over the whole image: runs are contiguous, non-empty,
 * cover [0, size) exactly, adjacent runs differ (the map merges equal ones),
 * and each run satisfies the `checkStatusAt` rules.
 */
export declare function checkMap(image: Image, model: ImageModel, options: InvariantOptions): Promise<void>;
/** Reads the whole image (in 1 MiB pieces) and compares it with the model. */
export declare function checkContent(image: Image, model: ImageModel, what: string): Promise<void>;
