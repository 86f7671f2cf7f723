/** MetadataCache on its own: shared loads, the memory bound under concurrency, write-back order and failures. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryFile, MemoryStorage, MetadataCache, type CacheMode, type Storage } from '@blk/core';

const OFFSET = 1000;

type Event = { op: 'read' | 'write'; offset: number; length: number } | { op: 'flush' } | { op: 'barrier' };

/** A storage over a MemoryFile that records each operation when it takes effect; optionally scheduled or failing. */
class TestStorage implements Storage {
  readonly events: Event[] = [];
  readonly inner: MemoryStorage;
  /** Fails the next `failWrites` writes with EIO. */
  failWrites = 0;

  constructor(
    readonly file: MemoryFile,
    private readonly scheduler?: fc.Scheduler,
  ) {
    this.inner = new MemoryStorage(file, '/meta');
  }

  get path(): string {
    return this.inner.path;
  }

  get readOnly(): boolean {
    return false;
  }

  private async step(label: string): Promise<void> {
    if (this.scheduler) await this.scheduler.schedule(Promise.resolve(), label);
  }

  async read(offset: number, into: Uint8Array): Promise<number> {
    await this.step(`read ${offset}`);
    this.events.push({ op: 'read', offset, length: into.length });
    return this.inner.read(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const copy = data.slice();
    await this.step(`write ${offset}`);
    if (this.failWrites > 0) {
      this.failWrites--;
      throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
    }
    this.events.push({ op: 'write', offset, length: copy.length });
    await this.inner.write(offset, copy);
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  truncate(size: number): Promise<void> {
    return this.inner.truncate(size);
  }

  async flush(): Promise<void> {
    await this.step('flush');
    this.events.push({ op: 'flush' });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function region(length: number, fill = (i: number) => (i * 13 + 7) & 0xff): { file: MemoryFile; bytes: Uint8Array } {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = fill(i);
  const file = new MemoryFile();
  file.writeAt(OFFSET, bytes);
  file.writeAt(OFFSET + length, new Uint8Array([0xa5, 0xa5])); // past the region: must never change
  return { file, bytes };
}

function onDisk(file: MemoryFile, length: number): Uint8Array {
  const out = new Uint8Array(length);
  file.readAt(OFFSET, out);
  return out;
}

function cacheOver(
  storage: Storage,
  length: number,
  options: { chunkBytes: number; maxBytes: number; mode?: CacheMode; barrier?: () => Promise<void> },
) {
  return new MetadataCache({ storage, offset: OFFSET, length, mode: options.mode ?? 'writeback', ...options });
}

describe('MetadataCache loads', () => {
  it('two requests for one uncached chunk share one read', async () => {
    const { file, bytes } = region(256);
    const storage = new TestStorage(file);
    const cache = cacheOver(storage, 256, { chunkBytes: 64, maxBytes: 256 });
    const seen = await Promise.all([1, 2, 3, 4].map(() => cache.use(2, (c) => c.bytes.slice())));
    for (const s of seen) expect([...s]).toEqual([...bytes.subarray(128, 192)]);
    expect(storage.events.filter((e) => e.op === 'read')).toEqual([{ op: 'read', offset: OFFSET + 128, length: 64 }]);
    expect(cache.loads).toBe(1);
  });

  it('reads a region that ends past the end of the file as zeros, and a short last chunk', async () => {
    const file = new MemoryFile();
    file.writeAt(OFFSET, new Uint8Array(10).fill(9));
    const cache = cacheOver(new TestStorage(file), 100, { chunkBytes: 64, maxBytes: 1024 });
    expect([...(await cache.use(0, (c) => c.bytes.slice(0, 12)))]).toEqual([9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0]);
    expect(await cache.use(1, (c) => c.bytes.length)).toBe(36);
  });

  it('builds a chunk view once, over a buffer padded to whole 8-byte words', async () => {
    const { file } = region(100, () => 0xff);
    let views = 0;
    const cache = new MetadataCache({
      storage: new TestStorage(file),
      offset: OFFSET,
      length: 100,
      chunkBytes: 64,
      maxBytes: 1024,
      mode: 'writeback',
      view: (b) => {
        views++;
        return new Uint32Array(b.buffer);
      },
    });
    const words = await cache.use(1, (c) => [...c.view]);
    await cache.use(1, () => undefined);
    expect(views).toBe(1);
    expect(words).toEqual([...Array(9).fill(0xffffffff), 0]); // 36 bytes, the padding reads as zero
  });
});

describe('MetadataCache memory bound under concurrency', () => {
  it('more concurrent requests than the cache holds all complete, each chunk loaded once, every change kept', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(fc.record({ chunk: fc.nat(15), at: fc.nat(31), value: fc.option(fc.nat(255), { nil: undefined }) }), {
          minLength: 1,
          maxLength: 40,
        }),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom<CacheMode>('writeback', 'writethrough', 'unsafe'),
        async (s, ops, capacity, mode) => {
          const CHUNK = 32;
          const LENGTH = 16 * CHUNK;
          const { file, bytes } = region(LENGTH);
          const storage = new TestStorage(file, s);
          const cache = cacheOver(storage, LENGTH, { chunkBytes: CHUNK, maxBytes: capacity * CHUNK, mode });
          const model = bytes.slice();
          let peak = 0;
          // Every op issued at once: reads see the model as of their turn (use's fn runs synchronously).
          const done = ops.map((op) =>
            cache.use(op.chunk, (c) => {
              peak = Math.max(peak, cache.cachedBytes);
              const pos = op.chunk * CHUNK + op.at;
              expect(c.bytes[op.at]).toBe(model[pos]);
              if (op.value !== undefined && c.bytes[op.at] !== op.value) {
                c.bytes[op.at] = op.value;
                model[pos] = op.value;
                cache.markDirty(c, op.at, op.at + 1);
              }
            }),
          );
          await s.waitFor(Promise.all(done));
          await s.waitFor(cache.writeBack());
          // Over the bound by at most one chunk per concurrent request (pinned while it waits), never more.
          expect(peak).toBeLessThanOrEqual(Math.max(capacity, new Set(ops.map((o) => o.chunk)).size) * CHUNK);
          expect(cache.cachedBytes).toBeLessThanOrEqual(capacity * CHUNK);
          expect([...onDisk(file, LENGTH)]).toEqual([...model]);
          const after = new Uint8Array(2);
          file.readAt(OFFSET + LENGTH, after);
          expect([...after]).toEqual([0xa5, 0xa5]);
          expect(cache.dirtyChunks).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a chunk a request waits for is never evicted before that request used it (no reload livelock)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const CHUNK = 16;
        const { file } = region(8 * CHUNK);
        const cache = cacheOver(new TestStorage(file, s), 8 * CHUNK, { chunkBytes: CHUNK, maxBytes: CHUNK });
        // Eight requests for eight chunks, room for one: each chunk is read exactly once.
        const done = Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => cache.use(i, (c) => c.index)));
        expect(await s.waitFor(done)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
        expect(cache.loads).toBe(8);
      }),
      { numRuns: 100 },
    );
  });

  it('evicts clean chunks first, and writes dirty ones back (barrier first) only when nothing clean is left', async () => {
    const CHUNK = 16;
    const { file } = region(8 * CHUNK);
    const storage = new TestStorage(file);
    const cache = cacheOver(storage, 8 * CHUNK, { chunkBytes: CHUNK, maxBytes: 2 * CHUNK });
    await cache.use(0, (c) => {
      c.bytes[0] = 1;
      cache.markDirty(c, 0, 1);
    });
    await cache.use(1, () => undefined);
    await cache.use(2, () => undefined); // evicts clean chunk 1, keeps dirty chunk 0
    expect(cache.has(0)).toBe(true);
    expect(cache.has(1)).toBe(false);
    expect(storage.events.some((e) => e.op === 'write')).toBe(false);
    await cache.use(2, (c) => {
      c.bytes[0] = 2;
      cache.markDirty(c, 0, 1);
    });
    storage.events.length = 0;
    await cache.use(3, () => undefined); // both cached chunks dirty: written back, then one evicted
    const ops = storage.events.map((e) => e.op);
    expect(ops.slice(0, 4)).toEqual(['flush', 'write', 'write', 'flush']);
    expect(cache.cachedBytes).toBeLessThanOrEqual(2 * CHUNK);
    expect(onDisk(file, 3 * CHUNK)[0]).toBe(1);
    expect(onDisk(file, 3 * CHUNK)[2 * CHUNK]).toBe(2);
  });
});

