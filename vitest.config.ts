import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';
import * as os from 'node:os';

const src = (pkg: string, entry = 'index') =>
  fileURLToPath(new URL(`./packages/${pkg}/src/${entry}.ts`, import.meta.url));

// Time limits are hang detectors, sized for an idle 2-core machine and stretched by the load at the
// start of the run (load average per CPU, 1 to 8): under a load of 8-15 on 2 cores every test takes
// several times as long. BLK_TEST_TIME_SCALE overrides it; test workers inherit it (withTimeout and
// the CLI helpers in @blk/faults' testTimeScale()).
const timeScale =
  Number(process.env.BLK_TEST_TIME_SCALE) >= 1
    ? Number(process.env.BLK_TEST_TIME_SCALE)
    : Math.min(8, Math.max(1, Math.round((os.loadavg()[0] / os.availableParallelism()) * 10) / 10));
process.env.BLK_TEST_TIME_SCALE = String(timeScale);

export default defineConfig({
  resolve: {
    // Unit tests run against the TypeScript sources; CLI tests spawn the built bin.
    alias: [
      { find: /^@blk\/core\/portable$/, replacement: src('core', 'portable') },
      { find: /^@blk\/core$/, replacement: src('core') },
      { find: /^@blk\/raw$/, replacement: src('raw') },
      { find: /^@blk\/cow$/, replacement: src('cow') },
      { find: /^@blk\/qcow2$/, replacement: src('qcow2') },
      { find: /^@blk\/testkit$/, replacement: src('testkit') },
      { find: /^@blk\/images$/, replacement: src('images') },
      { find: /^@blk\/faults$/, replacement: src('faults') },
      { find: /^@blk\/native$/, replacement: src('native') },
      { find: /^@blk\/jobs$/, replacement: src('jobs') },
      { find: /^@blk\/nbd\/node$/, replacement: src('nbd', 'node') },
      { find: /^@blk\/nbd$/, replacement: src('nbd') },
      { find: /^@blk\/http\/node$/, replacement: src('http', 'node') },
      { find: /^@blk\/http$/, replacement: src('http') },
      { find: /^@blk\/stream\/node$/, replacement: src('stream', 'node') },
      { find: /^@blk\/stream$/, replacement: src('stream') },
      { find: /^@blk\/browser$/, replacement: src('browser') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    // A turn of the event loop around each test, so that tests which block it do not add up past
    // vitest's 60 s RPC limit (test/setup/event-loop-turns.ts says why).
    setupFiles: ['test/setup/event-loop-turns.ts'],
    testTimeout: Math.round(60_000 * timeScale),
    hookTimeout: Math.round(120_000 * timeScale),
    pool: 'forks',
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
