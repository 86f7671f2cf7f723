/**
 * checkChainMap on cow chains: map() over raw <- cow (<- cow) after random
 * write / write-zeroes / discard sequences on every layer tiles the image,
 * gives each run the depth of the shallowest layer holding it, and each run
 * reads as that layer holds it.
 */
import { describe, it } from 'vitest';
import { DriverRegistry, builtinDrivers } from '@blk/images';
import { checkChainMap } from '@blk/testkit';

/** The built-in formats (cow, raw), as @blk/images' default host has them. */
const registry = new DriverRegistry(builtinDrivers());

describe('map() over cow chains (testkit checkChainMap)', () => {
  it('cow over raw', async () => {
    await checkChainMap({ registry, formats: ['raw', 'cow'], numRuns: 40 });
  });

  it('cow over cow over raw', async () => {
    await checkChainMap({ registry, formats: ['raw', 'cow', 'cow'], numRuns: 40 });
  });
});
