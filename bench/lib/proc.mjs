// Child processes: in-process workloads (bench/lib/child.mjs) and CLI commands,
// with wall time and peak RSS.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./child.mjs', import.meta.url));
const GNU_TIME = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

/** Runs a workload of workloads.mjs in a fresh node; returns its result (throws on failure). */
// Other builds may be rewriting packages/*/dist (tsup --clean) while the bench
// runs; a run that fails because a module is missing is retried a few times.
const MISSING = /ERR_MODULE_NOT_FOUND|Cannot find module|Cannot find package/;
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
function retrying(fn) {
  for (let attempt = 1; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if (attempt >= 4 || !MISSING.test(String(err?.message))) throw err;
      process.stderr.write(`    (a package's dist was missing, rebuilt meanwhile? retrying in 3 s)\n`);
      sleep(3000);
    }
  }
}

export function runWorkload(params, options = {}) {
  return retrying(() => runWorkloadOnce(params, options));
}

function runWorkloadOnce(params, { nodeArgs = [], env } = {}) {
  const r = spawnSync(process.execPath, [...nodeArgs, CHILD, JSON.stringify(params)], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: env ? { ...process.env, ...env } : process.env,
  });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  let parsed;
  try {
    parsed = JSON.parse(line);
  } catch {
    /* below */
  }
  if (!parsed)
    throw new Error(
      `workload ${params.task}/${params.target} died (status ${r.status}, signal ${r.signal}): ${(r.stderr ?? '').slice(-2000)}`,
    );
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.result;
}

/**
 * Runs a command; returns { seconds, maxRssKiB, stdout, stderr, status }.
 * With `rss`, wraps it in GNU time (%M) for peak RSS; otherwise times it bare.
 */
export function runCommand(argv, options = {}) {
  return retrying(() => runCommandOnce(argv, options));
}

function runCommandOnce(argv, { rss = true, capture = false, cwd } = {}) {
  let cmd = argv[0];
  let args = argv.slice(1);
  let rssFile;
  if (rss && GNU_TIME) {
    rssFile = `${os.tmpdir()}/blk-bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`;
    args = ['-f', '%M', '-o', rssFile, cmd, ...args];
    cmd = GNU_TIME;
  }
  const t0 = performance.now();
  const r = spawnSync(cmd, args, {
    encoding: capture ? 'utf8' : undefined,
    maxBuffer: 256 << 20,
    cwd,
    stdio: ['ignore', capture ? 'pipe' : 'ignore', 'pipe'],
  });
  const seconds = (performance.now() - t0) / 1000;
  let maxRssKiB;
  if (rssFile) {
    try {
      maxRssKiB = Number(fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop());
    } catch {
      /* none */
    }
    fs.rmSync(rssFile, { force: true });
  }
  const stderr = String(r.stderr ?? '');
  if (r.error) throw new Error(`${argv.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(`${argv.join(' ')} exited with ${r.status ?? r.signal}: ${stderr.slice(-1500)}`);
  }
  return { seconds, maxRssKiB, stdout: capture ? r.stdout : undefined, stderr, status: r.status };
}

export const hasGnuTime = () => GNU_TIME !== undefined;
