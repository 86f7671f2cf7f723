/**
 * The allocation bitmap: bit operations and layout over a `MetadataCache`
 * (@blk/core), which does the chunking (chunks loaded on demand), the memory
 * bound and eviction, dirty tracking and the write-back order of the image's
 * cache mode (data durable before the bits that publish it). See
 * metadata-cache.ts in core for those rules; this file knows bits.
 *
 * UML and QEMU read the whole bitmap into memory at open: 256 MiB for a 1 TiB
 * disk. Here it is cut into chunks (4 KiB of bitmap = 16 MiB of disk each), so
 * opening any image costs one header read and memory stays under `maxBytes`,
 * give or take a chunk per concurrent request.
 *
 * Bit order (spec §2.1): sector n is byte n >> 3, mask 1 << (n & 7).
 *
 * Long scans (`findRun` over many chunks, as `blk map` does) do not go through
 * the cache: they stream the bitmap through one reused window, skipping holes
 * of the file, and let cached (possibly dirty) chunks win over what they read.
 */
import { MetadataCache, readZeroFilled, type CacheMode, type MetadataChunk, type Storage } from '@blk/core/portable';

export const DEFAULT_BITMAP_CACHE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_CHUNK_BYTES = 4096;

export interface BitmapCacheOptions {
  storage: Storage;
  /** File offset of bitmap byte 0. */
  bitmapOffset: number;
  /** Bytes of bitmap on disk; nothing outside [bitmapOffset, bitmapOffset + bitmapLength) is ever written. */
  bitmapLength: number;
  /** Bits that carry meaning (sectors with a bit inside the bitmap); bits past it read as clear. */
  trackedBits: number;
  mode: CacheMode;
  /** Upper bound on cached bitmap bytes (default 8 MiB; at least one chunk is always kept). */
  maxBytes?: number;
  /** Bytes per chunk (default 4096, a multiple of 4 for word scans). */
  chunkBytes?: number;
}

/** A run of equal bits starting at the queried bit. */
export interface BitRun {
  set: boolean;
  count: number;
}

/**
 * One cached piece of the bitmap: its bytes, and `view`, the same memory as
 * 32-bit words for skipping 32 bits at a time (byte order is irrelevant for
 * all-0/all-1 tests; the padding of a last partial word stays zero).
 */
export type BitmapChunk = MetadataChunk<Uint32Array>;

/** A findRun spanning at least this many chunks streams the bitmap instead of caching it chunk by chunk. */
const STREAM_MIN_CHUNKS = 32;
/** Bytes of bitmap per read of a streaming scan (rounded down to whole chunks). */
const WINDOW_BYTES = 1 << 20;

/** The reusable read buffer of streaming scans: bitmap bytes [start, start + length) as on disk. */
interface ScanWindow {
  bytes: Uint8Array;
  words: Uint32Array;
  start: number;
  length: number;
  /** `BitmapCache.version` when the read started; -1 while a read is under way. */
  version: number;
}

export class BitmapCache {
  private readonly storage: Storage;
  private readonly bitmapOffset: number;
  private readonly bitmapLength: number;
  private readonly trackedBits: number;
  private readonly chunkBytes: number;
  private readonly chunkBits: number;
  /** The chunks: loading, eviction, dirty tracking and write-back order. */
  private readonly cache: MetadataCache<Uint32Array>;
  private window: ScanWindow | undefined;

  constructor(options: BitmapCacheOptions) {
    this.storage = options.storage;
    this.bitmapOffset = options.bitmapOffset;
    this.bitmapLength = options.bitmapLength;
    this.trackedBits = Math.min(options.trackedBits, options.bitmapLength * 8);
    this.chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (this.chunkBytes % 4 !== 0 || this.chunkBytes <= 0)
      throw new RangeError('chunkBytes must be a positive multiple of 4');
    this.chunkBits = this.chunkBytes * 8;
    this.cache = new MetadataCache({
      storage: options.storage,
      offset: options.bitmapOffset,
      length: options.bitmapLength,
      chunkBytes: this.chunkBytes,
      maxBytes: options.maxBytes ?? DEFAULT_BITMAP_CACHE_BYTES,
      mode: options.mode,
      view: (bytes) => new Uint32Array(bytes.buffer),
    });
  }

  /** Bitmap bytes held in memory now. */
  get cachedBytes(): number {
    return this.cache.cachedBytes;
  }

