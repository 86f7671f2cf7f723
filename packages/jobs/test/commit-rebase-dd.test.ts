/**
 * commit (and commit -b), rebase and dd as @blk/jobs runs them over MemoryVfs
 * (portable: no host file system, the registry passed in): commit reads each
 * overlay run once, from the layer that holds it, and writes nothing for
 * holes; safe rebase copies only the runs that differ, reading each from the
 * layer of the old chain that holds it; an aborted commit leaves what a kill
 * leaves and a re-run finishes it; dd copies a range, reading from the
 * holding layers, and an abort leaves no output.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Image, isBlockError, type MemoryVfs, openImage, type BlockErrorKind } from '@blk/core';
import { commitImage, commitIntoBase, ddImage, JOURNAL_SUFFIX, rebaseImage } from '@blk/jobs';
import {
  chain as chainOf,
  contents,
  firstDifference,
  KiB,
  MID_RUNS,
  midIsCow,
  registry,
  SIZE,
  TOP_RUNS,
  type Range,
} from './fixtures/chain.js';

const isBlockErrorKind = (kind: BlockErrorKind) => (err: unknown) => isBlockError(err, kind);

/** base.raw (`baseSize`) <- mid.cow (1 MiB) <- top.cow, with MID_RUNS and TOP_RUNS. */
const chain = (baseSize = SIZE) => chainOf({ baseSize });

/** A file's bytes as they are now. */
function snapshot(vfs: MemoryVfs, path: string): Uint8Array {
  const buf = new Uint8Array(4 * SIZE);
  return buf.slice(0, vfs.file(path).readAt(0, buf));
}

const bytesOf = (runs: Range[]) => runs.reduce((n, r) => n + r.length, 0);

/** Merges overlapping or touching ranges. */
function union(ranges: Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.start + last.length) {
      last.length = Math.max(last.length, r.start + r.length - last.start);
    } else out.push({ ...r });
  }
  return out;
}

