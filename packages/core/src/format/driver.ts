import type { Storage } from '../storage/storage.js';
import type { BackingCheck, BackingFacts, BackingReference, BackingSpec } from './backing.js';
import type { DriverCapabilities, WriteFlags } from './capabilities.js';
import type {
  DriverCheckResult,
  DriverCreateOptions,
  MeasureInput,
  MeasureResult,
  OptionSpec,
  RepairRequest,
  ResizeOptions,
} from './options.js';

export * from './backing.js';
export * from './options.js';
export * from './capabilities.js';

/**
 * The block-driver contract: the seven operations of QEMU's 2004 driver table
 * (probe, open, read, write, close, create, is_allocated) plus flush.
 *
 * Units: drivers are sector-based. Every offset and length the core hands to
 * `DriverImage.read`, `write`, `writeZeroes`, `discard` and `blockStatus` is a
 * byte count that is a multiple of the image's `requestAlignment`, and lies
 * inside [0, alignUp(size, requestAlignment)). The core does all byte-granular work
 * (read-modify-write, bounds, read-only checks, request serialisation), so a
 * driver never has to.
 */
export interface BlockDriver {
  /** Format name, as used by `format: 'name'` and shown by `info`. */
  readonly name: string;
  /** One line for `--help` listings. */
  readonly description?: string;
  /**
   * True when the guest's bytes start at file offset 0 (raw): a guest write
   * there can make the file probe as another format, so an image of this
   * format opened by probing refuses writes that would (as QEMU does for raw).
   */
  readonly guestDataAtFileStart?: boolean;
  /**
   * How many leading bytes `probe` wants to see (the core reads the max over drivers and the
   * 2048 bytes the foreign-format signatures need, capped at 64 KiB; plus the file's last 512
   * bytes, in `ProbeHint.tail`).
   */
  readonly probeBytes: number;
  /**
   * Scores how likely `head` (the first bytes of a file, fewer if the file is
   * shorter) is an image of this format: 0 = no, 100 = certain. A pure
   * function: no I/O, no exceptions.
   */
  probe(head: Uint8Array, hint: ProbeHint): number;
  /** Opens an image over `storage`; throws a typed BlockError on a bad header. */
  open(storage: Storage, options: DriverOpenOptions): Promise<DriverImage>;
  /** Writes a new, empty image into `storage` (which is empty and writable). */
  create?(storage: Storage, options: DriverCreateOptions): Promise<void>;
  /**
   * How much host storage a new image of this format needs (qemu-img
   * measure): for an empty image of `size`, or for a copy of a source whose
   * data `input.dataBytes` counts. Throws `invalid-argument` for options the
   * format does not take, `not-supported` for a preallocation mode it lacks.
   */
  measure?(input: MeasureInput): Promise<MeasureResult>;
  /**
   * The `-o` options `create` takes, as data (`-o help` is rendered from
   * it, values are parsed by type). Without it a front end passes every
   * unknown key to `driverOptions` as typed.
   */
  readonly createOptions?: readonly OptionSpec[];
  /** What `DriverImage.amend` takes, for `-o help` listings and parsing. */
  readonly amendOptions?: readonly OptionSpec[];
}

export interface ProbeHint {
  /** The file's name, for drivers that also look at extensions (score ties only). */
  fileName?: string;
  /** The file's length in bytes. */
  size: number;
  /**
   * The file's last bytes (up to 512; the whole file when it is shorter),
   * for formats whose signature is a footer (a fixed VHD, a DMG).
   */
  tail?: Uint8Array;
}

/**
 * What probing read of a file: its first bytes (the registry's probe window,
 * or the whole file when it is shorter), its size, and its last bytes when
 * the head does not reach them (see `ProbeHint.tail`).
 */
export interface ProbedBytes {
  head: Uint8Array;
  size: number;
  tail?: Uint8Array;
}

export interface DriverOpenOptions {
  readOnly: boolean;
  /**
   * The bytes probing read of this storage just before the open (absent when
   * the format was named and nothing was probed). A driver uses them instead
   * of reading its header again when `head` covers it (one round trip less
   * over HTTP); `size` is the storage's size at the time.
   */
  probe?: ProbedBytes;
  /** Format-specific options (for example `{ variant: 'v2-qemu-lp64' }` for cow). */
  driverOptions?: Record<string, unknown>;
  /** Write-back policy; drivers without metadata may ignore it. See `CacheMode`. */
  cache: CacheMode;
  /**
   * Opened to be checked and repaired (`check -r`; QEMU's BDRV_O_CHECK): a writable open that the
   * image's own flags would otherwise refuse or repair first (qcow2's corrupt and dirty bits) goes
   * ahead as it is, for `check` to examine and repair.
   */
  forCheck?: boolean;
  /**
   * Hears, line by line, a repair the driver makes while opening (qcow2's dirty image opened
   * writable: its check's `Leaked ...`/`Repairing ...` lines, which QEMU's qcow2_do_open prints on
   * stderr). Without it the repair is silent.
   */
  onRepair?: (line: string) => void;
  /**
   * Opens another file the image names (qcow2's external data file), under
   * the same rules as a backing file: the caller's backing policy
   * (`forbid` refuses, `allowedDirs` confines, `approve` is asked, block
   * devices only when allowed, FIFOs and sockets never). A relative `name`
   * is resolved against the directory of the image being opened. The
   * storage belongs to the driver, which closes it. Absent when the core
   * opened the image without a file system (a bare Storage).
   */
  openFile?(name: string, options: OpenFileOptions): Promise<Storage>;
}