  /** Chunks whose changes are not on disk yet. */
  get dirtyChunks(): number {
    return this.cache.dirtyChunks;
  }

  /** Chunks read from storage so far (for tests and diagnostics). */
  get loads(): number {
    return this.cache.loads;
  }

  /**
   * Bumped whenever a bit changes in memory or a chunk leaves the cache: a
   * scan window read before that may no longer show what the bitmap is.
   */
  private get version(): number {
    return this.cache.version;
  }

  /**
   * The run of equal bits that starts at `first`, at most `count` long.
   * Bits at or past `trackedBits` read as clear.
   */
  async findRun(first: number, count: number): Promise<BitRun> {
    const end = first + count;
    if (first >= this.trackedBits) return { set: false, count };
    const lastTracked = Math.min(end, this.trackedBits) - 1;
    if (Math.floor(lastTracked / this.chunkBits) - Math.floor(first / this.chunkBits) >= STREAM_MIN_CHUNKS) {
      return this.streamRun(first, count);
    }
    let want: boolean | undefined;
    let pos = first;
    while (pos < end) {
      if (pos >= this.trackedBits) {
        // Untracked tail (v1/v2 rounding bug): reads as clear.
        if (want) break;
        pos = end;
        break;
      }
      const index = Math.floor(pos / this.chunkBits);
      const base = index * this.chunkBits;
      const stop = Math.min(end, this.trackedBits, base + this.chunkBits);
      const reached = await this.cache.use(index, (chunk) => {
        want ??= bitAt(chunk.bytes, pos - base);
        return base + scan(chunk.bytes, chunk.view, pos - base, stop - base, want);
      });
      pos = reached;
      if (reached < stop) break;
    }
    return { set: want ?? false, count: pos - first };
  }

  /**
   * `findRun` done synchronously over cached chunks only, without
   * allocating: returns the run's length, positive when its bits are set,
   * negative when they are clear, or 0 when a chunk it needs is not cached
   * (nothing is loaded then; use `findRun`).
   */
  findRunSync(first: number, count: number): number {
    const end = first + count;
    const tracked = this.trackedBits;
    if (first >= tracked) return -count;
    const chunkBits = this.chunkBits;
    const cache = this.cache;
    let want = false;
    let pos = first;
    while (pos < end) {
      if (pos >= tracked) {
        if (want) break;
        pos = end;
        break;
      }
      const index = Math.floor(pos / chunkBits);
      const chunk = cache.get(index);
      if (chunk === undefined) return 0;
      const base = index * chunkBits;
      const stop = Math.min(end, tracked, base + chunkBits);
      if (pos === first) want = bitAt(chunk.bytes, pos - base);
      const reached = base + scan(chunk.bytes, chunk.view, pos - base, stop - base, want);
      pos = reached;
      if (reached < stop) break;
    }
    return want ? pos - first : first - pos;
  }

  /**
   * `findRun` over many chunks: streams the bitmap through one reused window
   * instead of loading (and caching) every chunk. Cached chunks win over the
   * window, since they may hold bits not yet written (dirty).
   */
  private async streamRun(first: number, count: number): Promise<BitRun> {
    const end = first + count;
    const tracked = this.trackedBits;
    const chunkBits = this.chunkBits;
    const chunkBytes = this.chunkBytes;
    let want: boolean | undefined;
    let pos = first;
    while (pos < end) {
      if (pos >= tracked) {
        if (want) break;
        pos = end;
        break;
      }
      const index = Math.floor(pos / chunkBits);
      const base = index * chunkBits;
      const stop = Math.min(end, tracked, base + chunkBits);
      const from = pos - base;
      const to = stop - base;
      let reached: number;
      const chunk = this.cache.cached(index);
      if (chunk !== undefined) {
        want ??= bitAt(chunk.bytes, from);
        reached = scan(chunk.bytes, chunk.view, from, to, want);
      } else {
        if (!this.windowHolds(index)) {
          const version = this.version;
          const posByte = Math.floor(pos / 8);
          const extent = await this.extentFrom(posByte, Math.min(end, tracked));
          // While the lookup ran, a chunk may have been evicted after a write-back into the hole: look again.
          if (version !== this.version || this.cache.has(index)) continue;
          if (!extent.data) {
            // Bits in a hole are clear, except in chunks cached (maybe dirty) since: those are scanned as such.
            if (want === true) break;
            want = false;
            pos = Math.min(end, tracked, extent.end * 8, this.firstCachedChunk(index, extent.end) * chunkBits);
            continue;
          }
          // Read only what is stored: the window stops at the next hole.
          await this.loadWindow(index, extent.end);
          // While the read ran, the chunk may have been loaded, or a bit changed.
          if (this.cache.has(index)) continue;
        }
        const w = this.window;
        if (w !== undefined && this.windowHolds(index)) {
          const bitOffset = (index * chunkBytes - w.start) * 8;
          want ??= bitAt(w.bytes, bitOffset + from);
          reached = scan(w.bytes, w.words, bitOffset + from, bitOffset + to, want) - bitOffset;
        } else {
          // The window is busy (another scan) or was invalidated: read this chunk the usual way.
          const at = pos;
          reached = await this.cache.use(index, (c) => {
            want ??= bitAt(c.bytes, at - base);
            return scan(c.bytes, c.view, at - base, to, want);
          });
        }
      }
      pos = base + reached;
      if (reached < to) break;
    }
    return { set: want ?? false, count: pos - first };
  }

