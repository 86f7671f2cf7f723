/**
 * Reads over a cow-over-raw chain whose runs alternate between the layers (what `blk serve` sends
 * for one large NBD read): each run is read once, from the layer that holds it; the reads of one
 * request are all issued before any is awaited (they overlap on a thread pool); a failed run
 * settles the request only once the others are over (their buffer may be reused at once).
 */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  FilterStorage,
  MemoryVfs,
  createImage,
  openImage,
  type Image,
  type Storage,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '../src/index.js';

const KiB = 1024;
const SIZE = 1024 * KiB;
const registry = new DriverRegistry([cowDriver, rawDriver]);

/** A storage read seen by `GatedVfs`: where, and how to let it finish. */
interface Started {
  path: string;
  offset: number;
  length: number;
  release(error?: Error): void;
}

/**
 * Storages whose reads are asynchronous (no `readSync`, as a thread pool's) and, while `gated`, wait
 * until the test releases them: the test sees which reads a request has issued at once.
 */
class GatedVfs extends MemoryVfs {
  gated = false;
  readonly started: Started[] = [];
  /** Files read synchronously instead (never gated); a synchronous read of `failLength` bytes throws. */
  readonly syncFiles = new Set<string>();
  failLength = -1;

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const vfs = this;
    const inner = await super.open(path, options);
    if (this.syncFiles.has(path)) {
      return new (class extends FilterStorage {
        override readSync(offset: number, into: Uint8Array): number {
          if (into.length === vfs.failLength) throw new Error(`sync read of ${path} failed`);
          return inner.readSync!(offset, into);
        }
      })(inner);
    }
    return new (class extends FilterStorage {
      override read(offset: number, into: Uint8Array): Promise<number> {
        if (!vfs.gated) return inner.read(offset, into);
        return new Promise<number>((resolve, reject) => {
          vfs.started.push({
            path,
            offset,
            length: into.length,
            release: (error) => (error ? reject(error) : resolve(inner.read(offset, into))),
          });
        });
      }
    })(inner);
  }
}

/** Runs of the overlay, [start, end): the rest of the first 256 KiB reads from the base. */
const OVERLAY_RUNS: Array<[number, number]> = [
  [0, 8 * KiB],
  [24 * KiB, 28 * KiB],
  [64 * KiB, 128 * KiB],
  [132 * KiB, 200 * KiB],
];

/** The chain and the bytes it must read as. */
async function chain(): Promise<{ vfs: GatedVfs; model: Uint8Array; open: () => Promise<Image> }> {
  const vfs = new GatedVfs();
  const model = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) model[i] = (i * 7 + (i >> 9)) & 0xff;
  vfs.put('/c/base.raw', model.slice());
  await createImage('/c/top.cow', { registry, vfs, format: 'cow', backing: '/c/base.raw' });
  const top = await openImage('/c/top.cow', { registry, vfs });
  for (const [s, e] of OVERLAY_RUNS) {
    const data = new Uint8Array(e - s).map((_, i) => (s + i) % 251);
    await top.write(s, data);
    model.set(data, s);
  }
  await top.close();
  const open = async () => {
    const image = await openImage('/c/top.cow', { registry, vfs, readOnly: true });
    // Bitmap chunks and statuses are loaded now, ungated: later reads are the data's alone.
    await image.readMapped(0, new Uint8Array(256 * KiB));
    return image;
  };
  return { vfs, model, open };
}

/** Lets queued promise callbacks and immediates run. */
const settle = () => new Promise((r) => setImmediate(r));

/** The runs of [0, 256 KiB) by layer, as storage reads: overlay runs at the cow file, the rest at the base. */
function expectedReads(): Array<[string, number]> {
  const reads: Array<[string, number]> = [];
  let pos = 0;
  for (const [s, e] of OVERLAY_RUNS) {
    if (pos < s) reads.push(['/c/base.raw', s - pos]);
    reads.push(['/c/top.cow', e - s]);
    pos = e;
  }
  if (pos < 256 * KiB) reads.push(['/c/base.raw', 256 * KiB - pos]);
  return reads;
}

describe('reads over a chain with alternating runs', () => {
  for (const how of ['readMapped', 'readInto'] as const) {
    it(`${how}: one storage read per run, each from the layer holding it, all issued before any completes`, async () => {
      const { vfs, model, open } = await chain();
      const image = await open();
      vfs.gated = true;
      const into = new Uint8Array(256 * KiB).fill(0xee);
      let done = false;
      const p = (how === 'readMapped' ? image.readMapped(0, into) : image.readInto(0, into)).then(() => {
        done = true;
      });
      await settle();
      expect(vfs.started.map((s) => [s.path, s.length])).toEqual(expectedReads());
      expect(done).toBe(false);
      for (const s of vfs.started.splice(0)) s.release();
      await p;
      expect(Buffer.compare(into, model.subarray(0, 256 * KiB))).toBe(0);
      vfs.gated = false;
      await image.close();
    });

    it(`${how}: a failed run settles the request only once every other read of it is over`, async () => {
      const { vfs, open } = await chain();
      const image = await open();
      vfs.gated = true;
      let settled = false;
      const into = new Uint8Array(256 * KiB);
      const p = (how === 'readMapped' ? image.readMapped(0, into) : image.readInto(0, into)).then(
        () => {
          settled = true;
        },
        (e: unknown) => {
          settled = true;
          throw e;
        },
      );
      await settle();
      const [first, ...rest] = vfs.started.splice(0);
      expect(rest.length).toBeGreaterThan(0);
      first!.release(new Error('disk on fire'));
      await settle();
      // Other reads still write into `into`: the caller must not get it back yet.
      expect(settled).toBe(false);
      for (const s of rest) s.release();
      await expect(p).rejects.toThrow('disk on fire');
      vfs.gated = false;
      await image.close();
    });
  }

  it('readInto: a run failing synchronously is reported only once the runs already issued are over', async () => {
    const { vfs, open } = await chain();
    vfs.syncFiles.add('/c/top.cow');
    const image = await open();
    vfs.gated = true;
    vfs.failLength = 4 * KiB; // the overlay's second run, [24 KiB, 28 KiB), after a base run that waits
    let settled = false;
    const p = image.readInto(0, new Uint8Array(256 * KiB)).then(
      () => {
        settled = true;
      },
      (e: unknown) => {
        settled = true;
        throw e;
      },
    );
    await settle();
    expect(vfs.started.map((s) => s.path)).toEqual(['/c/base.raw']);
    expect(settled).toBe(false);
    for (const s of vfs.started.splice(0)) s.release();
    await expect(p).rejects.toThrow('sync read of /c/top.cow failed');
    vfs.gated = false;
    vfs.failLength = -1;
    await image.close();
  });

  it('readMapped of any range (unaligned, across layer boundaries) reads the chain and reports its runs', async () => {
    const { model, open } = await chain();
    const image = await open();
    let seed = 12345;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 150; i++) {
      const offset = next(300 * KiB);
      const length = 1 + next(300 * KiB);
      const into = new Uint8Array(length).fill(0xee);
      const runs = await image.readMapped(offset, into);
      expect(Buffer.compare(into, model.subarray(offset, offset + length))).toBe(0);
      const mapped = [];
      for await (const r of image.map(offset, length)) mapped.push(r);
      expect(runs).toEqual(mapped);
    }
    await image.close();
  });
});
