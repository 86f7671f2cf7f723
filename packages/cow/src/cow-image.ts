/**
 * An opened COW image: routes sector runs between the data area and the
 * layer below, and keeps data writes ahead of the bitmap bits that publish
 * them.
 */
import {
  BlockError,
  preallocate,
  readZeroFilled,
  supportedPreallocation,
  type BackingCheck,
  type BackingFacts,
  type CommitMarker,
  type BackingReference,
  type BackingSpec,
  type BlockDriver,
  type BlockStatus,
  type CacheMode,
  type DriverCapabilities,
  type DriverCheckResult,
  type DriverImage,
  type ReadBelow,
  type RepairRequest,
  type ResizeOptions,
  type Storage,
  flushStorage,
  truncateTo,
  writeTo,
} from '@blk/core/portable';
import { planAmend } from './amend.js';
import {
  COMMIT_MARK_MTIME,
  checksBacking,
  compareBackingFacts,
  mtime32,
  recordedBackingSize,
  recordedMtime,
} from './backing.js';
import { BitmapCache } from './bitmap-cache.js';
import { checkCow } from './check.js';
import { encodeBackingPath, encodeHeader, type CowHeader } from './codec.js';
import type { CowLayout } from './layout.js';
import { COW_PREALLOCATION } from './options.js';
import { inPlaceRange, planResize, setBitRangeOnDisk, setBitsOnDisk } from './resize.js';
import { COW_SECTOR_SIZE, VARIANTS, fieldOf } from './variants.js';

function noop(): void {}

/**
 * Waits for every read of a request (`last` too) and fails with the first failure only once all
 * are over: a read still running could otherwise write into a buffer its caller already reuses.
 */
function settleAll(pending: Array<Promise<void>> | undefined, last: void | Promise<void>): void | Promise<void> {
  if (pending === undefined) return last;
  if (last !== undefined) pending.push(last);
  if (pending.length === 1) return pending[0];
  return Promise.allSettled(pending).then((results) => {
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });
}

const SS = COW_SECTOR_SIZE;

export interface CowImageParts {
  driver: BlockDriver;
  storage: Storage;
  header: CowHeader;
  /** The header bytes as read, so that rewriting fields keeps every other byte. */
  headerBytes: Uint8Array;
  layout: CowLayout;
  readOnly: boolean;
  cache: CacheMode;
  bitmapCacheBytes?: number;
}

export { mtime32 };

export class CowImage implements DriverImage {
  readonly driver: BlockDriver;
  /** Every request is whole 512-byte sectors, the unit of the bitmap. */
  readonly requestAlignment = SS;
  /** @deprecated `requestAlignment`. */
  readonly sectorSize = SS;
  /**
   * One bit per 512-byte sector (the cluster); no zeroing of its own (the core
   * writes zeros, or clears bits where the layer below reads zeros); a
   * discarded sector reads from the backing file again (zeros without one).
   * A run of sectors is one storage request, so the storage's preferred
   * transfer (at least 4 KiB) and maximum are the image's.
   */
  get capabilities(): DriverCapabilities {
    const { preferredTransfer, maxTransfer } = this.storage.capabilities.limits;
    return {
      discard: this.header.backingFile === '' ? 'zero' : 'backing',
      limits: {
        clusterSize: SS,
        preferredTransfer: Math.max(4096, preferredTransfer ?? 0),
        ...(maxTransfer !== undefined ? { maxTransfer } : {}),
      },
    };
  }
  /** Virtual size; changes only through `resize`. */
  size: number;
  layout: CowLayout;
  private header: CowHeader;
  private headerBytes: Uint8Array;
  private readonly storage: Storage;
  private readonly readOnly: boolean;
  private readonly cache: CacheMode;
  private readonly bitmapCacheBytes: number | undefined;
  /** The bitmap, loaded piecewise; exposed for tests and diagnostics (replaced when the layout changes). */
  bitmap: BitmapCache;
  private closed = false;

