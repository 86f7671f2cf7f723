/**
 * The proofs are only worth something if they fail on broken drivers. Each
 * test here breaks a working driver in one known way and expects the proof
 * to reject; shrinking is skipped (endOnFailure) to keep them fast.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, type BlockDriver, type DriverImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { chainSubject, checkConcurrentWrites, checkReadAfterWrite, type ProofOptions } from '@blk/testkit';
import { tinyDriver } from '../../../test/fixtures/custom-driver.js';
import { overlayDriver } from '../../core/test/fixtures/overlay-driver.js';

// Run counts go in fcParameters, which win over BLK_PROPERTY_RUNS: a small override must not let a bug slip through here.
const fast: ProofOptions = { fcParameters: { numRuns: 200, endOnFailure: true } };

/** `base` under another name, its opened images patched by `patch`. */
function mutant(base: BlockDriver, name: string, patch: (inner: DriverImage) => Partial<DriverImage>): BlockDriver {
  return {
    ...base,
    name,
    probe: () => 0,
    async open(storage, options) {
      const inner = await base.open(storage, options);
      const wrapped: DriverImage = {
        driver: inner.driver,
        requestAlignment: inner.requestAlignment ?? inner.sectorSize,
        size: inner.size,
        backing: inner.backing,
        read: (offset, into, below) => inner.read(offset, into, below),
        write: (offset, data) => inner.write!(offset, data),
        blockStatus: (offset, length) => inner.blockStatus(offset, length),
        flush: () => inner.flush(),
        close: () => inner.close(),
        info: () => inner.info(),
      };
      return Object.assign(wrapped, patch(inner));
    },
  };
}

function single(driver: BlockDriver, size: number, fill: 'random' | 'none' = 'random') {
  return chainSubject({
    registry: new DriverRegistry([rawDriver, driver]),
    layers: [{ format: driver.name, size, fill }],
  });
}

describe('checkReadAfterWrite rejects', () => {
  it('a driver that drops writes past 8 KiB', async () => {
    const lossy = mutant(rawDriver, 'lossy', (inner) => ({
      write: async (offset, data) => {
        if (offset < 8192) await inner.write!(offset, data);
      },
    }));
    await expect(checkReadAfterWrite(single(lossy, 40 * 512), fast)).rejects.toThrow(/differ/);
  });

  it('a driver that reads one sector too far for every offset but 0', async () => {
    const shifted = mutant(tinyDriver, 'shifted', (inner) => ({
      read: (offset, into, below) =>
        inner.read(offset === 0 || offset + into.length >= inner.size ? offset : offset + 4096, into, below),
    }));
    await expect(checkReadAfterWrite(single(shifted, 8 * 4096), fast)).rejects.toThrow(/differ/);
  });

  it('a driver that forgets on reopen which sectors it wrote', async () => {
    // tiny knows its data end from the file length; this one believes the file empty at every open.
    const forgetful: BlockDriver = {
      ...tinyDriver,
      name: 'forgetful',
      probe: () => 0,
      async open(storage, options) {
        const inner = (await tinyDriver.open(storage, options)) as DriverImage & { dataEnd: number };
        inner.dataEnd = 0;
        return inner;
      },
    };
    // Seen either as wrong bytes or as a status that calls written data unallocated zeros.
    await expect(checkReadAfterWrite(single(forgetful, 6 * 4096, 'none'), fast)).rejects.toThrow(/differ|zeros|depth/);
  });

  it('a driver whose zeroing claims success without zeroing (exercised by writeZeroes commands)', async () => {
    const idle = mutant(rawDriver, 'idle-zeroes', () => ({ writeZeroes: async () => true }));
    await expect(checkReadAfterWrite(single(idle, 20 * 512), fast)).rejects.toThrow(/differ/);
  });

  it("a driver whose discard leaves the data while it says discarded ranges read as zeros (discard 'zero')", async () => {
    const sticky = mutant(rawDriver, 'sticky-discard', () => ({ discard: async () => undefined }));
    await expect(checkReadAfterWrite(single(sticky, 20 * 512), fast)).rejects.toThrow(/differ/);
  });

  it("an overlay whose discarded sectors read zeros instead of the backing file (discard 'backing')", async () => {
    // ovl's discard clears bits (the sectors fall through again); this one also zeroes what they read.
    const zeroing = mutant(overlayDriver, 'zeroing-discard', (inner) => {
      const gone: Array<[number, number]> = [];
      return {
        discard: async (offset: number, length: number) => {
          await inner.discard!(offset, length);
          gone.push([offset, offset + length]);
        },
        write: async (offset: number, data: Uint8Array) => {
          await inner.write!(offset, data);
          for (const g of gone) if (offset < g[1] && offset + data.length > g[0]) g[1] = g[0];
        },
        read: async (offset: number, into: Uint8Array, below) => {
          await inner.read(offset, into, below);
          for (const [a, b] of gone) {
            const from = Math.max(a, offset),
              to = Math.min(b, offset + into.length);
            if (from < to) into.fill(0, from - offset, to - offset);
          }
        },
      };
    });
    const registry = new DriverRegistry([rawDriver, overlayDriver, zeroing]);
    const subject = chainSubject({
      registry,
      layers: [{ format: 'raw', size: 16_384 }, { format: 'zeroing-discard' }],
    });
    await expect(checkReadAfterWrite(subject, fast)).rejects.toThrow(/differ/);
  });

  it('a driver whose block status calls written data unallocated zeros', async () => {
    const liar = mutant(rawDriver, 'liar', () => ({
      blockStatus: async (_offset, length) => ({ allocated: false, zero: true, length }),
    }));
    await expect(checkReadAfterWrite(single(liar, 20 * 512), fast)).rejects.toThrow(/zeros|depth/);
  });

  it('an overlay that reads zeros instead of falling through to its backing file', async () => {
    const opaque = mutant(overlayDriver, 'opaque', (inner) => ({
      read: (offset, into) =>
        inner.read(offset, into, async (_o, part) => {
          part.fill(0);
        }),
    }));
    const registry = new DriverRegistry([rawDriver, overlayDriver, opaque]);
    const subject = chainSubject({ registry, layers: [{ format: 'raw', size: 16_384 }, { format: 'opaque' }] });
    await expect(checkReadAfterWrite(subject, fast)).rejects.toThrow(/differ/);
  });
});

describe('checkConcurrentWrites rejects', () => {
  it('an overlay whose bitmap writes race (each carries a snapshot, landing in any order)', async () => {
    const registry = new DriverRegistry([rawDriver, overlayDriver]);
    const subject = chainSubject({
      registry,
      layers: [
        { format: 'raw', size: 32 * 1024 },
        { format: 'ovl', openDriverOptions: { racyBitmap: true } },
      ],
    });
    // In sequence the bug cannot show: every bitmap write lands before the next starts...
    await checkReadAfterWrite(subject, { numRuns: 50 });
    // ...but with storage operations completing out of order, a bit set by one write is lost.
    // Packing requests around 512-byte slots finds it in ~1 run of 20; 400 runs make a miss vanishingly rare.
    await expect(
      checkConcurrentWrites(subject, { fcParameters: { numRuns: 400, endOnFailure: true }, alignments: [512] }),
    ).rejects.toThrow(/differ/);
  });
});
