import { MemoryFile } from '@blk/core';

/** Chunk size of `SparseBytes`: small, so that copy-on-write of a chunk is cheap. */
const CHUNK = 4096;

/**
 * A sparse byte array with cheap copy-on-write clones: the core's in-memory
 * file store (`MemoryFile`, here in 4 KiB chunks), under the names the crash
 * model uses. `clone()` copies the chunk table, not the bytes, and a chunk is
 * copied the first time a clone writes to it. Used to keep the durable image
 * of every simulated file and to build thousands of post-crash states from it.
 */
export class SparseBytes extends MemoryFile {
  constructor(length = 0) {
    super(undefined, 0, { chunkSize: CHUNK });
    if (length > 0) this.truncate(length);
    this.mtimeSec = 0;
  }

  static from(data: Uint8Array): SparseBytes {
    const out = new SparseBytes();
    out.write(0, data);
    return out;
  }

  override clone(): SparseBytes {
    const out = new SparseBytes();
    out.shareChunksOf(this);
    return out;
  }

  read(offset: number, into: Uint8Array): number {
    return this.readAt(offset, into);
  }

  write(offset: number, data: Uint8Array): void {
    this.writeAt(offset, data);
  }

  /** Non-empty chunks as [offset, bytes] pairs (bytes may reach past `length`; clip when copying). */
  extents(): Generator<[number, Uint8Array]> {
    return this.heldChunks();
  }

  toBytes(): Uint8Array {
    return this.snapshot();
  }
}
