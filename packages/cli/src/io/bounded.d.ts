import { type Image } from '@blk/core';
/**
 * Requests longer than this go in pieces through one buffer of this size
 * (qemu-io allocates the whole request, up to 2 GiB).
 */
export declare const PIECE: number;
/** The `out-of-range` error the request would fail with, or undefined when it fits the image. */
export declare function rangeError(image: Image, offset: number, count: number): unknown;
/**
 * Writes `count` bytes of value `byte` at `offset` (write -P, the default
 * 0xcd), from one shared buffer of at most PIECE bytes. Every piece is issued
 * at once (`Image.write` takes its place among the requests in flight when
 * called), so the request keeps its place in issue order against later
 * overlapping aio requests, as one request would.
 */
export declare function writeFilled(image: Image, offset: number, count: number, byte: number): Promise<void>;
/**
 * Reads [offset, offset + count) in pieces of at most PIECE bytes through
 * one buffer, handing each to `visit` with its position in the request. For
 * reads whose data is only checked, not kept or shown. The pieces go one
 * after the other: a command waits for its read, so no request is issued in
 * between that the order could matter to.
 */
export declare function readInPieces(image: Image, offset: number, count: number, visit: (piece: Uint8Array, at: number) => void): Promise<void>;
/**
 * Reads `file` into `buf` as far as it goes (qemu_io_alloc_from_file's
 * fread of the request's length): never more than the request needs, however
 * large (or endless, as /dev/zero) the file is. Returns the bytes read.
 */
export declare function readPatternInto(file: string, buf: Uint8Array): number;
/**
 * Writes the -v hex dump of `buf` (whose byte 0 is at `offset`) through
 * `out`, a piece at a time, waiting for `drain` between pieces: the dump is
 * four times the buffer's size and must not be built as one string.
 */
export declare function dumpInPieces(buf: Uint8Array, offset: number, out: (text: string) => void, drain: () => Promise<void>, dump: (buf: Uint8Array, offset: number) => string): Promise<void>;
