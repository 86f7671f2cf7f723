#!/usr/bin/env node
/**
 * The long NBD fuzz run: packages/nbd/test/fuzz.test.ts (the CI fuzzer: malformed handshakes and
 * requests against a model of the image) over consecutive seeds, 100,000 inputs per vitest
 * process, until the total is reached or the time is up.
 *
 *   node scripts/fuzz-nbd.mjs [--inputs 10000000] [--minutes 0] [--seed 1]
 *
 * --minutes N stops starting new slices after N minutes (0: no limit). Exits non-zero at the first
 * failing slice (its seed replays it: BLK_NBD_FUZZ_SEED=S pnpm exec vitest run packages/nbd/test/fuzz.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 && args[at + 1] !== undefined ? Number(args[at + 1]) : fallback;
};
const inputs = opt('inputs', Number(process.env.BLK_NBD_FUZZ_INPUTS ?? 10_000_000));
const minutes = opt('minutes', 0);
let seed = opt('seed', Number(process.env.BLK_NBD_FUZZ_SEED ?? 1));
const SLICE = 100_000;
const started = Date.now();
let done = 0;
while (done < inputs && (minutes === 0 || Date.now() - started < minutes * 60_000)) {
  const n = Math.min(SLICE, inputs - done);
  const r = spawnSync('pnpm', ['exec', 'vitest', 'run', '--maxWorkers=1', 'packages/nbd/test/fuzz.test.ts'], {
    cwd: root,
    env: { ...process.env, BLK_NBD_FUZZ_INPUTS: String(n), BLK_NBD_FUZZ_SEED: String(seed) },
    encoding: 'utf8',
  });
  const line = `${r.stdout}`.split('\n').find((l) => l.startsWith('nbd fuzz:'));
  console.log(`seed ${seed}: ${line ?? '(no summary)'}`);
  if (r.status !== 0) {
    console.error(r.stdout.slice(-4000), r.stderr.slice(-2000));
    console.error(`FAILED at seed ${seed}`);
    process.exit(1);
  }
  done += n;
  seed++;
}
console.log(`nbd fuzz: ${done} inputs over seeds in ${((Date.now() - started) / 1000).toFixed(0)} s, no failure`);