describe('MetadataCache write-back order', () => {
  async function dirtyTwo(mode: CacheMode, barrier?: () => Promise<void>) {
    const { file } = region(64);
    const storage = new TestStorage(file);
    const cache = cacheOver(storage, 64, { chunkBytes: 16, maxBytes: 64, mode, ...(barrier ? { barrier } : {}) });
    for (const i of [0, 3])
      await cache.use(i, (c) => {
        c.bytes[5] ^= 0xff;
        c.bytes[6] ^= 0xff;
        cache.markDirty(c, 5, 7);
      });
    storage.events.length = 0;
    return { storage, cache, file };
  }

  it('writeback: flush (data durable), then only the dirty bytes, then flush', async () => {
    const { storage, cache } = await dirtyTwo('writeback');
    await cache.writeBack();
    expect(storage.events).toEqual([
      { op: 'flush' },
      { op: 'write', offset: OFFSET + 5, length: 2 },
      { op: 'write', offset: OFFSET + 48 + 5, length: 2 },
      { op: 'flush' },
    ]);
    expect(cache.dirtyChunks).toBe(0);
    storage.events.length = 0;
    await cache.writeBack(); // nothing dirty: still a flush (it serves as the image's flush)
    expect(storage.events).toEqual([{ op: 'flush' }]);
  });

  it('unsafe: the writes without any flush; writethrough: the writes, then one flush', async () => {
    const unsafe = await dirtyTwo('unsafe');
    await unsafe.cache.writeBack();
    expect(unsafe.storage.events.map((e) => e.op)).toEqual(['write', 'write']);
    const through = await dirtyTwo('writethrough');
    await through.cache.writeBack();
    expect(through.storage.events.map((e) => e.op)).toEqual(['write', 'write', 'flush']);
  });

  it('a custom barrier runs before any metadata write (a dependency on another cache)', async () => {
    const events: string[] = [];
    const { storage, cache } = await dirtyTwo('writeback', async () => {
      events.push('barrier');
    });
    const write = storage.write.bind(storage);
    storage.write = async (offset, data) => {
      events.push('write');
      await write(offset, data);
    };
    await cache.writeBack();
    expect(events).toEqual(['barrier', 'write', 'write']);
    expect(storage.events.at(-1)).toEqual({ op: 'flush' });
  });

  it('a change made while the barrier runs is not written behind it: the chunk stays dirty for the next write-back', async () => {
    let cache!: MetadataCache;
    let during: (() => void) | undefined;
    const { file } = region(64);
    const storage = new TestStorage(file);
    cache = cacheOver(storage, 64, {
      chunkBytes: 16,
      maxBytes: 64,
      mode: 'writeback',
      barrier: async () => {
        during?.();
      },
    });
    await cache.use(1, (c) => {
      c.bytes[0] = 0x11;
      cache.markDirty(c, 0, 1);
    });
    during = () => {
      const c = cache.get(1)!;
      c.bytes[1] = 0x22; // its data was not covered by this barrier
      cache.markDirty(c, 1, 2);
    };
    await cache.writeBack();
    expect([...onDisk(file, 18).subarray(16, 18)]).toEqual([0x11, (17 * 13 + 7) & 0xff]);
    expect(cache.dirtyChunks).toBe(1);
    during = undefined;
    await cache.writeBack();
    expect([...onDisk(file, 18).subarray(16, 18)]).toEqual([0x11, 0x22]);
    expect(cache.dirtyChunks).toBe(0);
  });

  it('a failed write keeps the chunk dirty; the next write-back writes it', async () => {
    for (const mode of ['writeback', 'writethrough', 'unsafe'] as const) {
      const { storage, cache, file } = await dirtyTwo(mode);
      storage.failWrites = 1;
      await expect(cache.writeBack()).rejects.toThrow(/EIO/);
      expect(cache.dirtyChunks).toBeGreaterThanOrEqual(1);
      await cache.writeBack();
      expect(cache.dirtyChunks).toBe(0);
      const disk = onDisk(file, 64);
      expect(disk[5]).toBe(((5 * 13 + 7) & 0xff) ^ 0xff);
      expect(disk[48 + 6]).toBe(((54 * 13 + 7) & 0xff) ^ 0xff);
    }
  });

  it('a failed write-back during eviction fails the load and keeps the dirty chunk cached', async () => {
    const CHUNK = 16;
    const { file } = region(4 * CHUNK);
    const storage = new TestStorage(file);
    const cache = cacheOver(storage, 4 * CHUNK, { chunkBytes: CHUNK, maxBytes: CHUNK });
    await cache.use(0, (c) => {
      c.bytes[3] = 0x33;
      cache.markDirty(c, 3, 4);
    });
    storage.failWrites = 1;
    await expect(cache.use(1, () => undefined)).rejects.toThrow(/EIO/);
    expect(cache.has(0)).toBe(true);
    expect(cache.dirtyChunks).toBe(1);
    await cache.use(1, () => undefined); // retried: written back, then evicted
    expect(onDisk(file, CHUNK)[3]).toBe(0x33);
    expect(await cache.use(0, (c) => c.bytes[3])).toBe(0x33);
  });
});
