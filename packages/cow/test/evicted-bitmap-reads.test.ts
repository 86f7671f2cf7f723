/**
 * Review of chain reads issued together (issue 14): with a one-chunk bitmap cache (chunks evicted
 * and reloaded under the walk: the synchronous blockStatus/read paths find them gone), concurrent
 * readInto/readMapped near 16 MiB chunk boundaries, writes, discards and flushes issued together
 * read exactly what a sequential model says.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, createImage, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '../src/index.js';

const registry = new DriverRegistry([cowDriver, rawDriver]);
const MiB = 1 << 20;
describe('tiny bitmap cache, concurrent chain reads and writes', () => {
  for (let round = 0; round < 6; round++)
    it(`round ${round}`, async () => {
      let seed = round * 31 + 7;
      const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
      const ri = (n: number) => Math.floor(rnd() * n);
      const size = 48 * MiB;
      const vfs = new MemoryVfs();
      const base = new Uint8Array(size);
      for (let i = 0; i < size; i += 512) base[i] = (i >> 9) & 0xff || 1;
      vfs.put('/base.raw', base.slice());
      await createImage('/top.cow', { registry, vfs, format: 'cow', backing: '/base.raw' });
      const model = base.slice();
      const top = await openImage('/top.cow', { registry, vfs, driverOptions: { bitmapCacheBytes: 4096 } });
      const ops: Array<Promise<void>> = [];
      const errors: string[] = [];
      for (let k = 0; k < 400; k++) {
        // near chunk boundaries (16 MiB) often
        const near = rnd() < 0.5 ? 16 * MiB * (1 + ri(2)) - ri(64 * 1024) : ri(size - 300 * 1024);
        const len = 512 * (1 + ri(400));
        const off = Math.min(size - len, Math.floor(near / 512) * 512);
        const kind = rnd();
        if (kind > 0.95) {
          ops.push(top.flush());
        } else if (kind < 0.3) {
          const d = new Uint8Array(len).fill(1 + ri(250));
          model.set(d, off);
          ops.push(top.write(off, d));
        } else if (kind < 0.4) {
          model.set(base.subarray(off, off + len), off);
          ops.push(
            top.discard(off, len).catch(() => {
              errors.push('discard');
            }),
          );
        } else {
          const want = model.slice(off, off + len);
          const into = new Uint8Array(len).fill(0xee);
          const p = kind < 0.7 ? top.readInto(off, into) : top.readMapped(off, into).then(() => undefined);
          ops.push(
            p.then(() => {
              if (Buffer.compare(into, want) !== 0)
                errors.push(`read ${k} ${off} ${len} ${kind < 0.7 ? 'readInto' : 'readMapped'}`);
            }),
          );
        }
        if (rnd() < 0.1) await Promise.all(ops.splice(0));
      }
      await Promise.all(ops);
      expect(errors).toEqual([]);
      const bm = (top as unknown as { driverImage: { bitmap: { loads: number; cachedBytes: number } } }).driverImage
        .bitmap;
      expect(bm.loads).toBeGreaterThan(20);
      // Runs that end exactly at a chunk boundary (the next chunk's first sector differs).
      for (const edge of [16 * MiB, 32 * MiB]) {
        await Promise.all(ops.splice(0));
        const d = new Uint8Array(64 * 1024).fill(0xab);
        await top.write(edge - d.length, d);
        model.set(d, edge - d.length);
        await top.discard(edge, 4096);
        model.set(base.subarray(edge, edge + 4096), edge);
      }
      await top.close();
      // Read-only: nothing dirty, so the one cached chunk really is evicted as reads cross boundaries.
      const ro = await openImage('/top.cow', {
        registry,
        vfs,
        readOnly: true,
        driverOptions: { bitmapCacheBytes: 4096 },
      });
      const reads: Array<Promise<void>> = [];
      for (let k = 0; k < 300; k++) {
        const len = 512 * (1 + ri(256));
        const off = Math.max(0, Math.min(size - len, 16 * MiB * (1 + ri(2)) - ri(len + 4096)));
        const into = new Uint8Array(len).fill(0xee);
        const p = rnd() < 0.5 ? ro.readInto(off, into) : ro.readMapped(off, into).then(() => undefined);
        reads.push(
          p.then(() => {
            if (Buffer.compare(into, model.subarray(off, off + len)) !== 0) errors.push(`read-only ${off} ${len}`);
          }),
        );
        if (rnd() < 0.2) await Promise.all(reads.splice(0));
      }
      await Promise.all(reads);
      expect(errors).toEqual([]);
      await ro.close();
    }, 30000);
});