  constructor(parts: CowImageParts) {
    this.driver = parts.driver;
    this.storage = parts.storage;
    this.header = parts.header;
    this.headerBytes = parts.headerBytes;
    this.layout = parts.layout;
    this.readOnly = parts.readOnly;
    this.cache = parts.cache;
    this.bitmapCacheBytes = parts.bitmapCacheBytes;
    // Sizes are validated to be whole sectors, so QEMU's floor and UML's round-up agree.
    this.size = parts.layout.sectors * SS;
    this.bitmap = this.newBitmapCache();
  }

  /** A cache over the bitmap of the current layout (empty: chunks load on demand). */
  private newBitmapCache(): BitmapCache {
    return new BitmapCache({
      storage: this.storage,
      bitmapOffset: this.layout.bitmapOffset,
      bitmapLength: this.layout.bitmapLength,
      trackedBits: this.layout.trackedSectors,
      mode: this.cache,
      maxBytes: this.bitmapCacheBytes,
    });
  }

  get variant(): CowHeader['variant'] {
    return this.header.variant;
  }

  /** UML variants record the backing file's size and mtime and UML refuses to open on a mismatch; QEMU checks neither. */
  get backing(): BackingReference | undefined {
    const { backingFile, backingFileBytes, size, mtime, variant } = this.header;
    if (backingFile === '') return undefined;
    const ref: BackingReference = { path: backingFile };
    if (backingFileBytes !== undefined) ref.rawPath = backingFileBytes.slice();
    if (checksBacking(variant)) ref.expect = { size, mtimeSec: mtime };
    return ref;
  }

  /** UML's check: the backing file must still have the size and mtime the header records. */
  checkBackingFacts(facts: BackingFacts): BackingCheck[] {
    return compareBackingFacts(this.header, facts);
  }

  /**
   * UML variants over a backing file: a commit marks the header by recording
   * mtime 0 (UML then refuses to open the overlay while its backing file
   * changes); `setBacking` with the file's new facts clears it.
   */
  get commitMarker(): CommitMarker | undefined {
    if (!checksBacking(this.header.variant) || this.header.backingFile === '') return undefined;
    return {
      marked: this.header.mtime === COMMIT_MARK_MTIME,
      description: `backing mtime ${COMMIT_MARK_MTIME}`,
      begin: () => this.rewriteHeader({ mtime: COMMIT_MARK_MTIME }),
    };
  }

  /**
   * One storage read per allocated run, one `below` call per unallocated run.
   * Synchronous (see `DriverImage.read`) while the bitmap chunks it needs are
   * cached, the storage reads synchronously and `below` completes at once.
   * Runs that must wait (a storage read sent to a thread pool, a layer below
   * that waits) are all issued before any is awaited, so the runs of one
   * request overlap (a 256 KiB read over alternating runs costs one round
   * trip, not one per run); only a bitmap chunk still to load stops the walk.
   * Allocates nothing for a request that is one run read synchronously.
   */
  /**
   * The data area is linear: an allocated guest byte i is file byte dataOffset + i (past the end
   * of the file, zeros, as `read` fills them: a QEMU-created file ends after its bitmap).
   */
  storageRange(offset: number, _length: number): { storage: Storage; position: number } {
    return { storage: this.storage, position: this.layout.dataOffset + offset };
  }

