/**
 * checkChainMap: map() over 2-3 layer chains built by random write /
 * write-zeroes / discard sequences tiles the image with runs whose depth is
 * the shallowest layer holding them and whose bytes are that layer's.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, type BlockDriver, type BlockStatus } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { checkChainMap } from '@blk/testkit';
import { overlayDriver } from '../../core/test/fixtures/overlay-driver.js';

const registry = new DriverRegistry([overlayDriver, rawDriver]);

describe('checkChainMap', () => {
  it('holds for ovl over raw', async () => {
    await checkChainMap({ registry, formats: ['raw', 'ovl'], numRuns: 60 });
  });

  it('holds for ovl over ovl over raw', async () => {
    await checkChainMap({ registry, formats: ['raw', 'ovl', 'ovl'], numRuns: 60 });
  });

  it('catches a driver whose block status calls every run of the middle layer unallocated', async () => {
    const liar: BlockDriver = {
      ...overlayDriver,
      async open(storage, options) {
        const image = await overlayDriver.open(storage, options);
        const status = image.blockStatus.bind(image);
        // Only the middle layer lies (it is the one whose path names layer1).
        if (storage.path.includes('layer1')) {
          image.blockStatus = async (o, n): Promise<BlockStatus> =>
            ({ ...(await status(o, n)), allocated: false, hostOffset: undefined }) as BlockStatus;
        }
        return image;
      },
    };
    const bad = new DriverRegistry([liar, rawDriver]);
    await expect(
      checkChainMap({ registry: bad, formats: ['raw', 'ovl', 'ovl'], numRuns: 100, seed: 1 }),
    ).rejects.toThrow(/checkChainMap\(ovl>ovl>raw\): .*map\(\) run .*(reads data|read through the top)/);
  });
});
