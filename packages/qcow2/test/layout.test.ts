import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { maxRefcount, readRefcount, refcountsPerBlock, writeRefcount } from '../src/layout.js';

describe('qcow2 refcount entry codec', () => {
  it('packs sub-byte entries from the least significant bits, as QEMU does', () => {
    const block = new Uint8Array(2);
    writeRefcount(block, 0, 0, 1);
    writeRefcount(block, 3, 0, 1);
    expect(block[0]).toBe(0b1001);
    const two = new Uint8Array(1);
    writeRefcount(two, 1, 1, 3);
    expect(two[0]).toBe(0b1100);
    const four = new Uint8Array(1);
    writeRefcount(four, 1, 2, 5);
    expect(four[0]).toBe(0x50);
  });

  it('stores 16-bit entries big-endian (the default width)', () => {
    const block = new Uint8Array(4);
    writeRefcount(block, 1, 4, 0x1234);
    expect([...block]).toEqual([0, 0, 0x12, 0x34]);
  });

  it('round-trips every width without touching neighbours', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 6 }), fc.nat(63), fc.nat(), (order, index, raw) => {
        const block = new Uint8Array(1024).fill(0xa5); // room for entry index + 1 = 64 of 8 bytes
        const before = readRefcount(block, index + 1, order);
        const value = raw % (Math.min(maxRefcount(order), 2 ** 31) + 1);
        writeRefcount(block, index, order, value);
        expect(readRefcount(block, index, order)).toBe(value);
        expect(readRefcount(block, index + 1, order)).toBe(before);
      }),
    );
  });

  it('refuses a value wider than the entry', () => {
    expect(() => writeRefcount(new Uint8Array(1), 0, 0, 2)).toThrow(RangeError);
    expect(refcountsPerBlock(16, 4)).toBe(32768);
  });
});
