/** Byte comparison with failure messages that say where and what. */
/** Index of the first byte where `a` and `b` differ, or -1 when they are equal (lengths included). */
export declare function firstDifference(a: Uint8Array, b: Uint8Array): number;
/** Throws an Error naming the first differing guest offset unless `actual` equals `expected`. */
export declare function assertBytesEqual(actual: Uint8Array, expected: Uint8Array, what: string, baseOffset?: number): void;
/** True when every byte of `bytes` is zero. */
export declare function isAllZero(bytes: Uint8Array): boolean;
/** True when any byte of `mask[start, end)` is set. */
export declare function anySet(mask: Uint8Array, start: number, end: number): boolean;
