// What one 4 KiB read from the page cache costs through Node's fs.readSync
// and through @blk/native's pread, on the same file and the same random
// offsets, in one process: the figure behind "fs.readSync spends about
// 0.3 µs per call on its own checks and request wrapper" (bench/README.md).
//
//   node bench/experiments/pread-cost.mjs [FILE]     (after pnpm install; default: a 256 MiB temp file)
//
// Not a benchmark row: it explains why blk's storages take their system calls from the addon.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { MiB, prng } from '../lib/util.mjs';

const require = createRequire(import.meta.url);
const addon = require('../../packages/native/build/Release/blk_native.node');
const BS = 4096;
const N = 1_000_000;

let file = process.argv[2];
let dir;
if (!file) {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-pread-cost-'));
  file = path.join(dir, 'data.bin');
  const chunk = Buffer.alloc(MiB, 0x5a);
  const fd = fs.openSync(file, 'w');
  for (let i = 0; i < 256; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
}
try {
  const size = fs.statSync(file).size;
  const fd = fs.openSync(file, 'r');
  const warm = Buffer.alloc(MiB);
  for (let off = 0; off < size; off += MiB) fs.readSync(fd, warm, 0, MiB, off); // into the page cache
  const rnd = prng(1);
  const offsets = new Float64Array(N);
  for (let i = 0; i < N; i++) offsets[i] = (rnd() % Math.floor(size / BS)) * BS;
  const buf = new Uint8Array(BS);
  const loops = {
    'fs.readSync': () => {
      for (let i = 0; i < N; i++) fs.readSync(fd, buf, 0, BS, offsets[i]);
    },
    '@blk/native pread': () => {
      for (let i = 0; i < N; i++) addon.pread(fd, buf, offsets[i]);
    },
  };
  const best = {};
  for (let rep = 0; rep < 5; rep++) {
    for (const [name, loop] of Object.entries(loops)) {
      const t0 = performance.now();
      loop();
      best[name] = Math.min(best[name] ?? Infinity, ((performance.now() - t0) * 1000) / N);
    }
  }
  fs.closeSync(fd);
  console.log(`${N} random 4 KiB reads of a ${Math.round(size / MiB)} MiB file in the page cache, best of 5:`);
  for (const [name, us] of Object.entries(best)) console.log(`  ${name.padEnd(20)} ${us.toFixed(3)} µs per read`);
  console.log(`  difference           ${(best['fs.readSync'] - best['@blk/native pread']).toFixed(3)} µs per read`);
} finally {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}
