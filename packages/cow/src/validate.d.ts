import type { CowHeader } from './codec.js';
import { type CowLayout } from './layout.js';
/**
 * Validates `header` (decoded from the file `path` of `fileSize` bytes) and
 * returns its layout. Throws `unsupported-version` for a cow_format other than
 * 0, `invalid-header` for impossible values, `truncated` when the file ends
 * before the end of its bitmap.
 */
export declare function validateHeader(header: CowHeader, fileSize: number, path: string): CowLayout;
