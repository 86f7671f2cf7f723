export declare const SECTOR = 512;
/** A fresh directory under os.tmpdir(); `cleanup()` removes it unless BLK_INTEROP_KEEP=1. */
export declare function tempDir(label: string): Promise<{
    dir: string;
    cleanup: () => Promise<void>;
}>;
/**
 * Backing-file contents in which every 16-byte line is unique ("%015d\n", as
 * `seq -f '%015.0f'`), so a sector read from the wrong place never matches by luck.
 */
export declare function lineImage(size: number, tag?: number): Buffer;
/** Small deterministic PRNG (xorshift32), so every run writes the same bytes. */
export declare class Prng {
    private s;
    constructor(seed: number);
    next(): number;
    int(max: number): number;
    bytes(n: number): Buffer;
}
export interface Write {
    offset: number;
    data: Uint8Array;
}
/** Applies writes to a copy of `base` (the expected disk). */
export declare function applyWrites(base: Uint8Array, writes: Write[]): Buffer;
/** Sectors touched by the writes (a partial sector counts: the overlay must hold all of it). */
export declare function touchedSectors(writes: Write[]): Set<number>;
/** Compresses a set of sector numbers into [start, count] runs, sorted. */
export declare function sectorRuns(set: Iterable<number>): Array<[number, number]>;
/**
 * Describes the first difference between two byte arrays, or undefined when
 * they are equal (same length, same bytes). Used as `expect(diff(a, b)).toBeUndefined()`
 * so a failure says where and what.
 */
export declare function diff(actual: Uint8Array, expected: Uint8Array, label?: string): string | undefined;
/** Byte offsets at which two equal-length arrays differ. */
export declare function differingOffsets(a: Uint8Array, b: Uint8Array): number[];
/** `cp -p` (keeps the mtime that UML / uml_moo / blk check against the overlay header). */
export declare function cpP(from: string, to: string): Promise<void>;
export declare function mtimeSec(path: string): Promise<number>;
export declare function writeBytes(path: string, data: Uint8Array): Promise<void>;
export declare function readBytes(path: string): Promise<Buffer>;
/** Overwrites bytes at `offset` in place (used to corrupt files on purpose). */
export declare function pokeBytes(path: string, offset: number, data: Uint8Array): Promise<void>;
export declare function peekBytes(path: string, offset: number, length: number): Promise<Buffer>;
