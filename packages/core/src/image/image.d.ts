import type { BackingSpec, BlockStatus, DriverCheckResult, DriverImage, PreallocationMode, RepairRequest } from '../format/driver.js';
import type { DriverRegistry } from '../format/registry.js';
/** Where a run of the image's contents comes from, across the whole chain. */
export interface ChainStatus {
    /** Bytes from the queried offset that share this status (> 0 unless at the end). */
    length: number;
    /**
     * Which layer holds the data: 0 = this image, 1 = its backing file, ...;
     * undefined when no layer holds it and it reads as zeros.
     */
    depth: number | undefined;
    /** True when the run is known to read as zeros. */
    zero: boolean;
    /** Offset of the data in the storage of the layer at `depth`, when known. */
    hostOffset?: number;
    /** The file of the layer at `depth`. */
    path?: string;
}
export interface ImageInfo {
    path: string;
    format: string;
    size: number;
    sectorSize: number;
    readOnly: boolean;
    /** Backing file as stored in the image and as resolved, when there is one. */
    backing?: {
        stored: string;
        resolved?: string;
        format?: string;
        opened: boolean;
    };
    /** Format-specific facts from the driver. */
    formatSpecific: Record<string, unknown>;
}
/** Guards a probed image against writes that would change what it probes as (see `openImage`). */
export interface ProbeGuard {
    registry: DriverRegistry;
    /** Leading bytes that decide how the file probes. */
    window: number;
    /** Trailing bytes that decide it too (footers and trailers: a fixed VHD, a DMG). */
    tail: number;
}
export interface ImageParts {
    path: string;
    driverImage: DriverImage;
    readOnly: boolean;
    backing?: Image;
    /** Backing path as resolved (absolute) when a backing reference exists. */
    backingPath?: string;
    probeGuard?: ProbeGuard;
    /**
     * The image names a backing file that was not opened (backing.mode
     * 'ignore'): reads of what it does not hold return zeros, and writes that
     * would have to read it (read-modify-write of a partial sector) are refused.
     */
    backingIgnored?: boolean;
}
/**
 * An opened image: byte-granular reads and writes over a sector-based driver,
 * with backing-chain fall-through, read-only policy and request
 * serialisation. Obtain one with `openImage`.
 */