  /**
   * Whether bitmap byte `start` is stored (data) or in a hole of the file
   * (sparse, or past its end), and where that extent ends (a bitmap byte
   * offset, looking no further than bit `endBit`). A bitmap in a hole reads
   * as clear, so a scan skips it whole: one lookup per hole, not a read per
   * byte (a 64 TiB overlay has a 16 GiB bitmap that is mostly never written).
   */
  private async extentFrom(start: number, endBit: number): Promise<{ data: boolean; end: number }> {
    const stop = Math.min(this.bitmapLength, Math.ceil(endBit / 8));
    if (stop <= start) return { data: true, end: start + 1 };
    const at = this.bitmapOffset + start;
    const extent = this.storage.capabilities.extents ? await this.storage.extentAt!(at, stop - start) : undefined;
    if (extent !== undefined) return { data: extent.data, end: Math.min(stop, start + extent.length) };
    // No extent information: only the part past the end of the storage is known to be a hole.
    const size = await this.storage.size();
    return at >= size ? { data: false, end: stop } : { data: true, end: Math.min(stop, size - this.bitmapOffset) };
  }

  /** The first cached chunk whose bytes lie in [chunk `index`, bitmap byte `endByte`), or the chunk at `endByte`. */
  private firstCachedChunk(index: number, endByte: number): number {
    return this.cache.firstCached(index, Math.ceil(endByte / this.chunkBytes));
  }

  private windowHolds(index: number): boolean {
    const w = this.window;
    if (w === undefined || w.version !== this.version) return false;
    const start = index * this.chunkBytes;
    return start >= w.start && start < w.start + w.length;
  }

  /**
   * Reads the window's worth of bitmap from chunk `index` on, up to the chunk
   * holding bitmap byte `endByte - 1`; leaves it invalid if anything changed meanwhile.
   */
  private async loadWindow(index: number, endByte: number): Promise<void> {
    let w = this.window;
    if (w !== undefined && w.version === -1) return; // another scan is reading into it
    if (w === undefined) {
      const wholeChunks = Math.max(1, Math.floor(WINDOW_BYTES / this.chunkBytes));
      const capacity = Math.min(wholeChunks, Math.ceil(this.bitmapLength / this.chunkBytes)) * this.chunkBytes;
      const buffer = new ArrayBuffer(capacity);
      w = { bytes: new Uint8Array(buffer), words: new Uint32Array(buffer), start: 0, length: 0, version: -1 };
      this.window = w;
    }
    const start = index * this.chunkBytes;
    const wanted = Math.ceil(endByte / this.chunkBytes) * this.chunkBytes - start;
    const length = Math.min(w.bytes.length, this.bitmapLength - start, Math.max(wanted, this.chunkBytes));
    const version = this.version;
    w.version = -1;
    try {
      // A bitmap that ends early (past EOF) reads as clear bits.
      await readZeroFilled(this.storage, this.bitmapOffset + start, w.bytes.subarray(0, length));
      w.bytes.fill(0, length); // the padding of a last partial word
      w.start = start;
      w.length = length;
      w.version = version === this.version ? version : -2;
    } catch (err) {
      w.version = -2;
      throw err;
    }
  }

