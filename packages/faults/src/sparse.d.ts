/**
 * A sparse byte array with cheap copy-on-write clones: `clone()` copies the
 * chunk table, not the bytes, and a chunk is copied the first time a clone
 * writes to it. Used to keep the durable image of every simulated file and to
 * build thousands of post-crash states from it.
 */
export declare class SparseBytes {
    private chunks;
    /** Chunks this instance may write in place (the rest are shared with other clones). */
    private owned;
    length: number;
    constructor(length?: number, chunks?: Map<number, Uint8Array>);
    static from(data: Uint8Array): SparseBytes;
    clone(): SparseBytes;
    read(offset: number, into: Uint8Array): number;
    write(offset: number, data: Uint8Array): void;
    truncate(size: number): void;
    /** Non-empty chunks as [offset, bytes] pairs (bytes may reach past `length`; clip when copying). */
    extents(): Generator<[number, Uint8Array]>;
    toBytes(): Uint8Array;
    private writable;
}