export declare class Image {
    readonly path: string;
    readonly format: string;
    readonly sectorSize: number;
    readonly readOnly: boolean;
    /** The opened backing image, when the chain was opened. */
    readonly backing: Image | undefined;
    /** How many images lie below this one in its chain (0 for the last). */
    private readonly levelsBelow;
    private readonly driverImage;
    private readonly backingPath;
    private readonly tracker;
    private readonly probeGuard;
    private readonly readBelow;
    /** What read-modify-write reads below this layer: `readBelow`, or a refusal when the chain is ignored. */
    private readonly readBelowForWrite;
    /** The synchronous counterpart of `readBelow`, for the driver's `readSync`. */
    private readonly readBelowSync;
    private closed;
    private closing;
    /**
     * Set while a resize, amend or check is pending: settles when every
     * operation issued so far is in the request tracker and the last such
     * exclusive operation is over. A request issued meanwhile waits for it
     * (`admission`) before its range is checked and planned: checked against
     * the old size, a write would land past a shrunk image's end (a raw file
     * grown back, a cow bit past its last sector).
     */
    private queue;
    private changes;
    constructor(parts: ImageParts);
    /** Virtual size in bytes (the driver's; changes only through `resize` or `amend`). */
    get size(): number;
    /** Reads `length` bytes at `offset`. */
    read(offset: number, length: number): Promise<Uint8Array>;
    /**
     * Fills `into` from `offset` (no allocation when the request is sector-aligned).
     *
     * Fast path: a sector-aligned request issued while no other request is in
     * flight on this image is done synchronously when the driver (and, for
     * runs that fall through, every backing image involved) can complete it
     * without waiting (`DriverImage.readSync`); the returned promise is then
     * already resolved. Such a request cannot interleave with any other, so it
     * needs no entry in the request tracker. Anything else takes the tracked
     * asynchronous path, as does every request with `{ sync: false }`.
     */
    readInto(offset: number, into: Uint8Array, options?: {
        sync?: boolean;
    }): Promise<void>;
    /** `readInto` once it is its turn: checked, and done or in the tracker before this returns. */
    private readIntoAdmitted;
    /** Writes `data` at `offset`; unaligned edges are read-modify-written through the chain. */
    write(offset: number, data: Uint8Array): Promise<void>;
    /** `write` once it is its turn: the range is checked and the request enters the tracker before this returns. */
    private writeAdmitted;
    /**
     * Makes [offset, offset + length) read as zeros (qemu-io's `write -z`,
     * QEMU's bdrv_pwrite_zeroes) without a caller's buffer. The format is asked
     * first (`DriverImage.writeZeroes`: raw files get fallocate(2)); failing
     * that, with `mayUnmap` and a format that can discard, the range is
     * deallocated where the layers below read as zeros anyway; anything else
     * is written as zeros, a bounded buffer at a time. Partial sectors at the
     * edges, and bytes inside a probe-guarded head or tail, are ordinary writes.
     */
    writeZeroes(offset: number, length: number, options?: {
        mayUnmap?: boolean;
    }): Promise<void>;
    /**
     * Issues the pieces of `writeZeroes` at once, each in the request tracker
     * before this returns, so that the request keeps its place in issue order
     * as a whole (a resize issued after it cannot come between its pieces).
     */
    private zeroPieces;
    /**
     * The sector-aligned part of `writeZeroes`, run in its own tracker slot;
     * `stop` may pass the (unaligned) end of the image by less than a sector.
     * Outside any probe-guarded range, so it goes to the driver directly.
     */
    private zeroAligned;
    /** True when the layers below this one read as zeros over [start, end) (no backing file, or zero runs). */
    private belowReadsZeros;
    /** Writes zeros over the range as `write`s of at most ZERO_CHUNK bytes, all issued at once (one shared buffer). */
    private zeroBufferPieces;
    /** Allocation of this layer alone, for the run starting at `offset` (byte-granular). */
    isAllocated(offset: number, length: number): Promise<{
        allocated: boolean;
        length: number;
    }>;
    /** This layer's block status for the run starting at `offset`. */
    status(offset: number, length: number): Promise<BlockStatus>;
    /** Status across the whole chain for the run starting at `offset`: which layer answers. */
    chainStatus(offset: number, length: number): Promise<ChainStatus>;
    /**
     * Walks [offset, offset+length) as maximal runs of equal chain status
     * (adjacent runs with contiguous host offsets in the same layer merge).
     * Each layer is asked about each of its runs once (see `ChainCursor`).
     */
    map(offset?: number, length?: number): AsyncGenerator<ChainStatus & {
        start: number;
    }>;
    /**
     * Changes whenever a write, discard, resize, amend or repair starts or ends on this layer, so that
     * a status remembered before (`ChainCursor`) can tell it may be stale.
     */
    get changeCount(): number;
    /** Makes every write that completed before this call durable. */
    flush(): Promise<void>;
    /** Drops this layer's copy of [offset, offset+length) (sector-aligned) so reads fall through. */
    discard(offset: number, length: number): Promise<void>;
    /** `discard` once it is its turn: checked, and in the tracker before this returns. */
    private discardAdmitted;
    /**
     * Where the probe guard's tail zone starts: the guard's tail, plus one
     * 512-byte unit, before the image's end. The file's last bytes are what
     * probing reads, and the file may end before the image does (raw sizes count
     * whole sectors: a 1000-byte file is a 1024-byte disk), so a write ending
     * up to 511 bytes before the image's end can still land in them.
     */
    private guardTailZone;
    /** The parts of [start, end) inside the probe guard's head and tail, as writes of zeros (for `checkProbeGuard`). */
    private guardedZeros;
    /** Rewrites the backing reference stored in the image (takes effect at the next open). */
    setBackingReference(backing: BackingSpec | undefined): Promise<void>;
    /**
     * Throws what `setBackingReference(backing)` would refuse with, changing
     * nothing (as far as the driver can tell beforehand).
     */
    checkBackingReference(backing: BackingSpec | undefined): void;
    /**
     * Changes the virtual size in place (qemu-img resize). Shrinking drops the
     * data past the new end and must be asked for with `shrink` (qemu-img's
     * --shrink). Runs after the requests in flight, alone.
     */
    resize(size: number, options?: {
        shrink?: boolean;
        preallocation?: PreallocationMode;
    }): Promise<void>;
    /**
     * Changes format options in place (qemu-img amend); `options` as
     * `key=value` pairs. Runs after the requests in flight, alone.
     */
    amend(options: ReadonlyMap<string, string>): Promise<void>;
    /** True when the driver can check its own metadata (`check`). */
    get checkable(): boolean;
    /**
     * The driver's consistency check of its metadata against its file
     * (qemu-img check), repairing what `repair` asks (the image must then be
     * writable). Undefined when the format has nothing of its own to check.
     */
    check(repair?: RepairRequest): Promise<DriverCheckResult | undefined>;
    /**
     * Runs `work` as a tracked write of [start, end). Every change to this
     * layer (write, zeroing, discard, resize, amend, repair) goes through here,
     * so `changeCount` moves before and after it (see `ChainCursor`).
     */
    private runWrite;
    /**
     * Runs `work` as a write over the whole image: after every request issued
     * before it, and before any issued while it runs (a resize must not meet a
     * read of the old size halfway).
     */
    private exclusively;
    /**
     * Waits for this request's turn while a resize, amend or check is pending;
     * resolves to the function to call once the request is in the tracker
     * (or has failed its checks), which lets the next one in.
     */
    private admission;
    private enqueue;
    /** Rethrows a driver's error under the name the user gave the image. */
    private readonly retitled;
    private resizeContext;
    /** The images of the chain from this one down. */
    chain(): Image[];
    info(): ImageInfo;
    /**
     * Closes this image and its backing chain; pending writes are flushed first.
     * Requests issued once close() has begun are refused with `closed` (one
     * accepted then could complete after the final flush and be lost); a second
     * call waits for the first.
     */
    close(): Promise<void>;
    private closeOnce;
    get isClosed(): boolean;
    /** The backing reference stored in the image (unresolved). */
    get backingReference(): DriverImage['backing'];
    /**
     * Reads for a layer above: the part inside this image is read, the part past
     * its end reads as zeros (a shorter backing file).
     */
    private readPadded;
    /**
     * `readPadded` done synchronously for a layer above's `readSync`, or false
     * (with `into` possibly partly written) when this image cannot do it now:
     * closed, a request in flight here, or a driver that cannot.
     */
    private readPaddedSync;
    private readUnaligned;
    /** Reads a range inside one sector through a sector-sized bounce buffer. */
    private readBounced;
    private writeUnaligned;
    /**
     * The ranges whose bytes decide how this image's file probes, when writes
     * to it are guarded (its format was probed or assumed, and its guest data
     * starts at file offset 0: raw); none otherwise. A job about to copy guest
     * data into the image checks those ranges first with `checkWrites`.
     */
    probeGuardRanges(): Array<{
        start: number;
        length: number;
    }>;
    /**
     * Throws `probe-guard` when `writes`, applied together, would make a
     * guarded image probe as another format (see `probeGuardRanges`); does
     * nothing for an unguarded image. Writes nothing.
     */
    checkWrites(writes: ReadonlyArray<{
        offset: number;
        data: Uint8Array;
    }>): Promise<void>;
    /**
     * Refuses `writes` (or a resize to `size`, which makes other bytes the
     * file's last) that would make a guarded image probe as another format.
     */
    private checkProbeGuard;
    /** Offsets and lengths must be numbers: a string or bigint is a caller's mistake, not a range. */
    private checkNumbers;
    private checkOpen;
    private checkWritable;
}