  /**
   * Sets (or clears) the bits [first, first + count) in memory and marks the
   * changed chunks dirty. Bits past `trackedBits` are not touched. Returns
   * the chunks that changed, for `writeChunks`.
   */
  async setRange(first: number, count: number, value: boolean): Promise<BitmapChunk[]> {
    const end = Math.min(first + count, this.trackedBits);
    const changed: BitmapChunk[] = [];
    for (let pos = first; pos < end; ) {
      const index = Math.floor(pos / this.chunkBits);
      const base = index * this.chunkBits;
      const stop = Math.min(end, base + this.chunkBits);
      const from = pos - base;
      // Synchronous inside `use`: no await between finding the chunk and changing it.
      const chunk = await this.cache.use(index, (c) =>
        setBits(this.cache, c, from, stop - base, value) ? c : undefined,
      );
      if (chunk) changed.push(chunk);
      pos = stop;
    }
    return changed;
  }

  /**
   * Writes the current in-memory state of the given chunks (from `setRange`)
   * without any storage flush. Only for `writethrough`, where every bit in
   * memory already has its data on disk.
   */
  writeChunks(chunks: readonly BitmapChunk[]): Promise<void> {
    return this.cache.writeChunks(chunks);
  }

  /**
   * Puts every dirty bit on disk, data first (see `MetadataCache.writeBack`),
   * and flushes the storage even when no bit is dirty (except in `unsafe`
   * mode), so it also serves as the image's flush. Serialised.
   */
  writeBack(): Promise<void> {
    return this.cache.writeBack();
  }
}

function bitAt(bytes: Uint8Array, bit: number): boolean {
  return (bytes[bit >>> 3]! & (1 << (bit & 7))) !== 0;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * First bit in [from, to) that is not `want`, or `to` (bit n is byte n >> 3,
 * mask 1 << (n & 7); `words` views the same memory as `bytes`, from byte 0).
 */
function scan(bytes: Uint8Array, words: Uint32Array, from: number, to: number, want: boolean): number {
  return LITTLE_ENDIAN ? scanWords(words, from, to, want) : scanBytes(bytes, from, to, want);
}

/**
 * Word-wise: on a little-endian host bit n is bit n & 31 of word n >> 5, so
 * the first differing bit of a word is its lowest set bit after XOR with the
 * wanted value. Long runs go four words per step.
 */
function scanWords(words: Uint32Array, from: number, to: number, want: boolean): number {
  if (from >= to) return to;
  const flip = want ? -1 : 0;
  const lastWord = (to - 1) >>> 5;
  let w = from >>> 5;
  let x = (words[w]! ^ flip) & (-1 << (from & 31));
  while (x === 0) {
    if (w === lastWord) return to;
    w++;
    while (
      w + 4 <= lastWord
      && ((words[w]! ^ flip) | (words[w + 1]! ^ flip) | (words[w + 2]! ^ flip) | (words[w + 3]! ^ flip)) === 0
    ) {
      w += 4;
    }
    x = words[w]! ^ flip;
  }
  const at = w * 32 + 31 - Math.clz32(x & -x);
  return Math.min(at, to);
}

/** Byte-wise fallback for big-endian hosts: skips bytes of 0x00 / 0xFF, tests bits only at the edges. */
function scanBytes(bytes: Uint8Array, from: number, to: number, want: boolean): number {
  const skipByte = want ? 0xff : 0x00;
  let i = from;
  while (i < to && (i & 7) !== 0) {
    if (bitAt(bytes, i) !== want) return i;
    i++;
  }
  while (i + 8 <= to && bytes[i >>> 3] === skipByte) i += 8;
  while (i < to) {
    if (bitAt(bytes, i) !== want) return i;
    i++;
  }
  return to;
}

/** Sets or clears bits [from, to) of a chunk; marks the touched bytes dirty if any bit changed. */
function setBits(
  cache: MetadataCache<Uint32Array>,
  chunk: BitmapChunk,
  from: number,
  to: number,
  value: boolean,
): boolean {
  const { bytes } = chunk;
  const firstByte = from >>> 3;
  const lastByte = (to - 1) >>> 3;
  let changed = false;
  for (let b = firstByte; b <= lastByte; b++) {
    const lo = b === firstByte ? from & 7 : 0;
    const hi = b === lastByte ? ((to - 1) & 7) + 1 : 8;
    const mask = (0xff << lo) & (0xff >>> (8 - hi)) & 0xff;
    const old = bytes[b]!;
    const next = value ? old | mask : old & ~mask & 0xff;
    if (next !== old) {
      bytes[b] = next;
      changed = true;
    }
  }
  if (changed) cache.markDirty(chunk, firstByte, lastByte + 1);
  return changed;
}