  read(offset: number, into: Uint8Array, below: ReadBelow): void | Promise<void> {
    try {
      this.checkOpen();
      return this.readFrom(offset / SS, (offset + into.length) / SS, into, 0, below);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Reads sectors [sector, end) into `into` from byte `at` on: synchronously as far as it can (see `read`). */
  private readFrom(sector: number, end: number, into: Uint8Array, at: number, below: ReadBelow): void | Promise<void> {
    const storage = this.storage;
    const bitmap = this.bitmap;
    const dataOffset = this.layout.dataOffset;
    const caps = storage.capabilities;
    const syncMax = caps.syncRead ? (caps.limits.syncReadMax ?? Number.POSITIVE_INFINITY) : -1;
    let pending: Array<Promise<void>> | undefined;
    try {
      while (sector < end) {
        const run = bitmap.findRunSync(sector, end - sector);
        // A bitmap chunk to load first: the rest continues once it is in.
        if (run === 0) return settleAll(pending, this.readRunLater(sector, end, into, at, below));
        const count = run > 0 ? run : -run;
        const bytes = count * SS;
        const part = at === 0 && bytes === into.length ? into : into.subarray(at, at + bytes);
        if (run > 0) {
          // No synchronous read, or a short one (a QEMU-created file ends after its bitmap: past EOF
          // reads as zeros, inside the file it is an error): the async read reads this run again.
          // A storage may want long reads through `read` (limits.syncReadMax: its thread pool).
          if (bytes > syncMax || storage.readSync!(dataOffset + sector * SS, part) !== bytes) {
            (pending ??= []).push(readZeroFilled(storage, dataOffset + sector * SS, part).then(noop));
          }
        } else {
          const p = below(sector * SS, part);
          if (p !== undefined) (pending ??= []).push(p);
        }
        sector += count;
        at += bytes;
      }
    } catch (err) {
      // A synchronous failure (a read error) with reads of this request still running: reported once they are over.
      if (pending === undefined) throw err;
      return settleAll(pending, Promise.reject(err));
    }
    return settleAll(pending, undefined);
  }

  /** Finds the run at `sector` (loading its bitmap chunk), reads it, then the rest. */
  private async readRunLater(
    sector: number,
    end: number,
    into: Uint8Array,
    at: number,
    below: ReadBelow,
  ): Promise<void> {
    const { set, count } = await this.bitmap.findRun(sector, end - sector);
    const part = into.subarray(at, at + count * SS);
    // A QEMU-created file ends after its bitmap: data past EOF reads as zeros.
    const first = set
      ? readZeroFilled(this.storage, this.layout.dataOffset + sector * SS, part).then(noop)
      : below(sector * SS, part);
    const rest = this.readFrom(sector + count, end, into, at + count * SS, below);
    const done = settleAll(first === undefined ? undefined : [first], rest);
    if (done !== undefined) await done;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    const first = offset / SS;
    const count = data.length / SS;
    if (count === 0) return;
    this.checkTracked(first, count, 'write');
    // The data area is linear: the whole request is one write, before any bit.
    await writeTo(this.storage, this.layout.dataOffset + offset, data);
    if (this.cache === 'writethrough') {
      await flushStorage(this.storage);
      const changed = await this.bitmap.setRange(first, count, true);
      if (changed.length > 0) {
        await this.bitmap.writeChunks(changed);
        await flushStorage(this.storage);
      }
      return;
    }
    // writeback / unsafe: the bits go to disk at the next flush, after the data is durable.
    await this.bitmap.setRange(first, count, true);
  }

  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    this.checkOpen();
    const first = offset / SS;
    const count = Math.ceil(length / SS);
    // Cached bitmap chunks answer without a round of awaits per chunk (a walk over a chain asks
    // once per run of the overlay: a 256 KiB NBD read over alternating runs asks several times).
    const quick = this.bitmap.findRunSync(first, count);
    const run =
      quick !== 0 ? { set: quick > 0, count: quick > 0 ? quick : -quick } : await this.bitmap.findRun(first, count);
    const bytes = Math.min(run.count * SS, length);
    return run.set
      ? { allocated: true, length: bytes, hostOffset: this.layout.dataOffset + offset }
      : { allocated: false, length: bytes };
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    const first = offset / SS;
    // Sectors without a bit (v1/v2 rounding bug) are unallocated already.
    const count = Math.min(Math.ceil(length / SS), this.layout.trackedSectors - first);
    if (count <= 0) return;
    // Clearing a bit needs no data ordering: the sector just reads from below again.
    const changed = await this.bitmap.setRange(first, count, false);
    if (this.cache === 'writethrough' && changed.length > 0) {
      await this.bitmap.writeChunks(changed);
      await flushStorage(this.storage);
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (this.readOnly) return;
    await this.bitmap.writeBack();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.readOnly) await this.bitmap.writeBack();
    } finally {
      await this.storage.close();
    }
  }

