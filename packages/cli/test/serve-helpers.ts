/** Spawning `blk serve` for tests, and running NBD client tools against it. */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { blkSpawn, exited, runTool, type ToolOptions, waitFor } from './helpers.js';

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

/** A spawned `blk serve` that has started to accept clients. */
export interface Spawned {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** Whether it has exited. */
  gone(): boolean;
}

/**
 * Spawns `blk ARGS` (a `blk serve` command line that writes `pidFile`), collects its stderr, and
 * waits up to 20 s until the pid file exists and `ready(stderr)` holds; throws with its stderr when
 * it exits first.
 */
export async function spawnServe(
  args: string[],
  pidFile: string,
  ready: (stderr: string) => boolean = () => true,
): Promise<Spawned> {
  const child = blkSpawn(args);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exit = exited(child);
  let gone = false;
  void exit.then(() => {
    gone = true;
  });
  await waitFor(() => (fs.existsSync(pidFile) && ready(stderr)) || gone, 20_000, 'blk serve to listen');
  if (gone) throw new Error(`blk serve exited: ${stderr}`);
  return { child, exit, stderr: () => stderr, gone: () => gone };
}

/**
 * Starts `blk serve -v --pid-file DIR/serve.pid ARGS` and waits until it accepts clients (pid file
 * written and the "serving" line logged).
 */
export async function startServe(dir: string, args: string[]): Promise<Served> {
  const pidFile = path.join(dir, `serve-${Math.random().toString(36).slice(2)}.pid`);
  const s = await spawnServe(['serve', '-v', '--pid-file', pidFile, ...args], pidFile, (stderr) =>
    /serving .* on /.test(stderr),
  );
  const m = s.stderr().match(/serving .* on [^\s]*:(\d+)/);
  return {
    child: s.child,
    pidFile,
    port: m ? Number(m[1]) : undefined,
    exit: s.exit,
    stderr: s.stderr,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!s.gone()) s.child.kill(signal);
      return s.exit;
    },
  };
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a client tool (Debian's, /usr/bin first: nbdsh needs the system python), 60 s unless
 * `o.timeout` says otherwise, not stretched on a busy machine; a tool that cannot run reports
 * (code null) rather than throws, unless `o.spawnError` says otherwise.
 */
export function tool(cmd: string, args: string[], o: ToolOptions = {}): Run {
  const r = runTool(cmd, args, {
    fixedTimeout: true,
    spawnError: 'ignore',
    ...o,
    env: { PATH: `/usr/bin:${process.env.PATH ?? ''}`, ...o.env },
  });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

/** Waits until the server has logged a line matching `what` (it logs after the client has gone). */
export async function logged(s: Served, what: string | RegExp): Promise<void> {
  const hit = () => (typeof what === 'string' ? s.stderr().includes(what) : what.test(s.stderr()));
  await waitFor(hit, 5000, `blk serve to log ${String(what)}`).catch(() => {
    throw new Error(`blk serve did not log ${String(what)}; it logged:\n${s.stderr()}`);
  });
}
