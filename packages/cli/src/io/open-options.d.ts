import { type Image } from '@blk/core';
import { type BackingRules } from '../jobs/common.js';
export interface IoOpenOptions {
    format?: string | undefined;
    readOnly: boolean;
    snapshot: boolean;
    cache: IoCache;
    /** False with `-d ignore`: discards and unmapping zero writes do nothing. */
    unmap: boolean;
    forceShare: boolean;
    /** -k / -i native: QEMU then insists on cache.direct (-t none or directsync), and so does blk. */
    nativeAio: boolean;
    backingProbe?: boolean | undefined;
    /** --backing-dir, --forbid-backing and the default rule, for the backing files the image names. */
    rules?: BackingRules | undefined;
    /** -F: the format of the image's backing file (cow records none). */
    backingFormat?: string | undefined;
}
export interface IoCache {
    /** Flush after every write request (the image's write cache is off). */
    writethrough: boolean;
    /** Never sync (`unsafe`). */
    noFlush: boolean;
    /** cache.direct (none, directsync): no effect on blk's I/O, but QEMU's aio=native needs it. */
    direct: boolean;
}
/** bdrv_parse_cache_mode(): undefined for an unknown mode. */
export declare function parseCache(mode: string): IoCache | undefined;
/** `-n`, `-t none`: writeback through the page cache in blk (which has no O_DIRECT). */
export declare const NOCACHE: IoCache;
/** bdrv_parse_aio(). */
export declare function validAio(mode: string): boolean;
/** QEMU's checks of a combination of open flags (raw-posix and blk_new_open): the message, or undefined when fine. */
export declare function openConflict(o: IoOpenOptions): string | undefined;
/** bdrv_parse_discard_flags(): true = unmap, false = ignore, undefined = unknown. */
export declare function parseDiscard(mode: string): boolean | undefined;
/**
 * `open -o key=value,...` (`,,` is a literal comma): `driver=FMT`,
 * `read-only=on|off`, `discard=unmap|ignore`, `force-share=on|off`,
 * `cache.no-flush=on|off`. Applies them to `into`; returns an error
 * message for anything else.
 */
export declare function applyOpenOptions(text: string, into: IoOpenOptions): string | undefined;
/** An open file: the image commands work on, and how to close it. */
export interface OpenedFile {
    /** The name the user gave (messages name it, also under -s). */
    name: string;
    image: Image;
    options: IoOpenOptions;
    close(): Promise<void>;
}
export declare function openIoFile(name: string, o: IoOpenOptions): Promise<OpenedFile>;