  /**
   * Changes the size in place, within what the layout allows (see
   * resize.ts). Order: the bitmap cache is written back; the bits that must
   * read clear at the new size (a grow's new sectors, a shrink's dropped
   * ones) are cleared, the file is extended to hold the new bitmap, and that
   * is made durable; then the header's size; then the file's length. A crash between steps leaves the old size with only
   * meaningless bits cleared, or the new size with a file of the old length
   * (both read correctly: data past EOF reads as zeros).
   */
  async resize(size: number, options: ResizeOptions): Promise<void> {
    this.checkWritable();
    const path = this.storage.path;
    const plan = planResize(this.header, this.layout, size, options.backingSize, path);
    const mode = supportedPreallocation(options.preallocation, COW_PREALLOCATION, { path, driver: 'cow' });
    const old = this.layout;
    const next = plan.layout;
    const sync = this.cache !== 'unsafe';
    await this.bitmap.writeBack();
    // Bits past the last sector that stays: a grow clears them before anything (stray bits must not
    // allocate its new sectors); a shrink only once the header names the new size, since before it the
    // sectors they cover are still the disk's and, cleared, would read from the backing file after a crash.
    const fromBit = Math.min(old.trackedSectors, next.trackedSectors);
    const clearPastEnd = () =>
      setBitsOnDisk(this.storage, old.bitmapOffset, fromBit, Math.max(old.bitmapLength, next.bitmapLength) * 8, true);
    if (size >= this.size) await clearPastEnd();
    const oldEnd = old.dataOffset + this.size;
    const newEnd = next.dataOffset + size;
    if (size > this.size && this.header.backingFile !== '' && (await this.storage.size()) > oldEnd) {
      // Bytes past the data area (nothing reads them) would show in the sectors a grow adds (see zeroGrownArea).
      await truncateTo(this.storage, oldEnd);
    }
    if (size > this.size && mode !== 'off') {
      // New bitmap bytes (all clear now) and, for falloc/full, the new part of the data area.
      // If that fails (ENOSPC), the header still has the old size: give back what was added.
      const lengthBefore = await this.storage.size();
      try {
        const bitmapEnd = old.bitmapOffset + old.bitmapLength;
        const grownBitmapEnd = next.bitmapOffset + next.bitmapLength;
        if (grownBitmapEnd > bitmapEnd) await preallocate(this.storage, bitmapEnd, grownBitmapEnd - bitmapEnd, 'full');
        if (mode === 'falloc' || mode === 'full') await preallocate(this.storage, oldEnd, newEnd - oldEnd, mode);
      } catch (err) {
        if ((await this.storage.size().catch(() => lengthBefore)) > lengthBefore)
          await truncateTo(this.storage, lengthBefore).catch(() => undefined);
        throw err;
      }
    }
    // The header must never name a bitmap longer than the file (QEMU's files end right after it).
    const newBitmapEnd = next.bitmapOffset + next.bitmapLength;
    if ((await this.storage.size()) < newBitmapEnd) await truncateTo(this.storage, newBitmapEnd);
    if (size > this.size) await this.zeroGrownArea(old, next, size, options.backingSize);
    if (sync) await flushStorage(this.storage);
    const bytes = encodeHeader(plan.header, this.headerBytes.slice());
    await this.writeHeaderInTwoSteps(bytes);
    if (size < this.size) await clearPastEnd();
    const fileSize = await this.storage.size();
    // UML's files span the whole data area (as created); QEMU's end after the last written sector.
    if (fileSize > newEnd || (VARIANTS[this.header.variant].family === 'uml' && fileSize < newEnd)) {
      await truncateTo(this.storage, newEnd);
    }
    if (sync) await flushStorage(this.storage);
    this.header = plan.header;
    this.headerBytes = bytes;
    this.layout = next;
    this.size = size;
    this.bitmap = this.newBitmapCache();
  }

