/**
 * The jobs' byte compares (src/bytes.ts): the same answers with the host's
 * Buffer (memcmp) and with the portable word loops, at every alignment and
 * length edge; and compareImages hands its data compares to the host's
 * memcmp where there is one (a JS loop over 64 MiB cost more than reading it).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DriverRegistry, MemoryVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { byteOps, type ByteOps } from '../src/bytes.js';

afterEach(() => {
  vi.restoreAllMocks();
});

/** `n` non-zero bytes, at byte offset `shift` of their ArrayBuffer (so that views start unaligned). */
function filled(n: number, shift: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n + shift).subarray(shift);
  for (let i = 0; i < n; i++) out[i] = ((i * 31 + seed) % 255) + 1;
  return out;
}

describe.each([
  ['host Buffer', byteOps(Buffer)],
  ['portable loops', byteOps(undefined)],
] as Array<[string, ByteOps]>)('bytes (%s)', (_name, ops) => {
  const lengths = [0, 1, 3, 63, 64, 255, 256, 257, 4095, 4096, 65536 + 5];
  const shifts = [0, 1, 4];

  it('firstDifference finds the first differing byte, or -1, at every alignment', async () => {
    const { firstDifference, sameBytes } = ops;
    for (const n of lengths) {
      for (const sa of shifts) {
        for (const sb of shifts) {
          const a = filled(n, sa);
          const b = filled(n, sb);
          expect(firstDifference(a, b)).toBe(-1);
          expect(sameBytes(a, b)).toBe(true);
          for (const at of new Set([0, n >> 1, n - 1].filter((x) => x >= 0 && x < n))) {
            const c = b.slice();
            c[at] = c[at]! ^ 0x80;
            expect(firstDifference(a, c)).toBe(at);
            expect(sameBytes(a, c)).toBe(false);
          }
        }
      }
    }
  });

  it('firstDifference of a buffer and its prefix is the prefix length', async () => {
    const { firstDifference, sameBytes } = ops;
    const a = filled(1000, 0);
    expect(firstDifference(a, a.subarray(0, 600))).toBe(600);
    expect(firstDifference(a.subarray(0, 600), a)).toBe(600);
    expect(sameBytes(a, a.subarray(0, 600))).toBe(false);
  });

  it('isZero and firstNonZero see one set bit anywhere', async () => {
    const { firstNonZero, isZero } = ops;
    for (const n of lengths) {
      for (const shift of shifts) {
        const z = new Uint8Array(n + shift).subarray(shift);
        expect(isZero(z)).toBe(true);
        expect(firstNonZero(z)).toBe(-1);
        for (const at of new Set([0, n >> 1, n - 1].filter((x) => x >= 0 && x < n))) {
          z[at] = 1;
          expect(isZero(z)).toBe(false);
          expect(firstNonZero(z)).toBe(at);
          z[at] = 0;
        }
      }
    }
    // A longer buffer than any seen before (the shared zeros grow).
    const big = new Uint8Array(3 * 1024 * 1024);
    expect(isZero(big)).toBe(true);
    big[big.length - 1] = 9;
    expect(firstNonZero(big)).toBe(big.length - 1);
  });
});

describe('compareImages and the host memcmp', () => {
  it('compares data with Buffer#equals, not a JS loop, and still finds the differing sector', async () => {
    const { compareImages } = await import('@blk/jobs');
    const registry = new DriverRegistry([rawDriver]);
    const vfs = new MemoryVfs();
    const data = filled(4 * 1024 * 1024, 0);
    vfs.put('/a.raw', data);
    vfs.put('/b.raw', data.slice());
    const open = (p: string) => openImage(p, { registry, vfs, readOnly: true, format: 'raw' });
    const equals = vi.spyOn(Buffer.prototype, 'equals');
    const a = await open('/a.raw');
    const b = await open('/b.raw');
    expect(await compareImages(a, b)).toEqual({ kind: 'identical', sizesDiffer: false });
    // One memcmp per 1 MiB read of each image.
    expect(equals.mock.calls.length).toBeGreaterThanOrEqual(4);
    await b.close();
    const changed = data.slice();
    changed[3 * 1024 * 1024 + 1000] ^= 1;
    vfs.put('/c.raw', changed);
    const c = await open('/c.raw');
    expect(await compareImages(a, c)).toMatchObject({ kind: 'content-mismatch', offset: 3 * 1024 * 1024 + 512 });
    await c.close();
    await a.close();
  });
});
