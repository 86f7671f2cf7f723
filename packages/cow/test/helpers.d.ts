import { MemoryFile, type CacheMode, type Storage } from '@blk/core';
import { type CowImage, type CowVariant } from '../src/index.js';
export declare const MiB: number;
export declare const SS = 512;
/** The §14 test-vector backing file. */
export declare const VECTOR_BACKING: {
    path: string;
    size: number;
    mtimeSec: number;
};
export declare function sha256(bytes: Uint8Array): string;
/** Creates a COW image of `variant` in a fresh MemoryFile. */
export declare function createFile(options?: {
    variant?: CowVariant;
    size?: number;
    backing?: {
        path: string;
        size: number;
        mtimeSec: number;
    } | undefined;
    alignment?: number;
}): Promise<MemoryFile>;
export declare function openFile(file: MemoryFile | Storage, options?: {
    cache?: CacheMode;
    readOnly?: boolean;
    driverOptions?: Record<string, unknown>;
    path?: string;
}): Promise<CowImage>;
/** A sector-sized pattern that says which write (tag) put it at which sector. */
export declare function pattern(sector: number, count: number, tag?: number): Uint8Array;
/** A `below` that fills with 0xEE and records each call. */
export declare function recordingBelow(): {
    calls: Array<[number, number]>;
    below: (o: number, into: Uint8Array) => Promise<void>;
};
export type IoEvent = {
    op: 'read';
    offset: number;
    length: number;
} | {
    op: 'write';
    offset: number;
    length: number;
} | {
    op: 'flush';
} | {
    op: 'truncate';
    size: number;
};
/** Passes everything through to `inner` and records each call. */
export declare class RecordingStorage implements Storage {
    readonly inner: Storage;
    readonly events: IoEvent[];
    constructor(inner: Storage);
    get path(): string;
    get readOnly(): boolean;
    read(offset: number, into: Uint8Array): Promise<number>;
    write(offset: number, data: Uint8Array): Promise<void>;
    size(): Promise<number>;
    truncate(size: number): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
    count(op: IoEvent['op']): number;
    clear(): void;
}
/**
 * A storage that models a disk with a volatile write cache: writes land in
 * `file` at once (what a reader sees) and are logged; a flush makes every
 * earlier write durable. `crashImage(at, survives)` builds what a power cut
 * after the first `at` logged calls leaves: everything flushed by then, plus
 * the unflushed writes that `survives` picks (any subset may reach the platter,
 * in any order).
 */
export declare class CrashStorage implements Storage {
    readonly file: MemoryFile;
    readonly path: string;
    readonly readOnly = false;
    private readonly initial;
    readonly log: Array<{
        op: 'write';
        offset: number;
        data: Uint8Array;
    } | {
        op: 'flush';
    }>;
    private readonly live;
    constructor(file: MemoryFile, path?: string);
    read(offset: number, into: Uint8Array): Promise<number>;
    write(offset: number, data: Uint8Array): Promise<void>;
    size(): Promise<number>;
    truncate(): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
    crashImage(at: number, survives: (index: number) => boolean): MemoryFile;
}
/** Reads bitmap byte `index` straight from the file. */
export declare function bitmapByte(file: MemoryFile, bitmapOffset: number, index: number): number;
/** Byte equality without vitest's element-by-element deep compare (seconds for a MiB). */
export declare function sameBytes(a: Uint8Array, b: Uint8Array): boolean;
