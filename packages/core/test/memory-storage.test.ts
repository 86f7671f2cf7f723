import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryFile, MemoryStorage, MemoryVfs } from '@blk/core';
import { bytes } from './fixtures/helpers.js';

const CHUNK = 64 * 1024;

describe('MemoryFile sparse storage', () => {
  it('holds no memory for a huge file that was only truncated', () => {
    const file = new MemoryFile();
    file.truncate(2 ** 40);
    expect(file.length).toBe(2 ** 40);
    expect(file.allocatedBytes).toBe(0);
  });

  it('holds one chunk per 64 KiB touched by writes, wherever they are', () => {
    const file = new MemoryFile();
    file.truncate(2 ** 40);
    file.writeAt(2 ** 39, bytes(10));
    file.writeAt(CHUNK - 1, new Uint8Array(2)); // straddles two chunks
    expect(file.allocatedBytes).toBe(3 * CHUNK);
  });

  it('reads holes as zeros and written bytes back, across chunk boundaries', () => {
    const file = new MemoryFile();
    file.writeAt(CHUNK - 5, bytes(10));
    file.writeAt(3 * CHUNK, bytes(3, 9));
    const out = new Uint8Array(4 * CHUNK).fill(0xcc);
    expect(file.readAt(0, out)).toBe(3 * CHUNK + 3);
    const expected = new Uint8Array(4 * CHUNK).fill(0xcc);
    expected.fill(0, 0, 3 * CHUNK + 3);
    expected.set(bytes(10), CHUNK - 5);
    expected.set(bytes(3, 9), 3 * CHUNK);
    // Past the end nothing is touched. (Buffer.equals: toEqual on 256 KiB is slow.)
    expect(Buffer.from(out).equals(Buffer.from(expected))).toBe(true);
  });

  it('returns 0 and touches nothing when reading at or past the end', () => {
    const file = new MemoryFile(bytes(10));
    const out = new Uint8Array(4).fill(7);
    expect(file.readAt(10, out)).toBe(0);
    expect(file.readAt(100, out)).toBe(0);
    expect(out).toEqual(new Uint8Array(4).fill(7));
  });

  it('drops the data past a shrinking truncate, so growing again reads zeros', () => {
    const file = new MemoryFile(new Uint8Array(3 * CHUNK).fill(5));
    file.truncate(CHUNK + 10);
    expect(file.allocatedBytes).toBe(2 * CHUNK);
    file.truncate(3 * CHUNK);
    const out = new Uint8Array(3 * CHUNK);
    file.readAt(0, out);
    expect(out.subarray(0, CHUNK + 10).every((b) => b === 5)).toBe(true);
    expect(out.subarray(CHUNK + 10).every((b) => b === 0)).toBe(true);
  });

  it('bumps mtime on every change, as a real file would', () => {
    const file = new MemoryFile(undefined, 1000);
    file.writeAt(0, bytes(1));
    file.truncate(10);
    expect(file.mtimeSec).toBe(1002);
  });

  it('does not grow on a zero-length write past the end (as pwrite of 0 bytes does not)', () => {
    const file = new MemoryFile(bytes(10));
    file.writeAt(100, new Uint8Array(0));
    expect(file.length).toBe(10);
  });
});

describe('MemoryStorage', () => {
  it('shares one MemoryFile between storages opened on the same path', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/f', new Uint8Array(10));
    const a = await vfs.open('/f');
    const b = await vfs.open('/f', { readOnly: true });
    await a.write(2, bytes(3));
    const out = new Uint8Array(10);
    expect(await b.read(0, out)).toBe(10);
    expect(out.subarray(2, 5)).toEqual(bytes(3));
  });

  it("refuses writes and truncates on a read-only storage with 'read-only'", async () => {
    const storage = new MemoryStorage(new MemoryFile(bytes(10)), '/ro', true);
    await expect(storage.write(0, bytes(1))).rejects.toMatchObject({ kind: 'read-only', path: '/ro' });
    await expect(storage.truncate(0)).rejects.toMatchObject({ kind: 'read-only' });
    expect(await storage.size()).toBe(10);
  });

  it("refuses use after close with 'closed'", async () => {
    const storage = new MemoryStorage(new MemoryFile(bytes(10)), '/c');
    await storage.close();
    await expect(storage.read(0, new Uint8Array(1))).rejects.toMatchObject({ kind: 'closed' });
    await expect(storage.write(0, bytes(1))).rejects.toMatchObject({ kind: 'closed' });
    await expect(storage.size()).rejects.toMatchObject({ kind: 'closed' });
  });

  it("refuses a negative offset with 'out-of-range'", async () => {
    const storage = new MemoryStorage(new MemoryFile(bytes(10)));
    await expect(storage.read(-1, new Uint8Array(1))).rejects.toMatchObject({ kind: 'out-of-range' });
    await expect(storage.write(-1, bytes(1))).rejects.toMatchObject({ kind: 'out-of-range' });
  });
});

