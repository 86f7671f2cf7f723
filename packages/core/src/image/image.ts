import { BlockError, retitle } from '../errors.js';
import { alignDown, alignUp, checkRange } from '../checks.js';
import { RequestTracker } from './request-tracker.js';
import {
  checkBackingSpec,
  checkBoolean,
  checkBytes,
  checkKnownKeys,
  checkNumberArg,
  checkRecord,
} from '../arguments.js';
import { ChainCursor } from './chain-cursor.js';
import { deriveCapabilities, refuseWritableOpen } from './capabilities.js';
import type {
  BackingCheck,
  BackingFacts,
  BackingSpec,
  BlockStatus,
  DriverCheckResult,
  DriverImage,
  InfoExtras,
  ImageCapabilities,
  PreallocationMode,
  ReadBelow,
  RepairRequest,
  ResizeOptions,
  SnapshotRequest,
  WriteFlags,
  WriteZeroesFlags,
} from '../format/driver.js';
import type { DriverRegistry } from '../format/registry.js';

/**
 * Block status of a run across the whole chain: QEMU's
 * `bdrv_block_status_above` plus the depth `bdrv_is_allocated_above` finds,
 * i.e. what an NBD server answers for `base:allocation` (`data`, `zero`) and
 * `qemu:allocation-depth` (`depth`).
 */
/**
 * A run of `Image.readFileRuns`: guest bytes [start, start + length): bytes [position, position +
 * length) of the host file `fd` (past the file's end: zeros); or, `fd` undefined, the bytes in
 * `data` (a layer whose data is not a plain file range), or zeros without `data`.
 */
export interface HostFileRun {
  start: number;
  length: number;
  fd: number | undefined;
  position: number;
  data?: Uint8Array;
}

export interface ChainStatus {
  /** Bytes from the queried offset that share this status (> 0 unless at the end). */
  length: number;
  /**
   * Which layer holds the data: 0 = this image, 1 = its backing file, ...;
   * undefined when no layer holds it and it reads as zeros.
   * (qemu:allocation-depth reports `depth + 1`, and 0 for undefined.)
   */
  depth: number | undefined;
  /** Allocated in some layer of the chain (`depth !== undefined`). */
  allocated: boolean;
  /**
   * The run is stored data in the layer at `depth` (NBD: not NBD_STATE_HOLE);
   * false for a hole of that layer and where no layer holds the run.
   */
  data: boolean;
  /** True when the run is known to read as zeros (always where no layer holds it). */
  zero: boolean;
  /**
   * Offset of the data in the storage of the layer at `depth`, when known.
   * Where no layer holds the run, the bottom layer's offset when its driver
   * gives one (a qcow2 subcluster of an allocated cluster, as QEMU's map).
   */
  hostOffset?: number;
  /** The file of the layer at `depth` (of the bottom layer with such a `hostOffset`). */
  path?: string;
}

export interface ImageInfo {
  path: string;
  format: string;
  size: number;
  /** @deprecated The same as `requestAlignment` (kept for readers of the old field). */
  sectorSize: number;
  /** The driver's I/O unit (`capabilities.limits.requestAlignment`): requests not aligned to it are read-modify-written. */
  requestAlignment: number;
  /** The format's allocation unit (`capabilities.limits.clusterSize`), where it has one. */
  clusterSize?: number;
  readOnly: boolean;
  /** Backing file as stored in the image and as resolved, when there is one. */
  backing?: { stored: string; resolved?: string; format?: string; opened: boolean };
  /** Format-specific facts from the driver. */
  formatSpecific: Record<string, unknown>;
  /** qemu-img info's other fields the driver reports (cluster size, dirty flag, snapshots). */
  extras?: InfoExtras;
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
export class Image {
  readonly path: string;
  readonly format: string;
  /**
   * What this image can do and the sizes its requests should have, computed
   * once at open from what the driver declares (see `ImageCapabilities`). Frozen.
   */
  readonly capabilities: ImageCapabilities;
  /**
   * @deprecated `capabilities.limits.requestAlignment` under its old name,
   * kept for callers of the 1.x API. It is not the allocation unit (that is
   * `capabilities.limits.clusterSize`) nor a unit of output; nothing in blk reads it.
   */
  readonly sectorSize: number;
  readonly readOnly: boolean;
  /** The opened backing image, when the chain was opened. */
  readonly backing: Image | undefined;
  /** How many images lie below this one in its chain (0 for the last). */
  private readonly levelsBelow: number;
  private readonly driverImage: DriverImage;
  /** `capabilities.limits.requestAlignment`, in a field of its own: the read paths test it on every request. */
  private readonly alignment: number;
  private readonly backingPath: string | undefined;
  /** The image names a backing file that was not opened (backing.mode 'ignore'): what lies below is unknown. */
  private readonly backingIgnored: boolean;
  private readonly tracker = new RequestTracker();
  private readonly probeGuard: ProbeGuard | undefined;
  /** What the driver reads below this layer: synchronously when the backing image can (see `readPadded`). */
  private readonly readBelow: ReadBelow;
  /** What read-modify-write reads below this layer: `readBelow`, or a refusal when the chain is ignored. */
  private readonly readBelowForWrite: ReadBelow;
  private closed = false;
  private closing: Promise<void> | undefined;
  /**
   * Set while a resize, amend or check is pending: settles when every
   * operation issued so far is in the request tracker and the last such
   * exclusive operation is over. A request issued meanwhile waits for it
   * (`admission`) before its range is checked and planned: checked against
   * the old size, a write would land past a shrunk image's end (a raw file
   * grown back, a cow bit past its last sector).
   */
  private queue: Promise<void> | undefined;
  private changes = 0;

  constructor(parts: ImageParts) {
    this.path = parts.path;
    this.driverImage = parts.driverImage;
    this.format = parts.driverImage.driver.name;
    this.readOnly = parts.readOnly;
    this.capabilities = deriveCapabilities(parts.driverImage, {
      path: parts.path,
      format: this.format,
      readOnly: parts.readOnly,
    });
    refuseWritableOpen(parts.driverImage, { path: parts.path, readOnly: parts.readOnly });
    this.alignment = this.capabilities.limits.requestAlignment;
    this.sectorSize = this.alignment;
    this.backing = parts.backing;
    this.levelsBelow = parts.backing ? parts.backing.levelsBelow + 1 : 0;
    this.backingPath = parts.backingPath;
    this.backingIgnored = parts.backingIgnored === true;
    this.probeGuard = parts.probeGuard;
    // Bound once: the driver calls this for every run that falls through.
    const backing = this.backing;
    this.readBelow = backing
      ? (offset, into) => backing.readPadded(offset, into)
      : (_offset, into) => {
          into.fill(0);
        };
    this.readBelowForWrite = parts.backingIgnored
      ? async (offset) => {
          throw new BlockError(
            'not-supported',
            `refusing a write that does not cover whole ${this.alignment}-byte units at offset ${offset}: completing the `
              + "sector needs the backing file, which was not opened (backing.mode 'ignore'); writing zeros there would "
              + 'destroy its data: open the backing chain, or write whole sectors',
            { path: this.path, offset },
          );
        }
      : this.readBelow;
  }

  /** Virtual size in bytes (the driver's; changes only through `resize` or `amend`). */
  get size(): number {
    return this.driverImage.size;
  }

