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
  private readonly chunks = new Map<number, Uint8Array>();
  /** The chunk indexes in ascending order, for extentAt; rebuilt after chunks come or go. */
  private sortedIndexes: number[] | undefined;
  length = 0;
  /** Whole seconds; bumped on every change so that mtime checks behave as on a real file. */
  mtimeSec: number;

  constructor(content?: Uint8Array, mtimeSec = 1_600_000_000) {
    this.mtimeSec = mtimeSec;
    if (content) this.writeAt(0, content);
  }

  readAt(offset: number, into: Uint8Array): number {
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
    let pos = 0;
    while (pos < data.length) {
      const abs = offset + pos;
      const index = Math.floor(abs / CHUNK);
      const within = abs - index * CHUNK;
      const n = Math.min(CHUNK - within, data.length - pos);
      let chunk = this.chunks.get(index);
      if (!chunk) {
        chunk = new Uint8Array(CHUNK);
        this.chunks.set(index, chunk);
        if (this.sortedIndexes !== undefined) {
          // Keep the cache: insert in order (a rebuild per new chunk made writes between lookups quadratic).
          this.sortedIndexes.splice(lowerBound(this.sortedIndexes, index), 0, index);
        }
      }
      chunk.set(data.subarray(pos, pos + n), within);
      pos += n;
    }
    this.length = Math.max(this.length, offset + data.length);
    this.touch();
  }

  truncate(size: number): void {
    if (size < this.length) {
      const firstDropped = Math.ceil(size / CHUNK);
      for (const index of [...this.chunks.keys()]) {
        if (index >= firstDropped) this.chunks.delete(index);
      }
      this.sortedIndexes = undefined;
      const partial = this.chunks.get(Math.floor(size / CHUNK));
      if (partial) partial.fill(0, size % CHUNK);
    }
    this.length = size;
    this.touch();
  }

  /**
   * The run at `offset` (at most `length` bytes) that is held in memory
   * (data) or not (a hole: reads as zeros), in whole chunks: the in-memory
   * counterpart of SEEK_DATA/SEEK_HOLE. Past the end everything is a hole.
   */
  extentAt(offset: number, length: number): StorageExtent {
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

  /** Bytes of memory really held (for tests of sparse behaviour). */
  get allocatedBytes(): number {
    return this.chunks.size * CHUNK;
  }

  /** A flat copy of the whole content (for tests; avoid on huge files). */
  snapshot(): Uint8Array {
    const out = new Uint8Array(this.length);
    this.readAt(0, out);
    return out;
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
