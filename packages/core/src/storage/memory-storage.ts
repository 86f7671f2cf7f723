import { BlockError } from '../errors.js';
import { checkOffset } from '../checks.js';
import { storageCapabilities, type Storage, type StorageCapabilities, type StorageExtent } from './storage.js';

/** Chunk size of the sparse in-memory store: large enough for fast copies, small enough for huge sparse files. */
const CHUNK = 64 * 1024;

/**
 * A file's bytes in memory, stored sparsely in 64 KiB chunks so that a
 * "1 TiB" image whose bitmap and data are mostly holes costs only what was
 * written. Shared by every `MemoryStorage` opened on the same `MemoryFile`.
 */
export class MemoryFile {
  private chunks = new Map<number, Uint8Array>();
  /**
   * Chunks this file may write in place; undefined: all of them (never cloned). After `clone()`
   * the chunks are shared and whoever writes one first copies it.
   */
  private owned: Set<number> | undefined;
  /** The chunk indexes in ascending order, for extentAt; rebuilt after chunks come or go. */
  private sortedIndexes: number[] | undefined;
  /** Bytes per chunk (64 KiB unless `options.chunkSize`). */
  private readonly chunk: number;
  length = 0;
  /** Whole seconds; bumped on every change so that mtime checks behave as on a real file. */
  mtimeSec: number;

  /**
   * `options.chunkSize`: bytes per chunk (a positive safe integer; 64 KiB by default). Small chunks
   * make a copy-on-write after `clone()` cheap (the crash simulator's durable states use 4 KiB).
   */
  constructor(content?: Uint8Array, mtimeSec = 1_600_000_000, options: { chunkSize?: number } = {}) {
    const chunk = options.chunkSize ?? CHUNK;
    if (!Number.isSafeInteger(chunk) || chunk <= 0) {
      throw new BlockError('invalid-argument', `chunk size ${chunk} is not a positive integer`);
    }
    this.chunk = chunk;
    this.mtimeSec = mtimeSec;
    if (content) this.writeAt(0, content);
  }

  readAt(offset: number, into: Uint8Array): number {
    const CHUNK = this.chunk;
    const end = Math.min(offset + into.length, this.length);
    let pos = offset;
    while (pos < end) {
      const index = Math.floor(pos / CHUNK);
      const within = pos - index * CHUNK;
      const n = Math.min(CHUNK - within, end - pos);
      const chunk = this.chunks.get(index);
      if (chunk) into.set(chunk.subarray(within, within + n), pos - offset);
      else into.fill(0, pos - offset, pos - offset + n);
      pos += n;
    }
    return Math.max(0, end - offset);
  }

  writeAt(offset: number, data: Uint8Array): void {
    // Like pwrite(2) of 0 bytes: no growth, no change.
    if (data.length === 0) return;
    const CHUNK = this.chunk;
    let pos = 0;
    while (pos < data.length) {
      const abs = offset + pos;
      const index = Math.floor(abs / CHUNK);
      const within = abs - index * CHUNK;
      const n = Math.min(CHUNK - within, data.length - pos);
      this.writable(index).set(data.subarray(pos, pos + n), within);
      pos += n;
    }
    this.length = Math.max(this.length, offset + data.length);
    this.touch();
  }

  truncate(size: number): void {
    const CHUNK = this.chunk;
    if (size < this.length) {
      const firstDropped = Math.ceil(size / CHUNK);
      for (const index of [...this.chunks.keys()]) {
        if (index >= firstDropped) {
          this.chunks.delete(index);
          this.owned?.delete(index);
        }
      }
      this.sortedIndexes = undefined;
      const partial = Math.floor(size / CHUNK);
      if (size % CHUNK !== 0 && this.chunks.has(partial)) this.writable(partial).fill(0, size % CHUNK);
    }
    this.length = size;
    this.touch();
  }

  /**
   * A copy of this file that costs only its chunk table: the chunks are shared, and the first
   * write to one (by either file) copies it. Thousands of post-crash states are built this way.
   */
  clone(): MemoryFile {
    const copy = new MemoryFile(undefined, this.mtimeSec, { chunkSize: this.chunk });
    copy.shareChunksOf(this);
    return copy;
  }

  /** Makes this (empty) file share `other`'s chunks copy-on-write (see `clone`). */
  protected shareChunksOf(other: MemoryFile): void {
    if (other.chunk !== this.chunk) {
      throw new BlockError('invalid-argument', `chunk sizes differ (${other.chunk}, ${this.chunk})`);
    }
    // Both sides lose ownership: whoever writes a chunk next copies it.
    other.owned = new Set();
    this.owned = new Set();
    this.chunks = new Map(other.chunks);
    this.sortedIndexes = undefined;
    this.length = other.length;
    this.mtimeSec = other.mtimeSec;
  }

