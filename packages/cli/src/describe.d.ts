import type { Image } from '@blk/core';
import { type QValue } from './qjson.js';
import type { BackingVerdict } from './jobs/common.js';
export type QDict = {
    [key: string]: QValue | undefined;
};
/** camelCase / snake_case keys to QAPI's kebab-case. */
export declare function kebab(key: string): string;
/** Driver facts as JSON values with QAPI-style keys (functions, buffers and undefined dropped). */
export declare function toQValue(value: unknown): QValue | undefined;
export interface DescribeOptions {
    /** The name to show for the image (the user's spelling for the top image). */
    filename: string;
    /** --backing-probe was given: an unopened backing file's format is unknown. */
    backingProbe?: boolean;
    /** What the user's backing rules (--backing-dir, --forbid-backing) say of the backing file, when given. */
    verdict?: BackingVerdict;
    /** -F: the format the backing file was named as (what it opens as, even when it is not opened). */
    backingFormat?: string | undefined;
}
/** qemu-img info's fields for one opened image. */
export declare function describeImage(image: Image, o: DescribeOptions): QDict;
/** What the human output shows differently from the JSON fields. */
export interface HumanExtras {
    /** The stored backing path bytes when they are not UTF-8 (shown with \xHH escapes). */
    storedBackingBytes?: Uint8Array | undefined;
}
/** qemu-img info's human output for one image (lines, no trailing newline; names from images escaped). */
export declare function humanInfo(e: QDict, extras?: HumanExtras): string;
