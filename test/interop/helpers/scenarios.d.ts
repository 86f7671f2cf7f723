import { type Write } from './files.js';
export declare const MiB: number;
/**
 * A deterministic set of guest writes for an image of `size` bytes: a lone
 * sector inside a page, a whole page, unaligned heads/tails (blk must
 * read-modify-write them through the backing file), a large run, explicit
 * zeros over non-zero backing data (must be stored, not skipped), the last
 * sector, a single byte, a rewrite, and seeded random writes.
 */
export declare function guestWrites(size: number, seed: number, randomCount?: number): Write[];
/** `uml_moo COW OUT` (copying merge); returns the merged image. */
export declare function mooCopy(cow: string, out: string): Promise<Buffer>;
/**
 * `uml_moo -d -b COPY COW` (in-place merge into a `cp -p` copy of the
 * backing file; -d must come first); returns the merged copy.
 */
export declare function mooInPlace(cow: string, backing: string, copy: string): Promise<Buffer>;
export declare const inDir: (dir: string) => (name: string) => string;