  /**
   * A grow adds zeros, as in QEMU (which zero-writes the new area of an
   * overlay whose backing file is longer): left unallocated, the new sectors
   * would fall through to whatever the backing file holds there, data this
   * disk never had (after a shrink, its own old data coming back). They are
   * allocated before the header names them, over a data area that reads as
   * zeros: preallocated, or extended sparsely (`resize` dropped the bytes
   * past the old data area first). Only where a backing file may hold
   * data: up to its size when it is known, the whole new area otherwise.
   */
  private async zeroGrownArea(
    _old: CowLayout,
    next: CowLayout,
    size: number,
    backingSize: number | undefined,
  ): Promise<void> {
    if (this.header.backingFile === '') return;
    const zeroEnd = Math.min(size, Math.ceil((backingSize ?? size) / SS) * SS);
    if (zeroEnd <= this.size) return;
    const dataEnd = next.dataOffset + zeroEnd;
    if ((await this.storage.size()) < dataEnd) await truncateTo(this.storage, dataEnd);
    const fromBit = this.size / SS;
    await setBitRangeOnDisk(this.storage, next.bitmapOffset, fromBit, Math.min(next.trackedSectors, zeroEnd / SS));
  }

  /** The sizes (bytes) `resize` can give this image without moving its data area. */
  inPlaceSizes(): { min: number; max: number } {
    return inPlaceRange(this.header, this.layout);
  }

  async check(repair: RepairRequest): Promise<DriverCheckResult> {
    this.checkOpen();
    if (repair.leaks || repair.corruptions) this.checkWritable();
    // Bits still in memory are part of the image: put them on disk before comparing the two.
    if (!this.readOnly) await this.bitmap.writeBack();
    const { bitmapChanged, ...result } = await checkCow(
      { storage: this.storage, layout: this.layout, bitmap: this.bitmap },
      repair,
    );
    if (bitmapChanged) this.bitmap = this.newBitmapCache();
    return result;
  }

  async amend(options: ReadonlyMap<string, string>, context: ResizeOptions): Promise<void> {
    this.checkWritable();
    const size = planAmend(this.header, this.size, options, this.storage.path);
    if (size !== undefined) await this.resize(size, context);
  }

  /**
   * Rewrites the backing path and mtime (from `spec.facts`) in place, in the image's own layout
   * (UML rewrites a v3 header even over v1/v2 files, corrupting them; we do
   * not). Every other header byte is kept. The size stays: it fixes the
   * layout, so a UML image cannot be pointed at a backing file of another size.
   */
  async setBacking(spec: BackingSpec | undefined): Promise<void> {
    this.checkBacking(spec);
    const backingFile = spec?.path ?? '';
    await this.rewriteHeader({ backingFile, mtime: spec && backingFile !== '' ? recordedMtime(spec.facts) : 0 });
  }

  /** Rewrites header fields in place (see writeHeaderInTwoSteps); a new path drops the old path's raw bytes. */
  private async rewriteHeader(change: { backingFile?: string; mtime: number }): Promise<void> {
    this.checkWritable();
    const { backingFileBytes, ...kept } = this.header;
    if (change.backingFile === undefined && backingFileBytes !== undefined) {
      // The path would be written back as its decoded text: another file.
      throw new BlockError(
        'not-supported',
        'the stored backing file path is not valid UTF-8; rewriting the header would replace it with a different path',
        { path: this.storage.path, driver: 'cow', field: 'backing_file' },
      );
    }
    const next: CowHeader = { ...kept, ...change };
    const bytes = encodeHeader(next, this.headerBytes.slice());
    await this.writeHeaderInTwoSteps(bytes);
    this.header = next;
    this.headerBytes = bytes;
  }

