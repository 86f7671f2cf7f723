/** Largest byte offset or size blk handles: offsets are JS numbers, exact up to 2^53 - 1. */
export declare const MAX_OFFSET: number;
/** Throws `out-of-range` unless `value` is a non-negative safe integer. */
export declare function checkOffset(value: number, what: string, path?: string): void;
/** Throws `out-of-range` unless [offset, offset+length) lies inside [0, size). */
export declare function checkRange(offset: number, length: number, size: number, path?: string): void;
export declare function alignDown(value: number, alignment: number): number;
export declare function alignUp(value: number, alignment: number): number;
export declare function isPowerOfTwo(value: number): boolean;
