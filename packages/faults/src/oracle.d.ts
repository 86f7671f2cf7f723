/**
 * What each virtual sector of an image may legitimately read after a crash:
 * the value it had at the last completed flush, or any value a write put
 * there since (old or new, never zeros or garbage nobody wrote). Values are
 * kept as 53-bit hashes of the sector's bytes.
 */
export type OracleDurability = 
/** Flushed data must survive (cache modes `writeback` and `writethrough`). */
'flush'
/** Every completed write must survive (`writethrough`). */
 | 'write'
/** Nothing is promised to survive but "old or new" still holds (`unsafe`). */
 | 'none';
export declare class SectorOracle {
    readonly size: number;
    readonly sectorSize: number;
    readonly durability: OracleDurability;
    readonly sectors: number;
    /** The content a reader sees now (as the workload wrote it). */
    readonly current: Uint8Array;
    private readonly durable;
    private readonly maybe;
    /** Sectors of failed writes: old or new forever (a flush cannot tell which landed). */
    private readonly sticky;
    constructor(size: number, initial: Uint8Array | undefined, sectorSize?: number, durability?: OracleDurability);
    /** A write (about to be) issued: its new values become possible. */
    write(offset: number, data: Uint8Array): void;
    /** A write completed. Under 'write' durability its sectors are now durable. */
    writeDone(offset: number, length: number): void;
    /** A flush completed: what a reader saw before it is now durable. */
    flushed(): void;
    /**
     * A write (announced with `write`) failed: each of its sectors may hold the
     * old or the new value from now on, even after a flush. `before` is the
     * content of [offset, offset + before.length) before the write.
     */
    writeFailed(offset: number, before: Uint8Array): void;
    /** The sectors whose content may differ between crash states. */
    get uncertainSectors(): number;
    /**
     * Checks an image's full content (as read after a crash). Returns the
     * first offending sector, or undefined when every sector is allowed.
     */
    check(content: Uint8Array): {
        sector: number;
        expected: 'durable' | 'old-or-new';
    } | undefined;
    private hashAt;
}
/** A 53-bit hash of `bytes[offset, min(offset+length, limit))`. */
export declare function hashSector(bytes: Uint8Array, offset: number, length: number, limit?: number): number;
/**
 * Data that says who wrote it: every 16-byte cell holds the write's id, the
 * absolute byte offset of the cell and a check word, so a stray sector in a
 * failure report can be traced to the write that produced it.
 */
export declare function taggedData(writeId: number, offset: number, length: number): Uint8Array;