  /** The held chunks as [offset, bytes] pairs, in no particular order (bytes may reach past `length`). */
  *heldChunks(): Generator<[number, Uint8Array]> {
    for (const [index, chunk] of this.chunks) yield [index * this.chunk, chunk];
  }

  /**
   * The run at `offset` (at most `length` bytes) that is held in memory
   * (data) or not (a hole: reads as zeros), in whole chunks: the in-memory
   * counterpart of SEEK_DATA/SEEK_HOLE. Past the end everything is a hole.
   */
  extentAt(offset: number, length: number): StorageExtent {
    const CHUNK = this.chunk;
    const end = offset + length;
    if (offset >= this.length) return { data: false, length };
    const first = Math.floor(offset / CHUNK);
    if (this.chunks.has(first)) {
      let index = first + 1;
      while (index * CHUNK < end && this.chunks.has(index)) index++;
      return { data: true, length: Math.min(end, index * CHUNK, this.length) - offset };
    }
    // A hole up to the next held chunk (found by binary search: holes can span terabytes of chunks).
    return { data: false, length: Math.min(end, this.nextChunkAfter(first) * CHUNK) - offset };
  }

  /** The smallest held chunk index above `index`, or Infinity. */
  private nextChunkAfter(index: number): number {
    const sorted = (this.sortedIndexes ??= [...this.chunks.keys()].sort((a, b) => a - b));
    const at = lowerBound(sorted, index + 1);
    return at < sorted.length ? sorted[at]! : Infinity;
  }

  /** Bytes of memory really held (for tests of sparse behaviour; shared chunks count in each clone). */
  get allocatedBytes(): number {
    return this.chunks.size * this.chunk;
  }

  /** A flat copy of the whole content (for tests; avoid on huge files). */
  snapshot(): Uint8Array {
    const out = new Uint8Array(this.length);
    this.readAt(0, out);
    return out;
  }

  /** The chunk at `index`, owned by this file (created, or copied when shared with a clone). */
  private writable(index: number): Uint8Array {
    let chunk = this.chunks.get(index);
    if (chunk !== undefined && (this.owned === undefined || this.owned.has(index))) return chunk;
    const created = chunk === undefined;
    chunk = created ? new Uint8Array(this.chunk) : chunk!.slice();
    this.chunks.set(index, chunk);
    this.owned?.add(index);
    if (created && this.sortedIndexes !== undefined) {
      // Keep the cache: insert in order (a rebuild per new chunk made writes between lookups quadratic).
      this.sortedIndexes.splice(lowerBound(this.sortedIndexes, index), 0, index);
    }
    return chunk;
  }

  private touch(): void {
    this.mtimeSec += 1;
  }
}

/** The first position in ascending `sorted` whose value is >= `value`. */
function lowerBound(sorted: number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A `Storage` over a `MemoryFile`: synchronous reads and extents always;
 * write and flush (a barrier with nothing to do) unless read-only.
 */
export class MemoryStorage implements Storage {
  private closed = false;
  readonly capabilities: StorageCapabilities;

  constructor(
    readonly file: MemoryFile = new MemoryFile(),
    readonly path: string = 'memory',
    readonly readOnly = false,
  ) {
    this.capabilities = storageCapabilities({ write: !readOnly, flush: !readOnly, syncRead: true, extents: true });
  }

  async read(offset: number, into: Uint8Array): Promise<number> {
    this.checkOpen();
    checkOffset(offset, 'offset', this.path);
    return this.file.readAt(offset, into);
  }

  readSync(offset: number, into: Uint8Array): number {
    this.checkOpen();
    checkOffset(offset, 'offset', this.path);
    return this.file.readAt(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    checkOffset(offset, 'offset', this.path);
    checkOffset(offset + data.length, 'end offset', this.path);
    this.file.writeAt(offset, data);
  }

  async extentAt(offset: number, length: number): Promise<StorageExtent> {
    this.checkOpen();
    checkOffset(offset, 'offset', this.path);
    checkOffset(length, 'length', this.path);
    if (length === 0) throw new BlockError('invalid-argument', 'extentAt of 0 bytes', { path: this.path, offset });
    return this.file.extentAt(offset, length);
  }

  async size(): Promise<number> {
    this.checkOpen();
    return this.file.length;
  }

  async truncate(size: number): Promise<void> {
    this.checkWritable();
    checkOffset(size, 'size', this.path);
    this.file.truncate(size);
  }

  async flush(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new BlockError('closed', 'storage used after close', { path: this.path });
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) throw new BlockError('read-only', 'storage is open read-only', { path: this.path });
  }
}
