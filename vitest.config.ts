import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const src = (pkg: string, entry = 'index') => fileURLToPath(new URL(`./packages/${pkg}/src/${entry}.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    // Unit tests run against the TypeScript sources; CLI tests spawn the built bin.
    alias: [
      { find: /^@blk\/core\/portable$/, replacement: src('core', 'portable') },
      { find: /^@blk\/core$/, replacement: src('core') },
      { find: /^@blk\/raw$/, replacement: src('raw') },
      { find: /^@blk\/cow$/, replacement: src('cow') },
      { find: /^@blk\/testkit$/, replacement: src('testkit') },
      { find: /^@blk\/images$/, replacement: src('images') },
      { find: /^@blk\/faults$/, replacement: src('faults') },
      { find: /^@blk\/native$/, replacement: src('native') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
