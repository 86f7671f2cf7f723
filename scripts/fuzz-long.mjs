#!/usr/bin/env node
/**
 * The long fuzz run: 1,000,000 hostile inputs (BLK_FUZZ_INPUTS) through the
 * probe and open paths of every driver, split over parallel jobs with
 * consecutive seeds. Runs the same test as CI (test/fuzz-probe-open.test.ts),
 * only more of it.
 *
 *   node scripts/fuzz-long.mjs [--inputs 1000000] [--jobs 2] [--seed 1]
 *
 * Exits non-zero if any job found a failure; prints each job's FIGURE line
 * and the total count and time.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 && args[at + 1] !== undefined ? Number(args[at + 1]) : fallback;
};
const inputs = opt('inputs', Number(process.env.BLK_FUZZ_INPUTS ?? 1_000_000));
const jobs = Math.max(1, opt('jobs', 2));
const seed = opt('seed', Number(process.env.BLK_FUZZ_SEED ?? 1));

const started = Date.now();
/** Inputs per vitest process: long single tests make vitest's worker RPC time out under load. */
const SLICE = 100_000;

const runJob = async (k) => {
  const share = Math.floor(inputs / jobs) + (k < inputs % jobs ? 1 : 0);
  let code = 0;
  for (let first = 0; first < share; first += SLICE) {
    const r = await runSlice(k, first, Math.min(SLICE, share - first));
    if (r.code !== 0) code = r.code;
  }
  return { code, share };
};

const runSlice = (k, first, count) =>
  new Promise((resolve) => {
    const share = count;
    const child = spawn(
      join(root, 'node_modules/.bin/vitest'),
      ['run', 'test/fuzz-probe-open.test.ts', '-t', 'inputs give typed errors only'],
      {
        cwd: root,
        env: {
          ...process.env,
          BLK_FUZZ_INPUTS: String(count),
          BLK_FUZZ_FIRST: String(first),
          BLK_FUZZ_SEED: String(seed + k),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.on('close', (code) => {
      const figure = out.split('\n').find((l) => l.startsWith('FIGURE fuzz'));
      const failures = [
        ...new Set(
          out
            .split('\n')
            .map((l) => l.match(/BLK_FUZZ_SEED=\d+ input #\d+[^"]*/)?.[0])
            .filter(Boolean),
        ),
      ];
      console.log(
        `job ${k} (seed ${seed + k}, inputs #${first}..#${first + share - 1}): exit ${code}\n  ${figure ?? out.slice(-4000)}`
          + (failures.length ? `\n  failures:\n    ${failures.slice(0, 20).join('\n    ')}` : '')
          + (code !== 0 && failures.length === 0 ? `\n  output tail:\n${out.slice(-3000)}` : ''),
      );
      resolve({ code, share });
    });
  });

const results = await Promise.all(Array.from({ length: jobs }, (_, k) => runJob(k)));
const seconds = (Date.now() - started) / 1000;
const failed = results.filter((r) => r.code !== 0).length;
console.log(
  `FIGURE fuzz-long: ${inputs} inputs in ${seconds.toFixed(0)} s over ${jobs} jobs (seeds ${seed}..${seed + jobs - 1}); ${failed} job(s) failed`,
);
process.exit(failed === 0 ? 0 : 1);
