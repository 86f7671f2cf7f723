/**
 * MetadataCache's `reuseBuffers`: evicted chunks' buffers serve later loads (a scan through many chunks allocates a
 * handful of buffers, not one per chunk), every reused chunk holds exactly its own bytes (a region ending past EOF
 * reads zeros, not the previous owner's), and the safety rule: a chunk held past its eviction is marked `evicted`
 * and refuses `markDirty`, and nothing of it is ever written.
 */
import { describe, expect, it } from 'vitest';
import { MemoryFile, MemoryStorage, MetadataCache } from '@blk/core';

const CHUNK = 4096;

/** A file of `chunks` chunks, byte i of chunk k = (k * 7 + i) & 255, then `tail` more bytes of the same pattern. */
function patterned(chunks: number, tail = 0): Uint8Array {
  const bytes = new Uint8Array(chunks * CHUNK + tail);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.floor(i / CHUNK) * 7 + (i % CHUNK)) & 255 || 1;
  return bytes;
}

/** Byte equality without the matcher's cost per element (called for hundreds of 4 KiB chunks). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function cacheOver(content: Uint8Array, length: number, reuseBuffers: boolean) {
  const storage = new MemoryStorage(new MemoryFile(content), '/meta');
  const cache = new MetadataCache<Uint32Array>({
    storage,
    offset: 0,
    length,
    chunkBytes: CHUNK,
    maxBytes: 2 * CHUNK,
    mode: 'writeback',
    reuseBuffers,
    view: (b) => new Uint32Array(b.buffer, b.byteOffset, Math.ceil(b.length / 4)),
  });
  return { storage, cache };
}

describe('MetadataCache reuseBuffers', () => {
  it('a scan through 200 chunks allocates a few buffers, and each chunk (bytes and view) holds its own bytes', async () => {
    const content = patterned(200);
    const { cache } = cacheOver(content, content.length, true);
    for (let k = 0; k < 200; k++) {
      await cache.use(k, (chunk) => {
        expect(sameBytes(chunk.bytes, content.subarray(k * CHUNK, (k + 1) * CHUNK))).toBe(true);
        // The view is the one built over this very buffer.
        expect(chunk.view.buffer).toBe(chunk.bytes.buffer);
        expect(chunk.view[1]).toBe(new DataView(content.buffer).getUint32(k * CHUNK + 4, true));
      });
    }
    expect(cache.loads).toBe(200);
    expect(cache.allocations).toBeLessThanOrEqual(4);
    expect(cache.cachedBytes).toBeLessThanOrEqual(2 * CHUNK);
  });

  it('without it, every load allocates (the counter the test above relies on)', async () => {
    const content = patterned(20);
    const { cache } = cacheOver(content, content.length, false);
    for (let k = 0; k < 20; k++) await cache.use(k, () => undefined);
    expect(cache.allocations).toBe(20);
  });

  it('a reused buffer is zero-filled past EOF and in the padding of a short last chunk', async () => {
    // Region of 6 chunks + 100 bytes over a file of 4 chunks + 10 bytes: chunk 4 reads 10 bytes then zeros,
    // chunk 5 lies wholly past EOF, chunk 6 is 100 bytes long (its own buffer length: never a reused full one).
    const content = patterned(4, 10);
    const length = 6 * CHUNK + 100;
    const { cache } = cacheOver(content, length, true);
    for (let k = 0; k < 4; k++) await cache.use(k, () => undefined);
    const before = cache.allocations;
    await cache.use(4, (chunk) => {
      expect(chunk.bytes.subarray(0, 10)).toEqual(content.subarray(4 * CHUNK, 4 * CHUNK + 10));
      expect(chunk.bytes.subarray(10).every((b) => b === 0)).toBe(true);
    });
    await cache.use(5, (chunk) => expect(chunk.bytes.every((b) => b === 0)).toBe(true));
    expect(cache.allocations).toBe(before); // both took a reused buffer that held patterned bytes
    await cache.use(6, (chunk) => {
      expect(chunk.bytes.length).toBe(100);
      expect(chunk.view.length).toBe(25);
      expect(chunk.view.every((w) => w === 0)).toBe(true);
    });
    // Back to full chunks: the 100-byte buffer is never handed to a 4096-byte chunk.
    for (let k = 0; k < 4; k++) {
      await cache.use(k, (chunk) => {
        expect(chunk.bytes.length).toBe(CHUNK);
        expect(chunk.bytes).toEqual(content.subarray(k * CHUNK, (k + 1) * CHUNK));
      });
    }
  });

  it('a chunk held across an await past its eviction is marked evicted, refuses markDirty, and is never written', async () => {
    const content = patterned(8);
    const { storage, cache } = cacheOver(content, content.length, true);
    const held = await cache.use(0, (chunk) => chunk); // breaks the rule on purpose
    for (let k = 1; k < 8; k++) await cache.use(k, () => undefined);
    expect(cache.has(0)).toBe(false);
    expect(held.evicted).toBe(true);
    // Its buffer now belongs to another chunk: changing it through `held` would change that one.
    expect(held.bytes).not.toEqual(content.subarray(0, CHUNK));
    expect(() => cache.markDirty(held, 0, 1)).toThrow(/left the cache/);
    await cache.writeBack();
    expect(await storage.size()).toBe(content.length);
    const after = new Uint8Array(content.length);
    await storage.read(0, after);
    expect(after).toEqual(content);
  });

  it('concurrent uses of more chunks than fit each see their own chunk (a pinned chunk is never recycled)', async () => {
    const content = patterned(64);
    const { cache } = cacheOver(content, content.length, true);
    const order = [
      ...Array(64).keys(),
      ...[...Array(64).keys()].reverse(),
      ...[...Array(64).keys()].map((k) => (k * 37) % 64),
    ];
    const seen = await Promise.all(
      order.map((k) =>
        cache.use(k, (chunk) => {
          expect(chunk.evicted).toBe(false);
          // Compare a few words rather than 4 KiB per call.
          return [chunk.index, chunk.bytes[0], chunk.bytes[1000], chunk.bytes[CHUNK - 1]];
        }),
      ),
    );
    seen.forEach(([index, a, b, c], i) => {
      const k = order[i]!;
      expect([index, a, b, c]).toEqual([
        k,
        content[k * CHUNK],
        content[k * CHUNK + 1000],
        content[k * CHUNK + CHUNK - 1],
      ]);
    });
    // Everything was pinned at once, so each load allocated; afterwards a pass reuses the pooled buffers.
    const allocated = cache.allocations;
    for (let k = 0; k < 64; k++) {
      await cache.use(k, (chunk) => expect(chunk.bytes[7]).toBe(content[k * CHUNK + 7]));
    }
    expect(cache.allocations).toBe(allocated);
  });

  it('dirty chunks are written back before eviction and their bytes land at their own offsets', async () => {
    const content = patterned(12);
    const { storage, cache } = cacheOver(content, content.length, true);
    for (let k = 0; k < 12; k++) {
      await cache.use(k, (chunk) => {
        chunk.bytes[0] = 0xee;
        chunk.bytes[CHUNK - 1] = k;
        cache.markDirty(chunk, 0, CHUNK);
      });
    }
    await cache.writeBack();
    const after = new Uint8Array(content.length);
    await storage.read(0, after);
    for (let k = 0; k < 12; k++) {
      expect(after[k * CHUNK]).toBe(0xee);
      expect(after[k * CHUNK + CHUNK - 1]).toBe(k);
      expect(after.subarray(k * CHUNK + 1, (k + 1) * CHUNK - 1)).toEqual(
        content.subarray(k * CHUNK + 1, (k + 1) * CHUNK - 1),
      );
    }
    expect(cache.allocations).toBeLessThan(12);
  });
});