/** Records Image.readInto and Image.write calls (which image, where, how much). */
function recordIo() {
  const reads: Array<{ path: string; offset: number; length: number }> = [];
  const writes: Array<{ path: string; offset: number; length: number; data: Uint8Array }> = [];
  const readInto = Image.prototype.readInto;
  const write = Image.prototype.write;
  vi.spyOn(Image.prototype, 'readInto').mockImplementation(function (this: Image, offset, into, options) {
    reads.push({ path: this.path, offset, length: into.length });
    return readInto.call(this, offset, into, options);
  });
  vi.spyOn(Image.prototype, 'write').mockImplementation(function (this: Image, offset, data, options) {
    writes.push({ path: this.path, offset, length: data.length, data: data.slice() });
    return write.call(this, offset, data, options);
  });
  return { reads, writes };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('commit (@blk/jobs over MemoryVfs)', () => {
  it('commit -b of a 3-layer chain reads each overlay run once, from its layer, and writes nothing for holes', async () => {
    const vfs = await chain();
    const expected = await contents(vfs, '/top.cow');
    const io = recordIo();
    const result = await commitIntoBase('/top.cow', '/base.raw', {
      registry,
      vfs,
      backingProbe: true,
      chunkSize: 64 * KiB,
    });
    vi.restoreAllMocks();
    expect(result.copied).toBe(bytesOf(MID_RUNS) + bytesOf(TOP_RUNS));
    expect(firstDifference(await contents(vfs, '/base.raw', { format: 'raw' }), expected)).toBe(-1);

    // Each overlay was read exactly for the runs it holds, each byte once.
    for (const [path, runs] of [
      ['/top.cow', TOP_RUNS],
      ['/mid.cow', MID_RUNS],
    ] as const) {
      const reads = io.reads.filter((r) => r.path === path);
      for (const r of reads) {
        expect(runs.some((run) => r.offset >= run.start && r.offset + r.length <= run.start + run.length)).toBe(true);
      }
      expect({ path, read: bytesOf(reads) }).toEqual({ path, read: bytesOf(runs) });
    }
    // BASE was not read through the chain, and written only where a layer above holds data (no hole written).
    const held = union([...MID_RUNS, ...TOP_RUNS]);
    const baseWrites = io.writes.filter((w) => w.path === '/base.raw');
    expect(bytesOf(baseWrites)).toBe(bytesOf(MID_RUNS) + bytesOf(TOP_RUNS));
    for (const w of baseWrites) {
      expect(held.some((h) => w.offset >= h.start && w.offset + w.length <= h.start + h.length)).toBe(true);
    }
    // Nothing else was written through an image (the overlays keep their data: -b implies -d).
    expect(io.writes.every((w) => w.path === '/base.raw')).toBe(true);
    expect(await vfs.exists(`/top.cow${JOURNAL_SUFFIX}`)).toBe(false);
  });

  it('plain commit reads only the top (once per run) and writes only its runs into its backing file', async () => {
    const vfs = await chain();
    const expected = await contents(vfs, '/top.cow');
    const baseBefore = snapshot(vfs, '/base.raw');
    const io = recordIo();
    const result = await commitImage('/top.cow', { registry, vfs, backingFormat: 'cow', chunkSize: 64 * KiB });
    vi.restoreAllMocks();
    expect(result).toMatchObject({ backingPath: '/mid.cow', copied: bytesOf(TOP_RUNS), emptied: true });
    expect(firstDifference(await contents(vfs, '/mid.cow', { backing: {} }), expected)).toBe(-1);
    expect(firstDifference(snapshot(vfs, '/base.raw'), baseBefore)).toBe(-1);
    const reads = io.reads.filter((r) => r.path !== '/top.cow');
    expect(reads).toEqual([]);
    expect(bytesOf(io.reads)).toBe(bytesOf(TOP_RUNS));
    expect(io.writes.map((w) => ({ path: w.path, offset: w.offset, length: w.length }))).toEqual(
      TOP_RUNS.map((r) => ({ path: '/mid.cow', offset: r.start, length: r.length })),
    );
    // The top is empty now and reads the same through the chain.
    expect(firstDifference(await contents(vfs, '/top.cow'), expected)).toBe(-1);
  });

  it('aborted mid-copy: stops with `aborted`, leaves the mark and the journal; a re-run finishes with the right bytes', async () => {
    const vfs = await chain();
    const expected = await contents(vfs, '/top.cow');
    const controller = new AbortController();
    let updates = 0;
    const job = commitImage('/top.cow', {
      registry,
      vfs,
      backingFormat: 'cow',
      chunkSize: 64 * KiB,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.phase === 'update' && ++updates === 1) controller.abort(new Error('interrupted'));
      },
    });
    await expect(job).rejects.toSatisfy(isBlockErrorKind('aborted'));
    expect(updates).toBe(1); // one window of three was copied
    // What a kill there leaves: the overlay is marked (it refuses to open over its changing backing file)
    // and blk's journal names both files.
    expect(await vfs.exists(`/top.cow${JOURNAL_SUFFIX}`)).toBe(true);
    await expect(openImage('/top.cow', { registry, vfs, backing: midIsCow })).rejects.toSatisfy(
      isBlockErrorKind('backing-mismatch'),
    );
    // The re-run recognises its own interrupted commit and finishes it.
    const again = await commitImage('/top.cow', { registry, vfs, backingFormat: 'cow', chunkSize: 64 * KiB });
    expect(again).toMatchObject({ copied: bytesOf(TOP_RUNS), emptied: true });
    expect(await vfs.exists(`/top.cow${JOURNAL_SUFFIX}`)).toBe(false);
    expect(firstDifference(await contents(vfs, '/mid.cow', { backing: {} }), expected)).toBe(-1);
    expect(firstDifference(await contents(vfs, '/top.cow'), expected)).toBe(-1);
  });

  it('commit -b aborted mid-copy, then re-run: BASE holds the chain', async () => {
    const vfs = await chain();
    const expected = await contents(vfs, '/top.cow');
    const controller = new AbortController();
    const job = commitIntoBase('/top.cow', '/base.raw', {
      registry,
      vfs,
      backingProbe: true,
      chunkSize: 16 * KiB,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.phase === 'update') controller.abort();
      },
    });
    await expect(job).rejects.toSatisfy(isBlockErrorKind('aborted'));
    expect(await vfs.exists(`/top.cow${JOURNAL_SUFFIX}`)).toBe(true);
    await commitIntoBase('/top.cow', '/base.raw', { registry, vfs, backingProbe: true });
    expect(await vfs.exists(`/top.cow${JOURNAL_SUFFIX}`)).toBe(false);
    expect(firstDifference(await contents(vfs, '/base.raw', { format: 'raw' }), expected)).toBe(-1);
    expect(firstDifference(await contents(vfs, '/top.cow'), expected)).toBe(-1);
  });

  it('a signal fired before the start: nothing is written', async () => {
    const vfs = await chain();
    const controller = new AbortController();
    controller.abort();
    const before = snapshot(vfs, '/mid.cow');
    const io = recordIo();
    await expect(
      commitImage('/top.cow', { registry, vfs, backingFormat: 'cow', signal: controller.signal }),
    ).rejects.toSatisfy(isBlockErrorKind('aborted'));
    expect(io.writes).toEqual([]);
    expect(firstDifference(snapshot(vfs, '/mid.cow'), before)).toBe(-1);
    expect(await vfs.exists(`/top.cow${JOURNAL_SUFFIX}`)).toBe(false);
  });
});

