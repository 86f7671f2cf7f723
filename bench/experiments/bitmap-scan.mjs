// EXPERIMENT (not blk code): how fast Node can walk the allocation bitmap of a
// UML COW v3 file when the scan streams it: 1 MiB windows read into one reused
// buffer, each 4 KiB block compared (memcmp) against all-0 / all-1, bits looked
// at only where the run changes. Prints the runs found, the time and peak RSS.
// This is the design proposed for @blk/cow's BitmapCache.findRun over long
// ranges (see bench/README.md, "map").
//   node bench/experiments/bitmap-scan.mjs FILE.cow
import * as fs from 'node:fs';
const t0 = performance.now();
const path = process.argv[2];
const fd = fs.openSync(path, 'r');
const h = Buffer.alloc(32);
fs.readSync(fd, h, 0, 32, 0);
const size = Number(h.readBigUInt64BE(12));
const sectors = size / 512,
  bitmapOffset = 8192,
  bitmapLen = Math.ceil(sectors / 8);
const WIN = 1 << 20,
  BLK = 4096;
const win = Buffer.allocUnsafe(WIN),
  zeros = Buffer.alloc(BLK),
  ones = Buffer.alloc(BLK, 0xff);
const runs = [];
let cur = false,
  runStart = 0;
for (let off = 0; off < bitmapLen; off += WIN) {
  const n = fs.readSync(fd, win, 0, Math.min(WIN, bitmapLen - off), bitmapOffset + off);
  for (let b = 0; b < n; b += BLK) {
    const len = Math.min(BLK, n - b);
    const same = cur ? ones : zeros;
    if (len === BLK && win.compare(same, 0, BLK, b, b + BLK) === 0) continue;
    for (let i = b; i < b + len; i++) {
      const byte = win[i];
      if (byte === (cur ? 0xff : 0)) continue;
      for (let k = 0; k < 8; k++) {
        const bit = (byte >> k) & 1;
        if (!!bit !== cur) {
          const s = (off + i) * 8 + k;
          if (cur) runs.push([runStart, s - runStart]);
          else runStart = s;
          cur = !cur;
        }
      }
    }
  }
}
if (cur) runs.push([runStart, sectors - runStart]);
console.log(
  JSON.stringify({
    runs: runs.length,
    ms: +(performance.now() - t0).toFixed(1),
    rssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
