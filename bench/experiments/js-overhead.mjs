// What blk's own code costs per random 4 KiB read through a COW chain, with
// the system calls taken out: the image's storages get PositionalSyscalls
// whose pread does nothing, so what remains is Image.readInto, the COW
// bitmap lookup, the fall-through to the raw base and the `await` a caller
// pays. Compared with a bare loop doing one no-op call and one await.
//
//   node bench/experiments/js-overhead.mjs        (after pnpm run build)
//
// Not a benchmark row: it explains the rand-read rows (bench/README.md).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadBlk } from '../lib/blk.mjs';
import { writeCow } from '../lib/cowfile.mjs';
import { MiB, halfRuns, prng } from '../lib/util.mjs';

const SIZE = 256 * MiB;
const BS = 4096;
const N = 2_000_000;

const { openImage, NodeVfs } = await loadBlk();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-js-overhead-'));
try {
  const base = path.join(dir, 'base.raw');
  fs.closeSync(fs.openSync(base, 'w'));
  fs.truncateSync(base, SIZE);
  const cow = path.join(dir, 'half.cow');
  writeCow(cow, { size: SIZE, backingPath: base, runs: halfRuns(SIZE), fill: (buf) => buf.fill(1) });

  // The header and the bitmap must be read for real (a no-op pread reads zeros: the file would
  // probe as raw and the chain would never be walked); once every bitmap chunk is cached, the
  // data reads are no-ops.
  let live = true;
  const noop = {
    pread: (fd, into, position) => (live ? fs.readSync(fd, into, 0, into.length, position) : into.length),
    pwrite: (_fd, data) => data.length,
  };
  const image = await openImage(cow, { readOnly: true, format: 'cow', vfs: new NodeVfs({ syscalls: noop }) });
  if (image.format !== 'cow' || image.backing === undefined)
    throw new Error(`opened as ${image.format}, not a cow chain`);
  const warm = new Uint8Array(MiB);
  for (let at = 0; at < SIZE; at += MiB) await image.readInto(at, warm);
  live = false;
  const rnd = prng(1);
  const offsets = new Float64Array(N);
  for (let i = 0; i < N; i++) offsets[i] = (rnd() % (SIZE / BS)) * BS;
  const buf = new Uint8Array(BS);
  const resolved = Promise.resolve();

  const loops = {
    'bare loop: one no-op call + one await': async () => {
      for (let i = 0; i < N; i++) {
        noop.pread(0, buf, offsets[i]);
        await resolved;
      }
    },
    'blk: await image.readInto (no-op syscalls)': async () => {
      for (let i = 0; i < N; i++) await image.readInto(offsets[i], buf);
    },
    'blk: image.readInto, not awaited': async () => {
      for (let i = 0; i < N; i++) image.readInto(offsets[i], buf);
    },
  };
  const best = {};
  for (let rep = 0; rep < 5; rep++) {
    for (const [name, loop] of Object.entries(loops)) {
      const t0 = performance.now();
      await loop();
      const us = ((performance.now() - t0) * 1000) / N;
      best[name] = Math.min(best[name] ?? Infinity, us);
    }
  }
  console.log(
    `${N} random 4 KiB reads of a ${SIZE / MiB} MiB COW (half in the overlay, half falling through), best of 5:`,
  );
  for (const [name, us] of Object.entries(best)) console.log(`  ${name.padEnd(44)} ${us.toFixed(3)} µs per read`);
  await image.close();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
