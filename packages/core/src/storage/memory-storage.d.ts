import type { Storage, StorageExtent } from './storage.js';
/**
 * A file's bytes in memory, stored sparsely in 64 KiB chunks so that a
 * "1 TiB" image whose bitmap and data are mostly holes costs only what was
 * written. Shared by every `MemoryStorage` opened on the same `MemoryFile`.
 */
export declare class MemoryFile {
    private readonly chunks;
    /** The chunk indexes in ascending order, for extentAt; rebuilt after chunks come or go. */
    private sortedIndexes;
    length: number;
    /** Whole seconds; bumped on every change so that mtime checks behave as on a real file. */
    mtimeSec: number;
    constructor(content?: Uint8Array, mtimeSec?: number);
    readAt(offset: number, into: Uint8Array): number;
    writeAt(offset: number, data: Uint8Array): void;
    truncate(size: number): void;
    /**
     * The run at `offset` (at most `length` bytes) that is held in memory
     * (data) or not (a hole: reads as zeros), in whole chunks: the in-memory
     * counterpart of SEEK_DATA/SEEK_HOLE. Past the end everything is a hole.
     */
    extentAt(offset: number, length: number): StorageExtent;
    /** The smallest held chunk index above `index`, or Infinity. */
    private nextChunkAfter;
    /** Bytes of memory really held (for tests of sparse behaviour). */
    get allocatedBytes(): number;
    /** A flat copy of the whole content (for tests; avoid on huge files). */
    snapshot(): Uint8Array;
    private touch;
}
/** A `Storage` over a `MemoryFile`. */
export declare class MemoryStorage implements Storage {
    readonly file: MemoryFile;
    readonly path: string;
    readonly readOnly: boolean;
    private closed;
    constructor(file?: MemoryFile, path?: string, readOnly?: boolean);
    read(offset: number, into: Uint8Array): Promise<number>;
    readSync(offset: number, into: Uint8Array): number;
    write(offset: number, data: Uint8Array): Promise<void>;
    extentAt(offset: number, length: number): Promise<StorageExtent>;
    size(): Promise<number>;
    truncate(size: number): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
    private checkOpen;
    private checkWritable;
}