describe('MemoryVfs', () => {
  it('creates exclusively, refusing an existing file with exists', async () => {
    const vfs = new MemoryVfs();
    await (await vfs.open('/n', { create: true, exclusive: true })).close();
    await expect(vfs.open('/n', { create: true, exclusive: true })).rejects.toMatchObject({ kind: 'exists' });
  });

  it('follows symlinks (relative ones against the link directory) for open, stat and realpath, but not lstat', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/data/disk.img', bytes(10));
    vfs.symlink('../data/disk.img', '/links/disk');
    expect(await vfs.realpath('/links/disk')).toBe('/data/disk.img');
    expect((await vfs.stat('/links/disk')).size).toBe(10);
    expect((await vfs.lstat('/links/disk')).isSymbolicLink).toBe(true);
    const out = new Uint8Array(10);
    await (await vfs.open('/links/disk')).read(0, out);
    expect(out).toEqual(bytes(10));
  });

  it("reports a missing file as an 'io' error with code ENOENT, and a symlink loop with ELOOP", async () => {
    const vfs = new MemoryVfs();
    await expect(vfs.stat('/missing')).rejects.toMatchObject({ kind: 'io', code: 'ENOENT' });
    vfs.symlink('/b', '/a');
    vfs.symlink('/a', '/b');
    await expect(vfs.open('/a')).rejects.toMatchObject({ kind: 'io', code: 'ELOOP' });
  });

  it('resolves relative paths against its working directory and treats parents of files as directories', async () => {
    const vfs = new MemoryVfs('/home/me');
    vfs.put('img/a.raw', bytes(1));
    expect(vfs.files.has('/home/me/img/a.raw')).toBe(true);
    expect((await vfs.stat('/home/me/img')).isDirectory).toBe(true);
    expect(await vfs.exists('/home')).toBe(true);
    expect(vfs.resolve('/x/y', '../z')).toBe('/x/z');
  });
});