  /** Throws what `setBacking(spec)` would refuse with, writing nothing. */
  checkBacking(spec: BackingSpec | undefined): void {
    this.checkWritable();
    const { variant, size } = this.header;
    const uml = VARIANTS[variant].family === 'uml';
    const where = { path: this.storage.path, driver: 'cow', field: 'backing_file' };
    if (spec === undefined || spec.path === '') {
      if (uml) {
        throw new BlockError(
          'not-supported',
          `a ${variant} image must name a backing file (UML has no overlay without one); convert the image to drop it`,
          where,
        );
      }
    } else if (uml && recordedBackingSize(spec.facts) !== undefined && recordedBackingSize(spec.facts) !== size) {
      throw new BlockError(
        'not-supported',
        `${variant} header size ${size} is also the layout of the bitmap and data; it cannot be changed to `
          + `the new backing file's ${recordedBackingSize(spec.facts)} bytes in place (UML would refuse the pair anyway)`,
        { ...where, field: 'size' },
      );
    }
    const backingFile = spec?.path ?? '';
    if (this.header.backingFileBytes !== undefined && backingFile === this.header.backingFile) {
      // The stored bytes are not UTF-8: writing the decoded string back would point the overlay elsewhere.
      throw new BlockError(
        'not-supported',
        'the stored backing file path is not valid UTF-8; rewriting the header would replace it with a different path',
        where,
      );
    }
    encodeBackingPath(variant, backingFile, this.storage.path);
  }

  /**
   * A header of several sectors cannot be rewritten atomically, and UML checks
   * the path and the mtime together. So the sector that holds the mtime and
   * size (sector 0 in v1/v3, 2 in QEMU's v2, 8 in UML's v2) goes first and is
   * flushed before the rest: every torn state then carries the new backing
   * file's mtime and size, which is how a re-run of rebase recognises an
   * interrupted rewrite and finishes it (see @blk/cli's rebase job).
   */
  private async writeHeaderInTwoSteps(bytes: Uint8Array): Promise<void> {
    const sync = this.cache !== 'unsafe';
    const first = Math.floor(fieldOf(this.header.variant, 'mtime')!.offset / SS) * SS;
    const firstEnd = Math.min(first + SS, bytes.length);
    await writeTo(this.storage, first, bytes.subarray(first, firstEnd));
    if (first > 0 || firstEnd < bytes.length) {
      if (sync) await flushStorage(this.storage);
      if (first > 0) await writeTo(this.storage, 0, bytes.subarray(0, first));
      if (firstEnd < bytes.length) await writeTo(this.storage, firstEnd, bytes.subarray(firstEnd));
    }
    if (sync) await flushStorage(this.storage);
  }

  info(): Record<string, unknown> {
    const { header, layout } = this;
    const info: Record<string, unknown> = {
      variant: header.variant,
      version: header.version,
      sectorSize: SS,
      bitmapOffset: layout.bitmapOffset,
      bitmapLength: layout.bitmapLength,
      dataOffset: layout.dataOffset,
      backingFile: header.backingFile,
      backingMtime: header.mtime,
      backingSize: header.size,
    };
    if (header.alignment !== undefined) info.alignment = header.alignment;
    if (header.cowFormat !== undefined) info.cowFormat = header.cowFormat;
    if (header.variant === 'v1') info.byteOrder = header.magicOrder;
    if (layout.trackedSectors < layout.sectors) info.untrackedSectors = layout.sectors - layout.trackedSectors;
    return info;
  }

  /** v1/v2-uml sectors past the bitmap's last whole byte have no bit: UML loses writes there, we refuse them. */
  private checkTracked(first: number, count: number, op: string): void {
    const tracked = this.layout.trackedSectors;
    if (first + count <= tracked) return;
    throw new BlockError(
      'not-supported',
      `cannot ${op} sectors ${Math.max(first, tracked)}..${first + count - 1}: this ${this.header.variant} image's bitmap `
        + `(${this.layout.bitmapLength} bytes, rounded down by the v1/v2 rounding bug) has no bit for its last `
        + `${this.layout.sectors - tracked} sectors; convert it to v3 to write there`,
      { path: this.storage.path, driver: 'cow', offset: Math.max(first, tracked) * SS },
    );
  }

  private checkOpen(): void {
    if (this.closed)
      throw new BlockError('closed', 'image used after close', { path: this.storage.path, driver: 'cow' });
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly)
      throw new BlockError('read-only', 'image is open read-only', { path: this.storage.path, driver: 'cow' });
  }
}