/** See `DriverImage.commitMarker`. */
export interface CommitMarker {
  readonly marked: boolean;
  readonly description: string;
  begin(): Promise<void>;
}

/** What `DriverOpenOptions.openFile` is asked for. */
export interface OpenFileOptions {
  /** What the file is to the image, for messages (`data-file`). */
  role: string;
  /** Default: as the image itself is opened. */
  readOnly?: boolean;
}

/**
 * How metadata writes are ordered against data writes and against `flush()`.
 * - `writeback` (default): data is written at once; metadata that makes new
 *   data visible (bitmap bits) is held in memory and written by `flush()`
 *   after the data is durable. A crash before `flush()` shows old contents
 *   for sectors first written since the last flush; never garbage.
 * - `writethrough`: every write is durable, data and metadata, when it resolves.
 * - `unsafe`: as writeback, but `flush()` does not ask the storage to sync.
 */
export type CacheMode = 'writeback' | 'writethrough' | 'unsafe';

/**
 * Block status of one layer for a run that starts at the queried offset: what
 * QEMU's `bdrv_co_block_status` returns (its BDRV_BLOCK_* flags) and what an
 * NBD server's `base:allocation` and `qemu:allocation-depth` contexts are
 * built from.
 *
 * `length` is at least one sector and a whole number of sectors (or reaches
 * the end of the image). It MAY be longer than the queried length: a driver
 * that knows the run goes on (a raw hole, a long run of clear bitmap bits)
 * says so, and the core clamps (`Image.status` cuts the run at the query;
 * `ChainCursor`, behind `Image.map` and `chainStatus`, keeps the whole run and
 * answers the next query inside it without asking the driver again). It must
 * not reach past the end of the image (an `io` error). Every field holds for
 * the whole run, so a caller may cut it anywhere.
 */
export interface BlockStatus {
  /**
   * BDRV_BLOCK_ALLOCATED: this layer decides what the run reads (its own data,
   * or zeros it records); false when reads fall through to the layer below
   * (or read as zeros when there is none). A format without a backing file
   * (raw) holds every byte, holes included, as QEMU's protocol layer does.
   */
  allocated: boolean;
  /** Bytes from the queried offset that share this status (see above: may exceed the query). */
  length: number;
  /**
   * BDRV_BLOCK_DATA: true when the run is stored data (which may hold zeros);
   * false for a hole, which reads as zeros when `allocated` (a raw file's
   * hole, a zero cluster) and falls through when not. Absent: the driver does
   * not tell, and the core takes `allocated && !zero`.
   */
  data?: boolean;
  /**
   * BDRV_BLOCK_ZERO: true when the run is known to read as zeros (a hole, a
   * zero cluster). False or absent: it may hold anything.
   */
  zero?: boolean;
  /**
   * BDRV_BLOCK_OFFSET_VALID: where the run lies in this layer's storage, in
   * one contiguous piece (`hostOffset + k` holds the run's byte `k`). Given
   * for holes of a raw file too, as QEMU does.
   */
  hostOffset?: number;
}

/**
 * Reads bytes from the layer below (backing chain, or zeros when there is
 * none). Returns undefined when `into` was filled synchronously (every layer
 * below had what it needed in memory and its storage reads synchronously),
 * else a promise: a driver awaits only when one comes back (or simply
 * `await`s every call: `await undefined` costs one microtask).
 */
export type ReadBelow = (offset: number, into: Uint8Array) => void | Promise<void>;

