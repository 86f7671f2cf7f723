/** Spawning `blk serve` for tests, and running NBD client tools against it. */
import { type ChildProcess, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { blkSpawn, exited, waitFor } from './helpers.js';

export interface Served {
  child: ChildProcess;
  pidFile: string;
  /** The TCP port (from the -v "serving ... on HOST:PORT" line), when serving TCP. */
  port: number | undefined;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `blk serve -v --pid-file DIR/serve.pid ARGS` and waits until it accepts clients (pid file
 * written and the "serving" line logged).
 */
export async function startServe(dir: string, args: string[]): Promise<Served> {
  const pidFile = path.join(dir, `serve-${Math.random().toString(36).slice(2)}.pid`);
  const child = blkSpawn(['serve', '-v', '--pid-file', pidFile, ...args]);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exit = exited(child);
  let gone = false;
  void exit.then(() => {
    gone = true;
  });
  await waitFor(() => (fs.existsSync(pidFile) && /serving .* on /.test(stderr)) || gone, 20_000, 'blk serve to listen');
  if (gone) throw new Error(`blk serve exited: ${stderr}`);
  const m = stderr.match(/serving .* on [^\s]*:(\d+)/);
  return {
    child,
    pidFile,
    port: m ? Number(m[1]) : undefined,
    exit,
    stderr: () => stderr,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!gone) child.kill(signal);
      return exit;
    },
  };
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a client tool (Debian's, /usr/bin first: nbdsh needs the system python). */
export function tool(cmd: string, args: string[], timeout = 60_000): Run {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    timeout,
    env: { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Waits until the server has logged a line matching `what` (it logs after the client has gone). */
export async function logged(s: Served, what: string | RegExp): Promise<void> {
  const hit = () => (typeof what === 'string' ? s.stderr().includes(what) : what.test(s.stderr()));
  await waitFor(hit, 5000, `blk serve to log ${String(what)}`).catch(() => {
    throw new Error(`blk serve did not log ${String(what)}; it logged:\n${s.stderr()}`);
  });
}