  /** Reads `length` bytes at `offset`. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    // Validate before allocating: new Uint8Array() truncates 1.5 to 1, turns NaN into 0,
    // throws an untyped RangeError for -1 and would allocate a huge length before the range check.
    this.checkOpen();
    this.checkNumbers(offset, length);
    const admitted = this.queue === undefined ? undefined : await this.admission();
    let out: Uint8Array;
    let done: Promise<void>;
    try {
      checkRange(offset, length, this.size, this.path);
      out = new Uint8Array(length);
      done = this.readIntoAdmitted(offset, out);
    } finally {
      admitted?.();
    }
    await done;
    return out;
  }

  /**
   * Fills `into` from `offset` (no allocation when the request is sector-aligned).
   *
   * Fast path: a sector-aligned request issued while no write is in flight
   * on this image goes straight to the driver, untracked; when the driver
   * (and, for runs that fall through, every backing image involved)
   * completes it without waiting (`DriverImage.read` returning undefined),
   * the returned promise is already resolved. Such a request cannot
   * interleave with any other, and reads in flight do not conflict with it,
   * so it needs no entry in the request tracker; one that has to wait enters
   * the tracker then (nothing ran in between), where later writes see it.
   * (Testing for any request in flight instead would send every read through
   * the tracker once one read had to wait, for as long as many are issued
   * together: at 32 in flight, all of them.)
   * Anything else takes the tracked path, as does every request with
   * `{ sync: false }`.
   */
  readInto(offset: number, into: Uint8Array, options?: { sync?: boolean }): Promise<void> {
    try {
      this.checkOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.queue !== undefined) {
      return this.admission().then((admitted) => {
        try {
          return this.readIntoAdmitted(offset, into, options);
        } finally {
          admitted();
        }
      });
    }
    return this.readIntoAdmitted(offset, into, options);
  }