/** An opened image as the driver sees it (QEMU's BlockDriverState). */
export interface DriverImage {
  readonly driver: BlockDriver;
  /**
   * The driver's I/O unit in bytes: every request the core makes is aligned
   * to it (the core read-modify-writes the rest). 1 for byte-granular formats.
   * Becomes `Image.capabilities.limits.requestAlignment`.
   */
  readonly requestAlignment?: number;
  /**
   * @deprecated The old name of `requestAlignment`, read only when that is
   * absent. It no longer stands for the allocation unit (`capabilities.limits.clusterSize`)
   * nor for a unit of `info` output.
   */
  readonly sectorSize?: number;
  /**
   * What this opened image can do, as far as the driver knows (see
   * `DriverCapabilities`); the core derives the rest and publishes the
   * result as `Image.capabilities`. Read once, right after `open`.
   */
  readonly capabilities?: DriverCapabilities;
  /** Virtual size in bytes (need not be a multiple of requestAlignment). */
  readonly size: number;
  readonly backing?: BackingReference;
  /**
   * Fills `into` with the image's contents at `offset`. Runs this layer does
   * not hold are read through `below`, one call per contiguous run.
   *
   * May complete synchronously: return undefined once `into` is filled, or a
   * promise when some part has to wait (metadata not in memory, a storage
   * without `readSync`, `below` returning a promise). This is the core's
   * fast path for random reads (a request that completes synchronously costs
   * no promise, closure or tracker entry; bench rows `rand-read-*`), without
   * a second, synchronous copy of the read path: a driver checks what it
   * has in memory and `storage.readSync`, and falls into an async
   * continuation at the first thing it must wait for. A plain
   * `async read(...)` is a valid implementation too, only slower.
   * Errors: a rejected promise (the core also accepts a synchronous throw).
   */
  read(offset: number, into: Uint8Array, below: ReadBelow): void | Promise<void>;
  /**
   * Optional: where the guest bytes [offset, offset + length) of a run this image holds (its
   * `blockStatus` says data here) lie in its storage, when they lie there as they are, contiguous:
   * byte i of the run is byte `position + i` of `storage`, and bytes past the storage's end read as
   * zeros (raw's last partial sector). Undefined when not (compressed, encrypted, scattered). For
   * zero-copy transfers (`Image.readFileRuns`).
   */
  storageRange?(offset: number, length: number): { storage: Storage; position: number } | undefined;
  /**
   * Optional, for formats whose guest data starts at file offset 0
   * (`guestDataAtFileStart`): the file's length now, when it can be shorter
   * than `size` (raw counts whole 512-byte sectors). The probe guard judges
   * the file's real last bytes with it; without it, `size` is the file's end.
   */
  fileLength?(): Promise<number>;
  /**
   * Writes `data` at `offset` (aligned). Absent for formats that cannot
   * write: a writable open is then refused up front. `flags.fua` is set only
   * when the driver declares `capabilities.fua: 'native'` (the write must be
   * durable when it resolves); otherwise the core flushes after the write.
   * `below` reads the layer below, as in `read`, for formats that copy the
   * rest of an allocation unit on write (qcow2's partial-cluster copy-on-write).
   */
  write?(offset: number, data: Uint8Array, flags?: WriteFlags, below?: ReadBelow): Promise<void>;
  /**
   * Optional: makes the range read as zeros without a data buffer, where the
   * format can (QEMU's bdrv_co_pwrite_zeroes). `mayUnmap`: the range may be
   * left deallocated, as long as it reads as zeros (this layer has no backing
   * file below, or the caller checked that the layer below reads zeros).
   * Resolves false, having changed nothing, when the format cannot do it
   * here: the core then writes a buffer of zeros (or, for a request with
   * `noFallback`, refuses it with `not-supported`).
   */
  writeZeroes?(offset: number, length: number, flags: { mayUnmap: boolean }): Promise<boolean>;
  /**
   * This layer's status for the run starting at `offset` (see `BlockStatus`):
   * the answer may cover more than `length`, never less than one sector. The
   * core asks with the rest of the range it walks; a driver may also cut a
   * run short where looking further would cost (the core asks again from
   * where it ends).
   */
  blockStatus(offset: number, length: number): Promise<BlockStatus>;
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * Points the image at another backing file (rebase, ending a commit, or
   * accepting a changed backing file), recording what the format keeps of
   * `backing.facts`. Only for formats that store a backing reference.
   *
   * Ordering guarantee (what rebase relies on to finish a torn rewrite):
   * when the new reference cannot be written in one atomic write, the part
   * that `checkBackingFacts` compares is written before the path, so a
   * rewrite cut short by a power loss leaves an image whose recorded facts
   * are the new backing file's: it is refused over the old file (never
   * misread) and `checkBackingFacts` with the new file's facts matches, so
   * the same rebase run again can recognise and finish it. A driver that
   * records no facts writes the reference atomically. `backingMarker`
   * (see below) is cleared by this call.
   */
  setBacking?(backing: BackingSpec | undefined): Promise<void>;
  /**
   * Optional: compares what the image recorded about its backing file with
   * the file as it is now (UML's size and mtime check), one entry per
   * recorded fact the driver could compare (facts that are absent are
   * skipped). The core calls it at open with facts it gathered and applies
   * the backing policy's `onMismatch`; jobs call it before a commit. An
   * image that records nothing returns [] or lacks the method.
   */
  checkBackingFacts?(facts: BackingFacts): BackingCheck[];
  /**
   * Optional commit protocol, for formats whose backing reference records
   * facts that a commit into the backing file changes (UML's mtime): while
   * a commit runs, the image carries a mark that makes it refuse to open
   * normally (`checkBackingFacts` reports a mismatch). `begin()` writes the
   * mark (not flushed); `setBacking` with the backing file's new facts
   * clears it; `marked` says whether the image carries it now (a mark
   * proves nothing by itself: anyone can write one into a header), and
   * `description` names it for messages (`backing mtime 0`).
   * Undefined when the image records nothing a commit could change.
   */
  readonly commitMarker?: CommitMarker;
  /**
   * Optional: throws what `setBacking(backing)` would refuse with, writing
   * nothing, so that a rebase is refused before it copies any data.
   */
  checkBacking?(backing: BackingSpec | undefined): void;
  /**
   * Marks the given range as not allocated in this layer, so reads fall
   * through again (used by commit to empty an overlay), or otherwise gives
   * it up as `capabilities.discard` says it reads afterwards. The range is
   * aligned to `capabilities.limits.discardAlignment` (or reaches the end of
   * the image); the core clips callers' ranges to it.
   */
  discard?(offset: number, length: number): Promise<void>;
  /**
   * Optional (QEMU's bdrv_make_empty): gives up every cluster or sector this
   * layer holds, so that the whole image reads through to its backing file
   * again (what commit leaves in the overlay). Needed where `discard` leaves
   * zeros rather than the backing file's data (qcow2 v3); without it the
   * core empties an image whose `capabilities.discard` is `backing` with
   * `discard`. Requests are drained before the call.
   */
  makeEmpty?(): Promise<void>;
  /**
   * Changes the virtual size in place (qemu-img resize); `size` then reads
   * the new value. Growing keeps every byte and the new part reads as the
   * layer below (or zeros); shrinking drops what lies past the new end.
   * Throws `not-supported` when this image cannot be resized in place.
   */
  resize?(size: number, options: ResizeOptions): Promise<void>;
  /**
   * Checks the image's own metadata against its file (qemu-img check) and
   * repairs what `repair` asks for. Requests are drained before the call.
   */
  check?(repair: RepairRequest): Promise<DriverCheckResult>;
  /**
   * Changes format options of an existing image (qemu-img amend); `options`
   * as given on the command line (`key` -> `value`). A value equal to the
   * current one is accepted and changes nothing.
   */
  amend?(options: ReadonlyMap<string, string>, context: ResizeOptions): Promise<void>;
  /** Format-specific facts for `info` (version, variant, sector size, ...). */
  info(): Record<string, unknown>;
  /**
   * qemu-img info's fields beyond the format-specific ones, for formats that have them:
   * the cluster size it reports, the dirty flag, internal snapshots. Absent: none.
   */
  infoExtras?(): InfoExtras;
  /**
   * Optional: internal snapshots (qemu-img snapshot -c/-a/-d; the list is `infoExtras().snapshots`).
   * `create` records the image's current state under a new ID; `apply` makes a snapshot's state
   * (and its virtual size) the current one; `delete` removes a snapshot. Each request names its
   * snapshot as the format looks them up (qcow2: apply by ID, then name; delete by name, as
   * qemu-img). Requests are drained before the call and none runs during it.
   */
  snapshot?(request: SnapshotRequest): Promise<void>;
}

/** What `DriverImage.snapshot` is asked to do. */
export type SnapshotRequest =
  | {
      action: 'create';
      name: string;
      /** Wall-clock time recorded in the snapshot (default: now). */
      dateSec?: number;
      dateNsec?: number;
    }
  | { action: 'apply'; snapshot: string }
  | { action: 'delete'; snapshot: string };

/** An internal snapshot as `info` lists it (qemu's SnapshotInfo). */
export interface SnapshotInfo {
  id: string;
  name: string;
  /** Saved VM state bytes (0 for a disk-only snapshot). */
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  /** Guest run time at the snapshot, in nanoseconds. */
  vmClockNsec: number;
  /** Instruction count, when recorded. */
  icount?: number;
}

/** What `DriverImage.infoExtras` reports (qemu-img info's ImageInfo members). */
export interface InfoExtras {
  /** The cluster size qemu-img info shows (`cluster-size`). */
  clusterSize?: number;
  /** The image was not closed cleanly (`dirty-flag`). */
  dirty?: boolean;
  /** Internal snapshots, in table order. */
  snapshots?: readonly SnapshotInfo[];
}
