/**
 * `Image.readFileRuns` over real files (what blk serve's zero-copy reads send from): the runs of
 * a cow-over-raw chain tile the range, zeros where no layer holds data, and each file range, read
 * from its descriptor, holds exactly the bytes `readInto` gives; a layer on a storage that is not
 * a host file gives its bytes read (`data`); an image whose top layer is not on a host file
 * (memory, a filter that changes reads) has `fileRunsPossible` false.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  FilterStorage,
  ForwardingVfs,
  MemoryVfs,
  NodeVfs,
  createImage,
  openImage,
  type HostFileRun,
  type Storage,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '../src/index.js';

const KiB = 1024;
const SIZE = 1024 * KiB;
const registry = new DriverRegistry([cowDriver, rawDriver]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-file-runs-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The bytes a run list stands for, read from the descriptors (past a file's end: zeros). */
function bytesOf(runs: readonly HostFileRun[], length: number, offset: number): Buffer {
  const out = Buffer.alloc(length);
  let pos = offset;
  for (const r of runs) {
    expect(r.start).toBe(pos);
    if (r.fd !== undefined) fs.readSync(r.fd, out, r.start - offset, r.length, r.position);
    else if (r.data !== undefined) out.set(r.data, r.start - offset);
    pos += r.length;
  }
  expect(pos).toBe(offset + length);
  return out;
}

/** A read that changes nothing but is a filter all the same: it must hide the descriptor. */
class ReadCountingVfs extends ForwardingVfs {
  override async open(p: string, options?: VfsOpenOptions): Promise<Storage> {
    const s = await this.inner.open(p, options);
    return new (class extends FilterStorage {
      override read(offset: number, into: Uint8Array): Promise<number> {
        return super.read(offset, into);
      }
    })(s);
  }
}

describe('Image.readFileRuns', () => {
  it('a cow chain over raw on host files: runs tile the range and their bytes equal readInto', async () => {
    const vfs = new NodeVfs();
    const base = path.join(dir, 'base.raw');
    const content = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i++) content[i] = (i * 31 + 5) & 0xff;
    fs.writeFileSync(base, content);
    const top = path.join(dir, 'top.cow');
    await createImage(top, { registry, vfs, format: 'cow', backing: { path: base, format: 'raw' } });
    const image = await openImage(top, { registry, vfs });
    // Overlay data in a few places, one of them zeros (data, not a hole).
    await image.write(64 * KiB, Buffer.alloc(8 * KiB, 0x77));
    await image.write(300 * KiB, Buffer.alloc(4 * KiB, 0));
    await image.write(512 * KiB + 512, Buffer.alloc(100 * KiB, 0x99));
    for (const [offset, length] of [
      [0, image.size],
      [60 * KiB + 3, 20 * KiB],
      [image.size - 5000, 5000],
      [299 * KiB, 7 * KiB],
    ] as const) {
      const expected = Buffer.alloc(length);
      await image.readInto(offset, expected);
      let seen: readonly HostFileRun[] = [];
      expect(image.fileRunsPossible).toBe(true);
      await image.readFileRuns(offset, length, async (runs) => {
        seen = runs;
      });
      expect(seen.some((r) => r.data !== undefined)).toBe(false);
      expect(bytesOf(seen, length, offset).equals(expected), `${offset}+${length}`).toBe(true);
      expect(seen.some((r) => r.fd !== undefined)).toBe(true);
    }
    await image.close();
  });

  it('top layers not on host files are not possible; a backing file that is not gives its bytes', async () => {
    const mem = new MemoryVfs();
    mem.put('/m.raw', new Uint8Array(64 * KiB).fill(1));
    const filtered = new ReadCountingVfs(new NodeVfs());
    const file = path.join(dir, 'f.raw');
    fs.writeFileSync(file, Buffer.alloc(64 * KiB, 2));
    for (const image of [
      await openImage('/m.raw', { registry, vfs: mem, format: 'raw' }),
      await openImage(file, { registry, vfs: filtered, format: 'raw' }),
    ]) {
      expect(image.fileRunsPossible).toBe(false);
      await image.close();
    }
    const plain = await openImage(file, { registry, vfs: new NodeVfs(), format: 'raw' });
    expect(plain.fileRunsPossible).toBe(true);
    await plain.close();
    // A cow overlay on a host file over a base behind a filter: the base's runs come as bytes.
    const top = path.join(dir, 'over-filtered.cow');
    await createImage(top, { registry, vfs: new NodeVfs(), format: 'cow', backing: { path: file, format: 'raw' } });
    const chainVfs = new (class extends ForwardingVfs {
      override async open(p: string, options?: VfsOpenOptions): Promise<Storage> {
        return p === file ? filtered.open(p, options) : this.inner.open(p, options);
      }
    })(new NodeVfs());
    const chain = await openImage(top, { registry, vfs: chainVfs });
    await chain.write(4 * KiB, Buffer.alloc(4 * KiB, 9));
    const expected = Buffer.alloc(64 * KiB);
    await chain.readInto(0, expected);
    let seen: readonly HostFileRun[] = [];
    await chain.readFileRuns(0, 64 * KiB, async (runs) => {
      seen = runs;
    });
    expect(seen.some((r) => r.data !== undefined)).toBe(true);
    expect(seen.some((r) => r.fd !== undefined)).toBe(true);
    expect(bytesOf(seen, 64 * KiB, 0).equals(expected)).toBe(true);
    await chain.close();
  });
});
