import { describe, it } from 'vitest';
import { DriverRegistry } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { chainSubject, checkReadAfterWrite } from '@blk/testkit';

// raw is byte-granular: no read-modify-write in the core, every byte is
// allocated data. The proof still covers unaligned ranges, the last bytes of
// an odd-sized image, flush and close/reopen.
const registry = new DriverRegistry([rawDriver]);

describe('raw images through the testkit', () => {
  it('reads back every write (odd size, random base content)', async () => {
    await checkReadAfterWrite(chainSubject({ registry, layers: [{ format: 'raw', size: 100_003 }] }), { numRuns: 200 });
  });

  it('reads back every write on an image that starts all zeros', async () => {
    await checkReadAfterWrite(chainSubject({ registry, layers: [{ format: 'raw', size: 8192, fill: 'none' }] }), { numRuns: 200 });
  });
});