  /** `readInto` once it is its turn: checked, and done or in the tracker before this returns. */
  private readIntoAdmitted(offset: number, into: Uint8Array, options?: { sync?: boolean }): Promise<void> {
    try {
      checkNumberArg(offset, 'offset', this.path);
      checkBytes(into, 'into', this.path);
      if (options !== undefined) {
        checkRecord(options, 'options', this.path);
        checkBoolean(options.sync, 'options.sync', this.path);
      }
      checkRange(offset, into.length, this.size, this.path);
      if (into.length === 0) return RESOLVED;
      // `readRange`'s fast path, inline: this is the hottest path of random reads.
      const ss = this.alignment;
      // No write in flight: nothing this read could have to wait for (reads never block reads).
      if (this.tracker.writes === 0 && options?.sync !== false && offset % ss === 0 && into.length % ss === 0) {
        const pending = this.driverImage.read(offset, into, this.readBelow);
        return pending === undefined ? RESOLVED : this.tracker.track(offset, offset + into.length, false, pending);
      }
      return this.readTracked(offset, into);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * `readInto` for a caller that can use an answer at once (an NBD server writes a small read's
   * reply in the same turn as its request arrived, several replies in one system call): undefined
   * when `into` was filled before this returned (`readInto`'s synchronous fast path), else a
   * promise, as `readInto`'s. Never throws: errors reject.
   */
  readIntoNow(offset: number, into: Uint8Array): undefined | Promise<void> {
    if (this.queue !== undefined) return this.readInto(offset, into);
    try {
      this.checkOpen();
      checkNumberArg(offset, 'offset', this.path);
      checkBytes(into, 'into', this.path);
      const pending = this.readRange(offset, into, true);
      return pending === undefined ? undefined : pending;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Checks the range and reads it: undefined when it completed synchronously
   * (only with `sync`), else a promise. May throw the range check's error.
   */
  private readRange(offset: number, into: Uint8Array, sync: boolean): void | Promise<void> {
    checkRange(offset, into.length, this.size, this.path);
    if (into.length === 0) return undefined;
    const ss = this.alignment;
    // The fast path first, with as little arithmetic as possible (offsets are often doubles: `%` costs).
    if (sync && this.tracker.writes === 0 && offset % ss === 0 && into.length % ss === 0) {
      const pending = this.driverImage.read(offset, into, this.readBelow);
      return pending === undefined ? undefined : this.tracker.track(offset, offset + into.length, false, pending);
    }
    return this.readTracked(offset, into);
  }

  /** The tracked path of `readRange`: waits for overlapping writes issued before it. */
  private readTracked(offset: number, into: Uint8Array): Promise<void> {
    const ss = this.alignment;
    const start = alignDown(offset, ss);
    const end = alignUp(offset + into.length, ss);
    const aligned = start === offset && end === offset + into.length;
    // Aligned: straight to the driver, one async frame fewer per request.
    const work = aligned
      ? () => this.driverImage.read(offset, into, this.readBelow)
      : () => this.readUnaligned(offset, into);
    return this.tracker.run(start, end, false, work);
  }

  /**
   * Writes `data` at `offset`; unaligned edges are read-modify-written
   * through the chain (only the partial first and last units: the aligned
   * middle of a write longer than 64 KiB goes to the driver as a view of
   * `data`, never copied). With `fua` the write is
   * durable when this resolves (the driver's own FUA, or a flush after it:
   * `capabilities.fua`).
   */
  write(offset: number, data: Uint8Array, flags?: WriteFlags): Promise<void> {
    // Not an async function: a write with nothing to wait for is one promise from here to the driver.
    let fua: boolean;
    let compress: boolean;
    try {
      this.checkOpen();
      checkNumberArg(offset, 'offset', this.path);
      checkBytes(data, 'data', this.path);
      const checked = this.checkFlags(flags, ['fua', 'compress']);
      fua = checked.fua === true;
      compress = checked.compress === true;
      this.checkWritable();
      if (fua) this.checkFua();
      if (compress) this.checkCompress(offset, data.length);
      if (this.queue === undefined) return this.writeAdmitted(offset, data, fua, compress);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.admission().then((admitted) => {
      try {
        return this.writeAdmitted(offset, data, fua, compress);
      } finally {
        admitted();
      }
    });
  }

  /** `write` once it is its turn: the range is checked and the request enters the tracker before this returns. */
  private writeAdmitted(offset: number, data: Uint8Array, fua = false, compress = false): Promise<void> {
    checkRange(offset, data.length, this.size, this.path);
    if (data.length === 0) return RESOLVED;
    const ss = this.capabilities.limits.requestAlignment;
    const guard = this.probeGuard;
    const guarded = guard !== undefined && (offset < guard.window || offset + data.length > this.guardTailZone());
    // A guarded write judges the head and tail as they will be: nothing may change them meanwhile.
    const start = guarded ? 0 : alignDown(offset, ss);
    const end = guarded ? alignUp(this.size, ss) : alignUp(offset + data.length, ss);
    if (!guarded) return this.runWrite(start, end, () => this.writeUnaligned(offset, data, fua, compress));
    return this.runWrite(start, end, async () => {
      await this.checkProbeGuard([{ offset, data }]);
      await this.writeUnaligned(offset, data, fua, compress);
    });
  }

  /** A compressed write: the image must take it, on whole clusters (the last may end at the image's end). */
  private checkCompress(offset: number, length: number): void {
    if (this.capabilities.compress !== true) {
      throw new BlockError('not-supported', `format ${this.format} cannot store compressed data`, {
        path: this.path,
        code: 'ENOTSUP',
      });
    }
    const unit = this.capabilities.limits.clusterSize ?? this.capabilities.limits.requestAlignment;
    const end = offset + length;
    if (offset % unit !== 0 || (end % unit !== 0 && end !== this.size)) {
      throw new BlockError(
        'invalid-argument',
        `a compressed write must cover whole ${unit}-byte clusters: [${offset}, ${end}) does not`,
        { path: this.path, offset, code: 'EINVAL' },
      );
    }
  }

  /** Checks a flags record: an object (or undefined) whose known keys hold booleans; unknown keys are refused. */
  private checkFlags<K extends string>(flags: unknown, known: readonly K[]): Partial<Record<K, boolean>> {
    if (flags === undefined) return {};
    checkRecord(flags, 'flags', this.path);
    const record = flags as Record<string, unknown>;
    checkKnownKeys(record, known, 'flags', this.path);
    // Checked only when set: no message string per request for flags left out (most requests).
    for (const key of known) if (record[key] !== undefined) checkBoolean(record[key], `flags.${key}`, this.path);
    return record as Partial<Record<K, boolean>>;
  }

  /** Refuses FUA where it cannot be honoured (no native FUA and nothing to flush with). */
  private checkFua(): void {
    if (this.capabilities.fua === 'none') {
      throw new BlockError(
        'not-supported',
        `format ${this.format} cannot make a write durable on its own (no FUA, no flush)`,
        { path: this.path, code: 'ENOTSUP' },
      );
    }
  }

  /**
   * Makes [offset, offset + length) read as zeros (qemu-io's `write -z`,
   * QEMU's bdrv_pwrite_zeroes, NBD's WRITE_ZEROES) without a caller's buffer.
   * The format is asked first (`DriverImage.writeZeroes`: raw files get
   * fallocate(2)); failing that, with `mayUnmap` and a format that can
   * discard, the range is deallocated where the layers below read as zeros
   * anyway (never where that would show a backing file's data); anything
   * else is written as zeros, a bounded buffer at a time. Partial units at
   * the edges, and bytes inside a probe-guarded head or tail, are ordinary
   * writes. `noFallback` (NBD's FAST_ZERO): refused with `not-supported`
   * (code ENOTSUP), nothing written, where that would need a buffer of zeros.
   * `fua`: durable when this resolves.
   */
  async writeZeroes(offset: number, length: number, flags?: WriteZeroesFlags): Promise<void> {
    this.checkOpen();
    const {
      mayUnmap = false,
      noFallback = false,
      fua = false,
    } = this.checkFlags(flags, ['mayUnmap', 'noFallback', 'fua']);
    this.checkWritable();
    if (fua) this.checkFua();
    const admitted = this.queue === undefined ? undefined : await this.admission();
    let pieces: Array<Promise<void>>;
    try {
      pieces = this.zeroPieces(offset, length, { mayUnmap, noFallback, fua });
    } finally {
      admitted?.();
    }
    await Promise.all(pieces);
  }

  /**
   * Issues the pieces of `writeZeroes` at once, each in the request tracker
   * before this returns, so that the request keeps its place in issue order
   * as a whole (a resize issued after it cannot come between its pieces).
   */
  private zeroPieces(offset: number, length: number, flags: Required<WriteZeroesFlags>): Array<Promise<void>> {
    checkRange(offset, length, this.size, this.path);
    if (length === 0) return [];
    const { mayUnmap, noFallback, fua } = flags;
    if (noFallback && this.capabilities.writeZeroes !== 'native') {
      throw this.noFastZero(offset, `format ${this.format} has no zeroing of its own`);
    }
    const ss = this.capabilities.limits.zeroAlignment;
    const end = offset + length;
    let start = alignUp(offset, ss);
    let stop = end === this.size ? alignUp(end, this.capabilities.limits.requestAlignment) : alignDown(end, ss);
    // The probe guard must see what lands in the head and the tail, as for any write.
    const guard = this.probeGuard;
    if (guard !== undefined) {
      start = Math.max(start, alignUp(Math.min(guard.window, end), ss));
      stop = Math.min(stop, alignDown(this.guardTailZone(), ss));
    }
    const zeroEnd = Math.min(stop, end);
    if (noFallback && (stop <= start || start > offset || end > zeroEnd)) {
      throw this.noFastZero(
        offset,
        stop <= start || start > offset
          ? `[${offset}, ${end}) does not start on a ${ss}-byte zeroing unit (or lies in the probe-guarded head)`
          : `[${offset}, ${end}) does not end on a ${ss}-byte zeroing unit (or lies in the probe-guarded tail)`,
      );
    }
    // Where the edges may become whole zero clusters, the pieces run front to back, as QEMU's
    // bdrv_co_do_pwrite_zeroes loop (what each allocates lands where QEMU's would), each still in
    // its own tracker slot taken now.
    const ordered = this.zeroEdgesWiden();
    const after = { prev: RESOLVED as Promise<unknown> };
    const chain = (piece: Promise<void>) => {
      if (ordered) after.prev = piece.catch(() => undefined);
      return piece;
    };
    if (stop <= start) return this.zeroEdgePieces(offset, length, mayUnmap, fua, after);
    const head = start > offset ? this.zeroEdgePieces(offset, start - offset, mayUnmap, fua, after) : [];
    const before = after.prev;
    const middle = chain(
      this.runWrite(start, stop, async () => {
        if (ordered) await before;
        await this.zeroAligned(start, stop, mayUnmap, noFallback, fua);
      }),
    );
    return [
      ...head,
      middle,
      ...(end > zeroEnd ? this.zeroEdgePieces(zeroEnd, end - zeroEnd, mayUnmap, fua, after) : []),
    ];
  }

  /** The edges of `writeZeroes` may become whole zeroed units (see `zeroEdgePieces`). */
  private zeroEdgesWiden(): boolean {
    const { clusterSize, zeroAlignment } = this.capabilities.limits;
    return (
      this.probeGuard === undefined
      && this.capabilities.writeZeroes === 'native'
      && clusterSize !== undefined
      && clusterSize === zeroAlignment
      && this.driverImage.writeZeroes !== undefined
    );
  }

  /**
   * The edges of `writeZeroes` (pieces smaller than a zeroing unit). For a format with clusters
   * that zeroes natively, as QEMU's qcow2_co_pwrite_zeroes: where this layer holds nothing or zeros
   * in the piece's unit and the rest of the unit reads as zeros through the chain, the whole unit is
   * zeroed (a zero cluster, not a data cluster of zeros); anywhere else a buffer of zeros is written.
   */
  private zeroEdgePieces(
    offset: number,
    length: number,
    mayUnmap: boolean,
    fua: boolean,
    after: { prev: Promise<unknown> },
  ): Array<Promise<void>> {
    const ss = this.capabilities.limits.zeroAlignment;
    if (!this.zeroEdgesWiden()) return this.zeroBufferPieces(offset, length, fua);
    const pieces: Array<Promise<void>> = [];
    const end = offset + length;
    for (let at = offset; at < end; ) {
      const u0 = alignDown(at, ss);
      const u1 = u0 + ss;
      const pieceEnd = Math.min(end, u1);
      const a = at;
      const before = after.prev;
      const piece = this.runWrite(u0, u1, async () => {
        await before;
        if (await this.unitReadsZeroOutside(u0, u1, a, pieceEnd)) {
          await this.zeroAlignedOnce(u0, u1, mayUnmap, false);
          if (fua) await this.driverImage.flush();
        } else await this.writeUnaligned(a, new Uint8Array(pieceEnd - a), fua);
      });
      after.prev = piece.catch(() => undefined);
      pieces.push(piece);
      at = pieceEnd;
    }
    return pieces;
  }

  /** The unit [u0, u1) holds no data of this layer, and outside [a, b) it reads as zeros through the chain. */
  private async unitReadsZeroOutside(u0: number, u1: number, a: number, b: number): Promise<boolean> {
    const stop = Math.min(u1, this.size);
    if (b > stop || a < u0) return false;
    const own = await this.statusAdmitted(u0, stop - u0, false);
    if (own.length < stop - u0) return false;
    if (own.allocated) return own.zero === true;
    // Nothing in this layer: what lies below must read as zeros outside the piece.
    const below = this.backing;
    const belowZero = async (from: number, to: number): Promise<boolean> => {
      if (below === undefined) return !this.backingIgnored;
      for (let at = from; at < Math.min(to, below.size); ) {
        const st = await below.chainStatus(at, Math.min(to, below.size) - at);
        if (!st.zero || !(st.length > 0)) return false;
        at += st.length;
      }
      return true;
    };
    return (await belowZero(u0, a)) && (await belowZero(b, stop));
  }

  /** The refusal of a `noFallback` zero write that would need a buffer of zeros. */
  private noFastZero(offset: number, why: string): BlockError {
    return new BlockError('not-supported', `cannot write zeroes without a buffer of zeros (noFallback): ${why}`, {
      path: this.path,
      offset,
      code: 'ENOTSUP',
    });
  }

  /**
   * The aligned part of `writeZeroes`, run in its own tracker slot; `stop`
   * may pass the (unaligned) end of the image by less than a unit. Outside
   * any probe-guarded range, so it goes to the driver directly.
   */
  private async zeroAligned(
    start: number,
    stop: number,
    mayUnmap: boolean,
    noFallback: boolean,
    fua: boolean,
  ): Promise<void> {
    await this.zeroAlignedOnce(start, stop, mayUnmap, noFallback);
    // FUA: the driver's zeroing and discard take no flag; a flush, inside this tracked piece, makes them durable.
    if (fua) await this.driverImage.flush();
  }

  private async zeroAlignedOnce(start: number, stop: number, mayUnmap: boolean, noFallback: boolean): Promise<void> {
    const driver = this.driverImage;
    // Only with nothing below may the driver leave the range unallocated: a backing file that was not
    // opened (backing.mode 'ignore') is still below, and would show through once the chain is opened.
    const nothingBelow = this.backing === undefined && !this.backingIgnored;
    if (driver.writeZeroes && (await driver.writeZeroes(start, stop - start, { mayUnmap: mayUnmap && nothingBelow })))
      return;
    const end = Math.min(stop, this.size);
    // Deallocating is zeroing only where what then shows (the layers below) reads as zeros; never with
    // noFallback (a raw file that cannot punch a hole writes zeros for a discard).
    const { discard, limits } = this.capabilities;
    const discardEnd = alignUp(end, limits.requestAlignment);
    if (
      mayUnmap
      && !noFallback
      && driver.discard
      && (discard === 'zero' || discard === 'backing')
      && start % limits.discardAlignment === 0
      && (discardEnd % limits.discardAlignment === 0 || end === this.size)
      && (discard === 'zero' || (await this.belowReadsZeros(start, end)))
    ) {
      await driver.discard(start, discardEnd - start);
      return;
    }
    if (noFallback) throw this.noFastZero(start, `format ${this.format} declined to zero [${start}, ${end}) here`);
    const zeros = new Uint8Array(Math.min(end - start, ZERO_CHUNK));
    for (let done = start; done < end; done += zeros.length) {
      const n = Math.min(zeros.length, end - done);
      await this.writeUnaligned(done, n === zeros.length ? zeros : zeros.subarray(0, n));
    }
  }

  /** True when the layers below this one read as zeros over [start, end) (no backing file, or zero runs). */
  private async belowReadsZeros(start: number, end: number): Promise<boolean> {
    const below = this.backing;
    if (!below) return !this.backingIgnored;
    // One cursor for the walk: each layer below is asked about each of its runs once.
    const cursor = new ChainCursor(below);
    let pos = start;
    while (pos < Math.min(end, below.size)) {
      const st = await cursor.at(pos, Math.min(end, below.size) - pos);
      if (!st.zero || st.length <= 0) return false;
      pos += st.length;
    }
    return true;
  }

  /** Writes zeros over the range as `write`s of at most ZERO_CHUNK bytes, all issued at once (one shared buffer). */
  private zeroBufferPieces(offset: number, length: number, fua: boolean): Array<Promise<void>> {
    const zeros = new Uint8Array(Math.min(length, ZERO_CHUNK));
    const pieces: Array<Promise<void>> = [];
    for (let done = 0; done < length; done += zeros.length) {
      const n = Math.min(zeros.length, length - done);
      pieces.push(this.writeAdmitted(offset + done, n === zeros.length ? zeros : zeros.subarray(0, n), fua));
    }
    return pieces;
  }

  /** Allocation of this layer alone, for the run starting at `offset` (byte-granular). */
  async isAllocated(offset: number, length: number): Promise<{ allocated: boolean; length: number }> {
    const status = await this.status(offset, length);
    return { allocated: status.allocated, length: status.length };
  }

  /**
   * This layer's block status for the run starting at `offset`, cut at
   * `offset + length`. With `whole`, the run is not cut there: when the driver
   * answered for more than was asked (see `BlockStatus`), the whole run it
   * reported (within the image) is returned, for callers that walk forward and
   * keep it (`ChainCursor`). Every field holds for the whole run. `data` is
   * given only where it is not what `allocated && !zero` implies (see
   * `BlockStatus.data`).
   */
  async status(offset: number, length: number, options: { whole?: boolean } = {}): Promise<BlockStatus> {
    this.checkOpen();
    this.checkNumbers(offset, length);
    checkRecord(options, 'options', this.path);
    checkBoolean(options.whole, 'options.whole', this.path);
    // Untracked (a status is a hint), but never across a pending resize.
    if (this.queue !== undefined) (await this.admission())();
    return this.statusAdmitted(offset, length, options.whole === true);
  }

  /** `status` once it is its turn (also from inside a tracked request, which must not wait for admission). */
  private async statusAdmitted(offset: number, length: number, whole: boolean): Promise<BlockStatus> {
    checkRange(offset, length, this.size, this.path);
    if (length === 0) return { allocated: false, length: 0 };
    const start = alignDown(offset, this.alignment);
    const end = Math.min(alignUp(offset + length, this.alignment), alignUp(this.size, this.alignment));
    const st = await this.driverImage.blockStatus(start, end - start);
    // Whole sectors, or up to the image's (unaligned) end: anything else would give a
    // run that ends before `offset` (a negative length) and cut map() short. Longer
    // than asked is fine (the caller clamps); past the end of the image is not.
    const wholeSectors = st.length % this.alignment === 0 || start + st.length === this.size;
    if (
      !(st.length > 0)
      || !Number.isSafeInteger(st.length)
      || !wholeSectors
      || start + st.length > alignUp(this.size, this.alignment)
    ) {
      throw new BlockError('io', `driver ${this.format} returned a block status of ${st.length} bytes`, {
        path: this.path,
        driver: this.format,
        offset: start,
      });
    }
    const runEnd = Math.min(start + st.length, whole ? this.size : offset + length);
    const result: BlockStatus = { allocated: st.allocated, length: runEnd - offset };
    if (st.zero !== undefined) result.zero = st.zero;
    if (st.data !== undefined && st.data !== (st.allocated && st.zero !== true)) result.data = st.data;
    if (st.hostOffset !== undefined) result.hostOffset = st.hostOffset + (offset - start);
    return result;
  }

  /**
   * Reads [offset, offset + into.length) into `into` and returns the chain status of that range
   * (runs tiling it, as `map` gives them), both under one tracked read: a write overlapping the
   * range that was issued earlier is over before the status is taken, and one issued later waits
   * until the bytes are read, so the status describes exactly the bytes in `into` (a run reported
   * `zero` holds zeros there; it is filled, not read). What an NBD server needs to send hole chunks
   * that cannot lie while other clients write. Unaligned edges are read-modify-read as `readInto`.
   */
  async readMapped(offset: number, into: Uint8Array): Promise<Array<ChainStatus & { start: number }>> {
    this.checkOpen();
    checkNumberArg(offset, 'offset', this.path);
    checkBytes(into, 'into', this.path);
    const admitted = this.queue === undefined ? undefined : await this.admission();
    let done: Promise<Array<ChainStatus & { start: number }>>;
    try {
      checkRange(offset, into.length, this.size, this.path);
      if (into.length === 0) return [];
      const ss = this.alignment;
      done = this.tracker.run(alignDown(offset, ss), alignUp(offset + into.length, ss), false, () =>
        this.readMappedTracked(offset, into),
      );
    } finally {
      admitted?.();
    }
    return done;
  }

  /**
   * Whether `readFileRuns` can give host file ranges here at all: the top layer's format stores
   * data as it is (`DriverImage.storageRange`) on a storage that is a host file (`hostFd`).
   * Synchronous, so that a caller decides between `readFileRuns` and `readInto` in the turn its
   * request arrived, keeping the request's place among the others.
   */
  get fileRunsPossible(): boolean {
    return !this.closed && this.driverImage.storageRange?.(0, 0)?.storage.hostFd?.() !== undefined;
  }

  /**
   * Where the bytes of [offset, offset + length) are, for a caller that sends them without reading
   * them (an NBD server's sendfile): `use` gets runs tiling the range, each zeros (`fd` and `data`
   * undefined), `length` bytes of host file `fd` from `position`, or, where a layer's data is not
   * a plain file range (a qcow2 backing file, a filtered storage), the bytes themselves (`data`,
   * read here). `use`'s promise is awaited under one tracked read, as `readMapped`'s: a write
   * overlapping the range issued earlier is over before the runs are taken, and one issued later
   * waits until `use` is done, so what `use` sends from the files is exactly what `readInto` would
   * have read. The tracker entry is taken before this returns (unless a resize is queued, as for
   * every request): a request issued after this call comes after it.
   */
  async readFileRuns(
    offset: number,
    length: number,
    use: (runs: ReadonlyArray<HostFileRun>) => Promise<void>,
  ): Promise<void> {
    this.checkOpen();
    checkNumberArg(offset, 'offset', this.path);
    checkNumberArg(length, 'length', this.path);
    const admitted = this.queue === undefined ? undefined : await this.admission();
    let done: Promise<void>;
    try {
      checkRange(offset, length, this.size, this.path);
      if (length === 0) return use([]);
      const ss = this.alignment;
      done = this.tracker.run(alignDown(offset, ss), alignUp(offset + length, ss), false, async () =>
        use(await this.hostFileRuns(offset, offset + length)),
      );
    } finally {
      admitted?.();
    }
    return done;
  }

  /** `readFileRuns`' runs of [offset, end); runs not in a host file are read into `data`. */
  private async hostFileRuns(offset: number, end: number): Promise<HostFileRun[]> {
    const cursor = new ChainCursor(this, { end, topStatus: (o, l) => this.statusAdmitted(o, l, true) });
    const runs: HostFileRun[] = [];
    const reads: Array<void | Promise<void>> = [];
    for (let pos = offset; pos < end; ) {
      const st = cursor.peek(pos, end - pos) ?? (await cursor.at(pos, end - pos));
      if (st.length <= 0) {
        throw new BlockError('io', `block status stopped at ${pos}, short of ${end}`, { path: this.path });
      }
      const n = Math.min(st.length, end - pos);
      if (st.zero || st.depth === undefined) {
        runs.push({ start: pos, length: n, fd: undefined, position: 0 });
        pos += n;
        continue;
      }
      const layer = this.layerAt(st.depth);
      // Past a shorter backing file's end the chain reads zeros (readPadded): read, not a file range.
      const where = pos + n <= layer.size ? layer.driverImage.storageRange?.(pos, n) : undefined;
      const fd = where?.storage.hostFd?.();
      if (where === undefined || fd === undefined) {
        const data = new Uint8Array(n);
        reads.push(this.readRuns(pos, data, [{ ...st, start: pos, length: n }]));
        runs.push({ start: pos, length: n, fd: undefined, position: 0, data });
      } else {
        const last = runs[runs.length - 1];
        if (last?.fd === fd && last.position + last.length === where.position) last.length += n;
        else runs.push({ start: pos, length: n, fd, position: where.position });
      }
      pos += n;
    }
    // Every read is over before the runs are used (or the first failure is thrown once all are).
    const results = await Promise.allSettled(reads);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    return runs;
  }

  private async readMappedTracked(offset: number, into: Uint8Array): Promise<Array<ChainStatus & { start: number }>> {
    const end = offset + into.length;
    // This layer's status without admission: this request holds a tracker entry a pending resize waits for.
    const cursor = new ChainCursor(this, {
      end,
      topStatus: (o, l) => this.statusAdmitted(o, l, true),
    });
    const runs: Array<ChainStatus & { start: number }> = [];
    for (let pos = offset; pos < end; ) {
      const st = cursor.peek(pos, end - pos) ?? (await cursor.at(pos, end - pos));
      if (st.length <= 0) break;
      const last = runs[runs.length - 1];
      if (last && sameRun(last, st)) last.length += st.length;
      else runs.push({ start: pos, ...st });
      pos += st.length;
    }
    const pending = this.readRuns(offset, into, runs);
    if (pending !== undefined) await pending;
    return runs;
  }

  /**
   * Fills `into` (at `offset`) from `runs` (its chain status): zero runs are filled, every other
   * run is read from the layer that holds it, not through the layers above (which would look up
   * their own allocation again for each run). Reads that must wait are all issued before any is
   * awaited, so the runs of one request overlap; the promise settles once every read is over
   * (undefined when all completed synchronously).
   */
  private readRuns(
    offset: number,
    into: Uint8Array,
    runs: ReadonlyArray<ChainStatus & { start: number }>,
  ): void | Promise<void> {
    const ss = this.alignment;
    let pending: Array<void | Promise<void>> | undefined;
    for (const run of runs) {
      const part = into.subarray(run.start - offset, run.start - offset + run.length);
      if (run.zero || run.depth === undefined) {
        part.fill(0);
        continue;
      }
      let p: void | Promise<void>;
      try {
        if (run.depth > 0) p = this.layerAt(run.depth).readPadded(run.start, part);
        else if (run.start % ss === 0 && part.length % ss === 0)
          p = this.driverImage.read(run.start, part, this.readBelow);
        else p = this.readUnaligned(run.start, part);
      } catch (err) {
        // A synchronous failure: reported once the reads already issued are over (as a rejection below).
        if (pending === undefined) throw err;
        pending.push(Promise.reject(err));
        break;
      }
      if (p !== undefined) (pending ??= []).push(p);
    }
    if (pending === undefined) return undefined;
    if (pending.length === 1) return pending[0];
    // Every read is over before this settles (a failed one must not leave others writing into a
    // buffer the caller reuses); then the first failure is reported.
    return Promise.allSettled(pending).then((results) => {
      for (const r of results) if (r.status === 'rejected') throw r.reason;
    });
  }

  /** The layer `depth` levels below this one (0: this one); the caller knows the chain is that deep. */
  private layerAt(depth: number): Image {
    let image: Image = this;
    for (let d = 0; d < depth; d++) image = image.backing!;
    return image;
  }

  /** Status across the whole chain for the run starting at `offset`: which layer answers. */
  chainStatus(offset: number, length: number): Promise<ChainStatus> {
    return new ChainCursor(this).at(offset, length);
  }

  /**
   * Walks [offset, offset+length) as maximal runs of equal chain status
   * (adjacent runs with contiguous host offsets in the same layer merge).
   * The runs tile the range, and each carries the depth of the layer that
   * holds it (see `ChainStatus`). Each layer is asked about each of its own
   * runs once, whatever lies above or below it (see `ChainCursor`): the cost
   * is linear in the runs of the chain, not runs x depth.
   */
  async *map(offset = 0, length = this.size - offset): AsyncGenerator<ChainStatus & { start: number }> {
    this.checkNumbers(offset, length);
    checkRange(offset, length, this.size, this.path);
    const end = offset + length;
    const cursor = new ChainCursor(this, { end });
    let pending: (ChainStatus & { start: number }) | undefined;
    let pos = offset;
    while (pos < end) {
      const st = cursor.peek(pos, end - pos) ?? (await cursor.at(pos, end - pos));
      if (st.length <= 0) break;
      if (pending && sameRun(pending, st)) {
        pending.length += st.length;
      } else {
        if (pending) yield pending;
        pending = { start: pos, ...st };
      }
      pos += st.length;
    }
    if (pending) yield pending;
  }

  /**
   * Changes whenever a write, discard, resize, amend or repair starts or ends on this layer, so that
   * a status remembered before (`ChainCursor`) can tell it may be stale.
   */
  get changeCount(): number {
    return this.changes;
  }

  /** Makes every write that completed before this call durable. */
  async flush(): Promise<void> {
    this.checkOpen();
    await this.tracker.drain();
    if (!this.readOnly) await this.driverImage.flush();
  }

  /**
   * Gives up this layer's copy of [offset, offset+length): afterwards the
   * range reads as `capabilities.discard` says (an overlay's sectors fall
   * through to the backing file, a raw file's hole reads zeros). Advisory,
   * as NBD's TRIM and QEMU's discard: the range is clipped inwards to
   * `capabilities.limits.discardAlignment` (a misaligned edge is left as it
   * is, never an error; the end of the image counts as aligned).
   * `not-supported` when the image cannot discard at all.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.checkOpen();
    this.checkNumbers(offset, length);
    this.checkWritable();
    const admitted = this.queue === undefined ? undefined : await this.admission();
    let done: Promise<void>;
    try {
      done = this.discardAdmitted(offset, length);
    } finally {
      admitted?.();
    }
    await done;
  }

  /** `discard` once it is its turn: checked, and in the tracker before this returns. */
  private discardAdmitted(offset: number, length: number): Promise<void> {
    checkRange(offset, length, this.size, this.path);
    const discard = this.driverImage.discard;
    if (this.capabilities.discard === 'none' || !discard) {
      throw new BlockError('not-supported', `format ${this.format} cannot discard`, {
        path: this.path,
        code: 'ENOTSUP',
      });
    }
    const { requestAlignment, discardAlignment } = this.capabilities.limits;
    const start = alignUp(offset, discardAlignment);
    const end =
      offset + length === this.size
        ? alignUp(this.size, requestAlignment)
        : alignDown(offset + length, discardAlignment);
    if (end <= start) return RESOLVED;
    // On a guarded image (raw) a discard leaves zeros: judged as a write of zeros, as `write` judges its data.
    const guard = this.probeGuard;
    const guarded = guard !== undefined && (start < guard.window || Math.min(end, this.size) > this.guardTailZone());
    return this.runWrite(guarded ? 0 : start, guarded ? alignUp(this.size, requestAlignment) : end, async () => {
      if (guarded) await this.checkProbeGuard(this.guardedZeros(start, Math.min(end, this.size)));
      await discard.call(this.driverImage, start, end - start);
    });
  }

  /**
   * Where the probe guard's tail zone starts: the guard's tail, plus one
   * 512-byte unit, before the image's end. The file's last bytes are what
   * probing reads, and the file may end before the image does (raw sizes count
   * whole sectors: a 1000-byte file is a 1024-byte disk), so a write ending
   * up to 511 bytes before the image's end can still land in them.
   */
  private guardTailZone(): number {
    return Math.max(0, this.size - this.probeGuard!.tail - TAIL_SLACK);
  }

  /** The parts of [start, end) inside the probe guard's head and tail, as writes of zeros (for `checkProbeGuard`). */
  private guardedZeros(start: number, end: number): Array<{ offset: number; data: Uint8Array }> {
    const guard = this.probeGuard!;
    const out: Array<{ offset: number; data: Uint8Array }> = [];
    const headEnd = Math.min(end, guard.window);
    if (start < headEnd) out.push({ offset: start, data: new Uint8Array(headEnd - start) });
    const tailStart = Math.max(start, headEnd, this.guardTailZone());
    if (tailStart < end) out.push({ offset: tailStart, data: new Uint8Array(end - tailStart) });
    return out;
  }

  /**
   * Empties this layer (QEMU's bdrv_make_empty, what commit does to the
   * overlay): afterwards every byte reads through to the backing file.
   * Not `discard(0, size)`, which on a qcow2 v3 image leaves zero clusters
   * that hide the backing file. `not-supported` when the format can do
   * neither. Runs after the requests in flight, alone.
   */
  async makeEmpty(): Promise<void> {
    this.checkOpen();
    this.checkWritable();
    const makeEmpty = this.driverImage.makeEmpty;
    if (makeEmpty) {
      await this.exclusively(() => makeEmpty.call(this.driverImage)).catch(this.retitled);
      return;
    }
    if (this.capabilities.discard !== 'backing') {
      throw new BlockError('not-supported', `format ${this.format} cannot be emptied`, {
        path: this.path,
        code: 'ENOTSUP',
      });
    }
    await this.discard(0, this.size);
  }

  /** Rewrites the backing reference stored in the image (takes effect at the next open). */
  async setBackingReference(backing: BackingSpec | undefined): Promise<void> {
    this.checkOpen();
    checkBackingSpec(backing, this.path);
    this.checkWritable();
    if (!this.driverImage.setBacking) {
      throw new BlockError('not-supported', `format ${this.format} has no backing file reference`, { path: this.path });
    }
    await this.tracker.drain();
    await this.driverImage.setBacking(backing);
  }

  /**
   * Compares what the image recorded about its backing file with `facts`
   * (gathered with `gatherBackingFacts`): the driver's checks, [] when the
   * format records nothing it compares.
   */
  checkBackingFacts(facts: BackingFacts): BackingCheck[] {
    this.checkOpen();
    return this.driverImage.checkBackingFacts?.(facts) ?? [];
  }

  /**
   * The driver's commit mark (see DriverImage.commitMarker): undefined when
   * the image records nothing a commit into its backing file changes, else
   * whether the mark is set now and what it is called in messages.
   */
  get commitMark(): { marked: boolean; description: string } | undefined {
    const marker = this.driverImage.commitMarker;
    return marker ? { marked: marker.marked, description: marker.description } : undefined;
  }

  /**
   * Sets the commit mark before a commit changes the backing file (not
   * flushed); `setBackingReference` with the file's new facts clears it.
   */
  async markCommitInProgress(): Promise<void> {
    this.checkOpen();
    this.checkWritable();
    const marker = this.driverImage.commitMarker;
    if (!marker) {
      throw new BlockError('not-supported', `format ${this.format} records no commit mark here`, { path: this.path });
    }
    await this.tracker.drain();
    await marker.begin();
  }

  /**
   * Throws what `setBackingReference(backing)` would refuse with, changing
   * nothing (as far as the driver can tell beforehand).
   */
  checkBackingReference(backing: BackingSpec | undefined): void {
    this.checkOpen();
    this.checkWritable();
    if (!this.driverImage.setBacking) {
      throw new BlockError('not-supported', `format ${this.format} has no backing file reference`, { path: this.path });
    }
    this.driverImage.checkBacking?.(backing);
  }

  /**
   * Changes the virtual size in place (qemu-img resize). Shrinking drops the
   * data past the new end and must be asked for with `shrink` (qemu-img's
   * --shrink). Runs after the requests in flight, alone.
   */
  async resize(size: number, options: { shrink?: boolean; preallocation?: PreallocationMode } = {}): Promise<void> {
    this.checkOpen();
    this.checkWritable();
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new BlockError('invalid-argument', `new size ${size} must be a positive integer below 2^53`, {
        path: this.path,
      });
    }
    if (size < this.size && !options.shrink) {
      throw new BlockError(
        'invalid-argument',
        `shrinking from ${this.size} to ${size} bytes deletes the data past the new end; ask for it with shrink`,
        { path: this.path, field: 'size' },
      );
    }
    const resize = this.driverImage.resize;
    if (!resize)
      throw new BlockError('not-supported', `format ${this.format} does not support resize`, { path: this.path });
    const context = this.resizeContext(options.preallocation);
    await this.exclusively(async () => {
      // Any size change makes other bytes the file's last (a grow: old bytes followed by zeros;
      // a shrink: bytes from inside the disk), and a grow can complete a short head: judge them.
      // Also at the same size: a raw file shorter than its last sector grows to the size asked.
      if (this.probeGuard) await this.checkProbeGuard([], size);
      await resize.call(this.driverImage, size, context);
    }).catch(this.retitled);
  }

  /**
   * Changes format options in place (qemu-img amend); `options` as
   * `key=value` pairs. Runs after the requests in flight, alone.
   */
  async amend(options: ReadonlyMap<string, string>): Promise<void> {
    this.checkOpen();
    this.checkWritable();
    const amend = this.driverImage.amend;
    if (!amend) {
      // qemu-img's words, which name no file.
      throw new BlockError('not-supported', `Format driver '${this.format}' does not support option amendment`);
    }
    const context = this.resizeContext();
    await this.exclusively(() => amend.call(this.driverImage, options, context)).catch(this.retitled);
  }

  /** True when the format keeps internal snapshots this image can create, apply and delete (`snapshot`). */
  get snapshottable(): boolean {
    return this.driverImage.snapshot !== undefined;
  }

  /**
   * Creates, applies (reverts the image to) or deletes an internal snapshot (qemu-img snapshot).
   * Runs after the requests in flight, alone; an apply changes every byte and perhaps the size.
   */
  async snapshot(request: SnapshotRequest): Promise<void> {
    this.checkOpen();
    this.checkWritable();
    const snapshot = this.driverImage.snapshot;
    if (!snapshot) {
      throw new BlockError('not-supported', `Format driver '${this.format}' does not support snapshots`, {
        path: this.path,
        code: 'ENOTSUP',
      });
    }
    await this.exclusively(() => snapshot.call(this.driverImage, request)).catch(this.retitled);
  }

  /** True when the driver can check its own metadata (`check`). */
  get checkable(): boolean {
    return this.driverImage.check !== undefined;
  }

  /**
   * The driver's consistency check of its metadata against its file
   * (qemu-img check), repairing what `repair` asks (the image must then be
   * writable). Undefined when the format has nothing of its own to check.
   */
  async check(repair: RepairRequest = { leaks: false, corruptions: false }): Promise<DriverCheckResult | undefined> {
    this.checkOpen();
    if (repair.leaks || repair.corruptions) this.checkWritable();
    const check = this.driverImage.check;
    if (!check) return undefined;
    return this.exclusively(() => check.call(this.driverImage, repair)).catch(this.retitled);
  }

  /**
   * Runs `work` as a tracked write of [start, end). Every change to this
   * layer (write, zeroing, discard, resize, amend, repair) goes through here,
   * so `changeCount` moves before and after it (see `ChainCursor`).
   */
  private runWrite<T>(start: number, end: number, work: () => Promise<T>): Promise<T> {
    this.changes++;
    const unit = this.capabilities.limits.serialAlignment;
    if (unit !== undefined) {
      start = alignDown(start, unit);
      end = alignUp(end, unit);
    }
    return this.tracker.run(start, end, true, work).then(
      (value) => {
        this.changes++;
        return value;
      },
      (err: unknown) => {
        this.changes++;
        throw err;
      },
    );
  }

  /**
   * Runs `work` as a write over the whole image: after every request issued
   * before it, and before any issued while it runs (a resize must not meet a
   * read of the old size halfway).
   */
  private exclusively<T>(work: () => Promise<T>): Promise<T> {
    const before = this.queue;
    const exclusive = () => this.runWrite(0, Number.MAX_SAFE_INTEGER, work);
    const run = before === undefined ? exclusive() : before.then(exclusive);
    // Whatever is issued from now on waits until this is over (see `queue`).
    this.enqueue(
      run.then(
        () => undefined,
        () => undefined,
      ),
    );
    return run;
  }

  /**
   * Waits for this request's turn while a resize, amend or check is pending;
   * resolves to the function to call once the request is in the tracker
   * (or has failed its checks), which lets the next one in.
   */
  private async admission(): Promise<() => void> {
    const before = this.queue!;
    let admitted!: () => void;
    this.enqueue(
      new Promise<void>((resolve) => {
        admitted = resolve;
      }),
    );
    await before;
    return admitted;
  }

  private enqueue(next: Promise<void>): void {
    this.queue = next;
    void next.then(() => {
      if (this.queue === next) this.queue = undefined;
    });
  }

  /** Rethrows a driver's error under the name the user gave the image. */
  private readonly retitled = (err: unknown): never => {
    throw retitle(err, this.path);
  };

  private resizeContext(preallocation?: PreallocationMode): ResizeOptions {
    const context: ResizeOptions = {};
    if (preallocation !== undefined) context.preallocation = preallocation;
    if (this.backing) context.backingSize = this.backing.size;
    return context;
  }

  /** The images of the chain from this one down. */
  chain(): Image[] {
    const out: Image[] = [];
    for (let image: Image | undefined = this; image; image = image.backing) out.push(image);
    return out;
  }

  info(): ImageInfo {
    const info: ImageInfo = {
      path: this.path,
      format: this.format,
      size: this.size,
      sectorSize: this.alignment,
      requestAlignment: this.alignment,
      readOnly: this.readOnly,
      formatSpecific: this.driverImage.info(),
    };
    const extras = this.driverImage.infoExtras?.();
    if (extras) info.extras = extras;
    if (this.capabilities.limits.clusterSize !== undefined) info.clusterSize = this.capabilities.limits.clusterSize;
    const ref = this.driverImage.backing;
    if (ref) {
      info.backing = { stored: ref.path, opened: this.backing !== undefined };
      if (this.backingPath !== undefined) info.backing.resolved = this.backingPath;
      const format = this.backing?.format ?? ref.format;
      if (format !== undefined) info.backing.format = format;
    }
    return info;
  }

  /**
   * Closes this image and its backing chain; pending writes are flushed first.
   * Requests issued once close() has begun are refused with `closed` (one
   * accepted then could complete after the final flush and be lost); a second
   * call waits for the first.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.closed = true;
    // Requests issued before close that wait behind a resize enter the tracker first, then all drain.
    while (this.queue !== undefined) await this.queue;
    await this.tracker.drain();
    let failure: unknown;
    try {
      if (!this.readOnly) await this.driverImage.flush();
    } catch (err) {
      failure = err;
    }
    try {
      await this.driverImage.close();
    } catch (err) {
      failure ??= err;
    }
    try {
      await this.backing?.close();
    } catch (err) {
      failure ??= err;
    }
    if (failure !== undefined) throw failure;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The backing reference stored in the image (unresolved). */
  get backingReference(): DriverImage['backing'] {
    return this.driverImage.backing;
  }

  /**
   * Reads for a layer above (its `ReadBelow`): the part inside this image is
   * read, the part past its end reads as zeros (a shorter backing file).
   * Synchronous (undefined) when this image's read is, as for `readInto`.
   */
  private readPadded(offset: number, into: Uint8Array): void | Promise<void> {
    const inside = Math.max(0, Math.min(into.length, this.size - offset));
    if (inside < into.length) into.fill(0, inside);
    if (inside <= 0) return undefined;
    const part = inside === into.length ? into : into.subarray(0, inside);
    // A read falls through the chain synchronously until some layer awaits I/O: a few stack
    // frames per layer. Every 64 layers it starts afresh from the microtask queue, so a deep
    // chain (maxDepth raised to 1000s) cannot overflow the stack; ordinary chains never pay for it.
    if (this.levelsBelow % 64 === 63 || this.closed || this.queue !== undefined)
      return this.readPaddedLater(offset, part);
    return this.readRange(offset, part, true);
  }

  private async readPaddedLater(offset: number, into: Uint8Array): Promise<void> {
    await undefined;
    await this.readInto(offset, into);
  }

  private async readUnaligned(offset: number, into: Uint8Array): Promise<void> {
    const ss = this.alignment;
    const end = offset + into.length;
    const headEnd = Math.min(alignUp(offset, ss), end);
    const tailStart = Math.max(alignDown(end, ss), headEnd);
    // Head: the part before the first sector boundary.
    if (headEnd > offset) await this.readBounced(offset, into.subarray(0, headEnd - offset));
    // Middle: whole sectors straight into the caller's buffer.
    if (tailStart > headEnd) {
      await this.driverImage.read(headEnd, into.subarray(headEnd - offset, tailStart - offset), this.readBelow);
    }
    // Tail: a partial last sector.
    if (end > tailStart) await this.readBounced(tailStart, into.subarray(tailStart - offset));
  }

  /** Reads a range inside one sector through a sector-sized bounce buffer. */
  private async readBounced(offset: number, into: Uint8Array): Promise<void> {
    const ss = this.alignment;
    const sectorStart = alignDown(offset, ss);
    const bounce = new Uint8Array(ss);
    await this.driverImage.read(sectorStart, bounce, this.readBelow);
    into.set(bounce.subarray(offset - sectorStart, offset - sectorStart + into.length));
  }

  /**
   * Writes `data` at `offset` through the driver: aligned, at once; else the
   * partial first and last units are read-modify-written through the chain
   * (in bounce buffers of one unit each) and the aligned middle is written
   * from a view of `data`, never copied. With `fua`, durable when it resolves.
   */
  private writeUnaligned(offset: number, data: Uint8Array, fua = false, compress = false): Promise<void> {
    const ss = this.capabilities.limits.requestAlignment;
    const write = this.driverImage.write;
    if (!fua && !compress && write !== undefined && offset % ss === 0 && data.length % ss === 0) {
      // Aligned, nothing to flush after: straight to the driver (no promise of our own).
      try {
        return write.call(this.driverImage, offset, data, undefined, this.readBelowForWrite);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.writeUnalignedSlow(offset, data, fua, compress);
  }

  /** `writeUnaligned` of the cases with edges to merge or a flush to follow. */
  private async writeUnalignedSlow(offset: number, data: Uint8Array, fua = false, compress = false): Promise<void> {
    const write = this.driverImage.write;
    if (!write) throw new BlockError('not-supported', `format ${this.format} is read-only in blk`, { path: this.path });
    const nativeFua = fua && this.capabilities.fua === 'native';
    const flags =
      nativeFua || compress ? { ...(nativeFua ? { fua: true } : {}), ...(compress ? { compress } : {}) } : undefined;
    const below = this.readBelowForWrite;
    const put = (at: number, bytes: Uint8Array) => write.call(this.driverImage, at, bytes, flags, below);
    const ss = this.capabilities.limits.requestAlignment;
    const dataEnd = offset + data.length;
    const start = alignDown(offset, ss);
    const end = alignUp(dataEnd, ss);
    if (start === offset && end === dataEnd) {
      await put(offset, data);
    } else {
      const middleStart = alignUp(offset, ss);
      const middleEnd = alignDown(dataEnd, ss);
      if (middleEnd <= middleStart || data.length <= SPLIT_MIN) {
        // One or two units with no whole one between them, or a payload small enough that copying it
        // costs less than two more driver writes (cow in writethrough: a flush pair each): one bounce buffer.
        const bounce = new Uint8Array(end - start);
        if (offset > start) await this.driverImage.read(start, bounce.subarray(0, ss), this.readBelowForWrite);
        const lastSector = end - ss;
        if (dataEnd < end && (lastSector > start || offset === start)) {
          await this.driverImage.read(lastSector, bounce.subarray(lastSector - start), this.readBelowForWrite);
        }
        bounce.set(data, offset - start);
        await put(start, bounce);
      } else {
        // Both partial units are read before anything is written (the request is tracked whole).
        const head = offset > start ? new Uint8Array(ss) : undefined;
        const tail = dataEnd < end ? new Uint8Array(ss) : undefined;
        if (head) await this.driverImage.read(start, head, this.readBelowForWrite);
        if (tail) await this.driverImage.read(middleEnd, tail, this.readBelowForWrite);
        if (head) {
          head.set(data.subarray(0, middleStart - offset), offset - start);
          await put(start, head);
        }
        await put(middleStart, data.subarray(middleStart - offset, middleEnd - offset));
        if (tail) {
          tail.set(data.subarray(middleEnd - offset));
          await put(middleEnd, tail);
        }
      }
    }
    if (fua && !nativeFua) await this.driverImage.flush();
  }

  /**
   * The ranges whose bytes decide how this image's file probes, when writes
   * to it are guarded (its format was probed or assumed, and its guest data
   * starts at file offset 0: raw); none otherwise. A job about to copy guest
   * data into the image checks those ranges first with `checkWrites`.
   */
  probeGuardRanges(): Array<{ start: number; length: number }> {
    const guard = this.probeGuard;
    if (!guard) return [];
    const head = Math.min(guard.window, this.size);
    const tailStart = Math.max(head, this.guardTailZone());
    const ranges = [{ start: 0, length: head }];
    if (tailStart < this.size) ranges.push({ start: tailStart, length: this.size - tailStart });
    return ranges;
  }

  /**
   * Throws `probe-guard` when `writes`, applied together, would make a
   * guarded image probe as another format (see `probeGuardRanges`); does
   * nothing for an unguarded image. Writes nothing.
   */
  async checkWrites(writes: ReadonlyArray<{ offset: number; data: Uint8Array }>): Promise<void> {
    this.checkOpen();
    if (!this.probeGuard || writes.length === 0) return;
    await this.checkProbeGuard(writes);
  }

  /**
   * Refuses `writes` (or a resize to `size`, which makes other bytes the
   * file's last) that would make a guarded image probe as another format.
   */
  private async checkProbeGuard(
    writes: ReadonlyArray<{ offset: number; data: Uint8Array }>,
    size = this.size,
  ): Promise<void> {
    const guard = this.probeGuard!;
    // The bytes that decide the probe, as they will be after these writes and this resize
    // (what a grow adds reads as zeros).
    const head = new Uint8Array(Math.min(guard.window, size));
    await this.readUnaligned(0, head.subarray(0, Math.min(head.length, this.size)));
    // Probing reads the file's last bytes, and the file may be shorter than the image (see
    // guardTailZone): judge the tail where the file will end, after a resize to `size` (the
    // file is then as long as asked) or after these writes (a write past the end grows it).
    let fileEnd = size;
    if (size === this.size && this.driverImage.fileLength) {
      fileEnd = Math.min(size, await this.driverImage.fileLength());
      for (const { offset, data } of writes) fileEnd = Math.max(fileEnd, Math.min(size, offset + data.length));
    }
    const tailLength = Math.min(guard.tail, fileEnd);
    const tailStart = fileEnd - tailLength;
    const tail = new Uint8Array(tailLength);
    if (tailStart < this.size)
      await this.readUnaligned(tailStart, tail.subarray(0, Math.min(tailLength, this.size - tailStart)));
    for (const { offset, data } of writes) {
      overlay(head, 0, offset, data);
      overlay(tail, tailStart, offset, data);
    }
    const result = guard.registry.recognise(head, tail, { fileName: this.path, size: fileEnd });
    const becomes = result?.foreign?.format ?? result?.driver?.name;
    if (becomes !== undefined && becomes !== this.format) {
      const offset = writes[0]?.offset ?? tailStart;
      const what =
        writes.length > 0
          ? `a write at offset ${offset}`
          : `${size < this.size ? 'shrinking' : 'growing'} the image to ${size} bytes`;
      throw new BlockError(
        'probe-guard',
        `refusing ${what}: the image's format ${this.format} was probed or assumed, and this `
          + `would make it probe as ${becomes}; open it with format '${this.format}' to allow it`,
        { path: this.path, offset, format: becomes },
      );
    }
  }

  /** Offsets and lengths must be numbers: a string or bigint is a caller's mistake, not a range. */
  private checkNumbers(offset: unknown, length: unknown): void {
    checkNumberArg(offset, 'offset', this.path);
    checkNumberArg(length, 'length', this.path);
  }

  private checkOpen(): void {
    if (this.closed) throw new BlockError('closed', 'image used after close', { path: this.path });
  }

  private checkWritable(): void {
    if (this.readOnly) throw new BlockError('read-only', 'image is open read-only', { path: this.path });
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

/** How much shorter than the image a guarded file may be (see `Image.guardTailZone`). */
const TAIL_SLACK = 512;

/**
 * Unaligned writes longer than this are split (partial head and tail bounced,
 * the aligned middle passed as a view of the caller's buffer); shorter ones
 * are copied whole into one bounce buffer and written at once.
 */
const SPLIT_MIN = 64 * 1024;

/** Largest buffer of zeros `writeZeroes` writes at once (a 2 GiB zero write must not allocate 2 GiB). */
const ZERO_CHUNK = 1024 * 1024;

function sameRun(a: ChainStatus & { start: number }, b: ChainStatus): boolean {
  if (a.depth !== b.depth || a.zero !== b.zero || a.data !== b.data || a.path !== b.path) return false;
  if (a.hostOffset === undefined && b.hostOffset === undefined) return true;
  return a.hostOffset !== undefined && b.hostOffset !== undefined && a.hostOffset + a.length === b.hostOffset;
}

/** Copies the part of `data` (written at file offset `at`) that falls inside `buf` (which holds file offset `bufStart` on). */
function overlay(buf: Uint8Array, bufStart: number, at: number, data: Uint8Array): void {
  const from = Math.max(at, bufStart);
  const to = Math.min(at + data.length, bufStart + buf.length);
  if (from < to) buf.set(data.subarray(from - at, to - at), from - bufStart);
}