describe('rebase (@blk/jobs over MemoryVfs)', () => {
  /** new.raw: the old chain's contents with a few changes (see each). */
  async function withNewBacking(vfs: MemoryVfs): Promise<{ old: Uint8Array; differing: Range[] }> {
    const old = await contents(vfs, '/top.cow');
    const next = old.slice();
    const differing: Range[] = [
      { start: 70 * KiB, length: 512 }, // held by mid
      { start: 200 * KiB, length: 1024 }, // held by base
      { start: 600 * KiB, length: 512 }, // held by no layer (base is 512 KiB): zeros in the old chain
    ];
    for (const r of differing) next.fill(0xee, r.start, r.start + r.length);
    next.fill(0xdd, 302 * KiB, 303 * KiB); // held by the top itself: it keeps its own data
    vfs.put('/new.raw', next);
    return { old, differing };
  }

  it('safe mode copies only the runs that differ, each read from the old layer that holds it', async () => {
    const vfs = await chain(SIZE / 2);
    const { old, differing } = await withNewBacking(vfs);
    const io = recordIo();
    const result = await rebaseImage('/top.cow', {
      registry,
      vfs,
      backing: '/new.raw',
      oldBackingFormat: 'cow',
      chunkSize: 64 * KiB,
    });
    vi.restoreAllMocks();
    expect(result).toEqual({ backingPath: '/new.raw', copied: bytesOf(differing) });
    // Only the granules that differ were written into the overlay, with the old chain's bytes (zeros included).
    const topWrites = io.writes.filter((w) => w.path === '/top.cow');
    expect(topWrites.map((w) => ({ start: w.offset, length: w.length }))).toEqual(differing);
    for (const w of topWrites) expect(w.data).toEqual(old.subarray(w.offset, w.offset + w.length));
    // The old chain was read only where each layer holds the run, never through the top, and never where
    // no layer holds anything.
    const oldReads = io.reads.filter((r) => r.path !== '/new.raw');
    expect(oldReads.some((r) => r.path === '/top.cow')).toBe(false);
    for (const r of oldReads.filter((x) => x.path === '/mid.cow')) {
      expect(MID_RUNS.some((m) => r.offset >= m.start && r.offset + r.length <= m.start + m.length)).toBe(true);
    }
    for (const r of oldReads.filter((x) => x.path === '/base.raw'))
      expect(r.offset + r.length).toBeLessThanOrEqual(SIZE / 2);
    // Over its new backing file the overlay reads what it read before.
    expect(firstDifference(await contents(vfs, '/top.cow', { backing: {} }), old)).toBe(-1);
  });

  it('aborted mid-copy: the overlay still reads the same over its old backing file; a re-run finishes', async () => {
    const vfs = await chain(SIZE / 2);
    const { old } = await withNewBacking(vfs);
    const controller = new AbortController();
    const job = rebaseImage('/top.cow', {
      registry,
      vfs,
      backing: '/new.raw',
      oldBackingFormat: 'cow',
      chunkSize: 64 * KiB,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.phase === 'update' && e.done > 100 * KiB) controller.abort();
      },
    });
    await expect(job).rejects.toSatisfy(isBlockErrorKind('aborted'));
    expect(firstDifference(await contents(vfs, '/top.cow'), old)).toBe(-1);
    await rebaseImage('/top.cow', { registry, vfs, backing: '/new.raw', oldBackingFormat: 'cow' });
    expect(firstDifference(await contents(vfs, '/top.cow', { backing: {} }), old)).toBe(-1);
  });
});

describe('dd (@blk/jobs over MemoryVfs)', () => {
  it('copies the range from the layers that hold it, leaving holes unwritten', async () => {
    const vfs = await chain(SIZE / 2);
    const all = await contents(vfs, '/top.cow');
    const io = recordIo();
    // skip=128 (64 KiB) count=1536 (768 KiB): [64 KiB, 768 KiB) of the chain.
    const result = await ddImage('/top.cow', '/out.raw', {
      registry,
      vfs,
      backingProbe: true,
      blockSize: 512,
      skip: 128,
      count: 1536,
    });
    vi.restoreAllMocks();
    expect(result).toEqual({ size: 704 * KiB });
    expect(firstDifference(await contents(vfs, '/out.raw', { format: 'raw' }), all.subarray(64 * KiB, 768 * KiB))).toBe(
      -1,
    );
    // No read through the top for data it does not hold.
    for (const r of io.reads.filter((x) => x.path === '/top.cow')) {
      expect(TOP_RUNS.some((t) => r.offset >= t.start && r.offset + r.length <= t.start + t.length)).toBe(true);
    }
    // [512 KiB, 768 KiB) outside mid's run at 700 KiB is held by no layer: not written.
    const outWrites = io.writes.filter((w) => w.path !== '/top.cow');
    for (const w of outWrites) {
      const at = w.offset + 64 * KiB;
      const inHole = at >= 512 * KiB && at + w.length <= 700 * KiB;
      expect(inHole).toBe(false);
    }
  });

  it('aborted: stops with `aborted`, no output and no temporary file left', async () => {
    const vfs = await chain();
    const controller = new AbortController();
    const temps: Array<string | undefined> = [];
    const job = ddImage('/top.cow', '/out.raw', {
      registry,
      vfs,
      backingProbe: true,
      signal: controller.signal,
      onTempFile: (p) => temps.push(p),
      onProgress: (e) => {
        if (e.phase === 'update') controller.abort();
      },
    });
    await expect(job).rejects.toSatisfy(isBlockErrorKind('aborted'));
    expect(await vfs.exists('/out.raw')).toBe(false);
    expect(temps[0]).toBeDefined();
    expect(await vfs.exists(temps[0]!)).toBe(false);
  });
});