describe('MemoryFile.extentAt: where data and holes are (the in-memory SEEK_DATA/SEEK_HOLE)', () => {
  it('reports held chunks as data and the rest as holes, in whole chunks, cut at the request and the file end', async () => {
    const file = new MemoryFile();
    file.truncate(2 ** 40);
    file.writeAt(CHUNK + 10, bytes(10)); // chunk 1
    file.writeAt(3 * CHUNK - 1, bytes(2)); // chunks 2 and 3
    file.writeAt(2 ** 39, bytes(1));
    expect(file.extentAt(0, 2 ** 40)).toEqual({ data: false, length: CHUNK });
    expect(file.extentAt(5, 2 ** 40)).toEqual({ data: false, length: CHUNK - 5 });
    expect(file.extentAt(CHUNK, 2 ** 40)).toEqual({ data: true, length: 3 * CHUNK });
    expect(file.extentAt(CHUNK + 7, 100)).toEqual({ data: true, length: 100 });
    expect(file.extentAt(4 * CHUNK, 2 ** 40)).toEqual({ data: false, length: 2 ** 39 - 4 * CHUNK });
    expect(file.extentAt(2 ** 39, 2 ** 39)).toEqual({ data: true, length: CHUNK });
    expect(file.extentAt(2 ** 39 + CHUNK, 2 ** 39 - CHUNK)).toEqual({ data: false, length: 2 ** 39 - CHUNK });
    // Past the end: a hole; data stops at the end of the file.
    expect(file.extentAt(2 ** 40, 4096)).toEqual({ data: false, length: 4096 });
    const small = new MemoryFile(bytes(100));
    expect(small.extentAt(0, 4096)).toEqual({ data: true, length: 100 });
    expect(small.extentAt(100, 4096)).toEqual({ data: false, length: 4096 });
    const storage = new MemoryStorage(file);
    expect(await storage.extentAt(CHUNK, 10)).toEqual({ data: true, length: 10 });
    await expect(storage.extentAt(0, 0)).rejects.toMatchObject({ kind: 'invalid-argument' });
    await expect(storage.extentAt(-1, 10)).rejects.toMatchObject({ kind: 'out-of-range' });
  });

  it('a truncation drops the chunks past the new end: they become holes', () => {
    const file = new MemoryFile(bytes(4 * CHUNK));
    file.truncate(CHUNK + 1);
    file.truncate(4 * CHUNK);
    expect(file.extentAt(0, 4 * CHUNK)).toEqual({ data: true, length: 2 * CHUNK });
    expect(file.extentAt(2 * CHUNK, 2 * CHUNK)).toEqual({ data: false, length: 2 * CHUNK });
  });

  it('extents tile any range, holes read as zeros and every written byte lies in data (random writes)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 40 * CHUNK }), fc.integer({ min: 1, max: 3 * CHUNK })), {
          maxLength: 12,
        }),
        fc.integer({ min: 0, max: 48 * CHUNK }),
        fc.integer({ min: 1, max: 48 * CHUNK }),
        (writes, start, length) => {
          const file = new MemoryFile();
          const written = new Set<number>();
          for (const [offset, n] of writes) {
            // A lookup in a hole between writes builds the sorted chunk cache, which later writes must keep right.
            file.extentAt(41 * CHUNK, CHUNK);
            file.writeAt(offset, new Uint8Array(n).fill(7));
            for (let c = Math.floor(offset / CHUNK); c <= Math.floor((offset + n - 1) / CHUNK); c++) written.add(c);
          }
          let pos = start;
          while (pos < start + length) {
            const e = file.extentAt(pos, start + length - pos);
            expect(e.length).toBeGreaterThan(0);
            expect(pos + e.length).toBeLessThanOrEqual(start + length);
            const content = new Uint8Array(e.length);
            file.readAt(pos, content);
            if (!e.data) expect(content.every((b) => b === 0)).toBe(true);
            // A byte is data when its chunk was written and it lies before the end of the file:
            // check the first and last byte of the extent's piece of each chunk.
            const end = pos + e.length;
            for (let c = Math.floor(pos / CHUNK); c <= Math.floor((end - 1) / CHUNK); c++) {
              for (const b of [Math.max(pos, c * CHUNK), Math.min(end, (c + 1) * CHUNK) - 1]) {
                expect(written.has(c) && b < file.length, `byte ${b} in ${pos}+${e.length}`).toBe(e.data);
              }
            }
            pos += e.length;
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('MemoryFile.clone: copy-on-write copies (the store the crash simulator builds its states on)', () => {
  type Op =
    | { kind: 'write'; who: number; offset: number; data: Uint8Array }
    | { kind: 'truncate'; who: number; size: number }
    | { kind: 'clone'; who: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      kind: fc.constant('write' as const),
      who: fc.nat(3),
      offset: fc.nat(40_000),
      data: fc.uint8Array({ minLength: 0, maxLength: 9000 }),
    }),
    fc.record({ kind: fc.constant('truncate' as const), who: fc.nat(3), size: fc.nat(50_000) }),
    fc.record({ kind: fc.constant('clone' as const), who: fc.nat(3) }),
  );

  it('every clone reads as a flat copy would, whatever is written to it or to the others afterwards (4 KiB and 64 KiB chunks)', () => {
    for (const chunkSize of [4096, CHUNK, 1000]) {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
          const files = [new MemoryFile(undefined, 0, { chunkSize })];
          const models: Uint8Array[] = [new Uint8Array(0)];
          for (const o of ops) {
            const i = o.who % files.length;
            if (o.kind === 'clone') {
              files.push(files[i]!.clone());
              models.push(models[i]!.slice());
            } else if (o.kind === 'write') {
              files[i]!.writeAt(o.offset, o.data);
              if (o.data.length === 0) continue;
              const m = models[i]!;
              const grown = new Uint8Array(Math.max(m.length, o.offset + o.data.length));
              grown.set(m);
              grown.set(o.data, o.offset);
              models[i] = grown;
            } else {
              files[i]!.truncate(o.size);
              const m = new Uint8Array(o.size);
              m.set(models[i]!.subarray(0, o.size));
              models[i] = m;
            }
          }
          files.forEach((f, i) => {
            expect(f.length).toBe(models[i]!.length);
            // Buffer.equals, not toEqual: vitest's deep equality walks megabytes byte by byte (85 s).
            expect(Buffer.from(f.snapshot()).equals(models[i]!), `clone ${i} reads as its model`).toBe(true);
          });
        }),
        { numRuns: 150 },
      );
    }
  });

  it('a clone holds the same chunks (no bytes copied) until one side writes; then only that chunk is copied', () => {
    const file = new MemoryFile(undefined, 0, { chunkSize: 4096 });
    file.writeAt(0, bytes(3 * 4096));
    const chunkOf = (f: MemoryFile, at: number) => [...f.heldChunks()].find(([o]) => o === at)![1];
    const copy = file.clone();
    for (const at of [0, 4096, 8192]) expect(chunkOf(copy, at)).toBe(chunkOf(file, at));
    copy.writeAt(4096, new Uint8Array([1]));
    expect(chunkOf(copy, 4096)).not.toBe(chunkOf(file, 4096));
    expect(chunkOf(copy, 0)).toBe(chunkOf(file, 0));
    expect(file.snapshot()).toEqual(bytes(3 * 4096));
  });

  it('refuses a chunk size that is not a positive integer', () => {
    expect(() => new MemoryFile(undefined, 0, { chunkSize: 0 })).toThrow(/chunk size/);
    expect(() => new MemoryFile(undefined, 0, { chunkSize: 1.5 })).toThrow(/chunk size/);
  });
});
