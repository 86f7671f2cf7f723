/**
 * Finding and running the real peer programs (uml-utilities, user-mode-linux,
 * qemu-utils, nbdkit, libnbd-bin) for the interop suite.
 *
 * A missing peer makes a test SKIP with a message naming the Debian package
 * (never a silent pass). Set BLK_INTEROP_REQUIRE=1 (CI does, once .ci/run has
 * installed the peers) to turn every such skip into a failure.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface Peer {
  /** Executable name. */
  bin: string;
  /** Debian package that ships it. */
  pkg: string;
}

export const PEERS = {
  umlMkcow: { bin: 'uml_mkcow', pkg: 'uml-utilities' },
  umlMoo: { bin: 'uml_moo', pkg: 'uml-utilities' },
  linuxUml: { bin: 'linux.uml', pkg: 'user-mode-linux' },
  qemuImg: { bin: 'qemu-img', pkg: 'qemu-utils' },
  qemuIo: { bin: 'qemu-io', pkg: 'qemu-utils' },
  nbdkit: { bin: 'nbdkit', pkg: 'nbdkit' },
  nbdinfo: { bin: 'nbdinfo', pkg: 'libnbd-bin' },
  nbdcopy: { bin: 'nbdcopy', pkg: 'libnbd-bin' },
  /** Used by the UML tests to bound every run. */
  timeout: { bin: 'timeout', pkg: 'coreutils' },
  cp: { bin: 'cp', pkg: 'coreutils' },
} as const satisfies Record<string, Peer>;

const found = new Map<string, string | undefined>();

/** Absolute path of an executable on PATH (plus the sbin directories), or undefined. */
export function which(bin: string): string | undefined {
  if (found.has(bin)) return found.get(bin);
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  let hit: string | undefined;
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, bin);
    try {
      accessSync(candidate, constants.X_OK);
      hit = candidate;
      break;
    } catch {
      // not here
    }
  }
  found.set(bin, hit);
  return hit;
}

/** Why the given peers cannot be used here (one line), or undefined when all are installed. */
export function missingPeers(...peers: Peer[]): string | undefined {
  const missing = peers.filter((p) => which(p.bin) === undefined);
  if (missing.length === 0) return undefined;
  const pkgs = [...new Set(missing.map((p) => p.pkg))];
  return (
    `${missing.map((p) => p.bin).join(', ')} not found on PATH: install the Debian package(s) `
    + `${pkgs.join(' ')} (apt-get install -y ${pkgs.join(' ')})`
  );
}

/** True when skips must become failures (CI with the peers installed). */
export function skipsAreFailures(): boolean {
  return process.env.BLK_INTEROP_REQUIRE === '1';
}

/** The part of vitest's test context we need. */
export interface SkipContext {
  skip: (note?: string) => never;
}

/**
 * Skips the running test (loudly) when `reason` is set; with
 * BLK_INTEROP_REQUIRE=1 it fails instead.
 */
export function skipUnless(ctx: SkipContext, reason: string | undefined): void {
  if (reason === undefined) return;
  if (skipsAreFailures()) throw new Error(`interop peer unavailable and BLK_INTEROP_REQUIRE=1: ${reason}`);
  console.warn(`[interop] SKIP: ${reason}`);
  ctx.skip(reason);
}

/** Skips the running test unless every peer is installed. */
export function needPeers(ctx: SkipContext, ...peers: Peer[]): void {
  skipUnless(ctx, missingPeers(...peers));
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time in milliseconds. */
  ms: number;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the process (SIGKILL) after this many milliseconds. Default 60 s. */
  timeoutMs?: number;
  input?: string | Uint8Array;
}

/** Runs a program without a shell and collects its output. Never rejects for a non-zero exit. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        ms: Date.now() - t0,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

/** Runs a program and throws (with its output) unless it exits 0. */
export async function runOk(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

/** Installed version of a Debian package (dpkg-query), or undefined. */
export function debVersion(pkg: string): string | undefined {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own field syntax, not a template literal
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout ? r.stdout.trim() : undefined;
}

/** One line per peer with the versions found here (for logs and the README). */
export function peerVersions(): string[] {
  const lines: string[] = [];
  const line = (label: string, cmd: string, args: string[]) => {
    if (!which(cmd)) return `${label}: not installed`;
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return `${label}: ${(r.stdout || r.stderr).split('\n')[0]!.trim()}`;
  };
  for (const pkg of ['uml-utilities', 'user-mode-linux', 'qemu-utils']) {
    lines.push(`${pkg} ${debVersion(pkg) ?? '(no dpkg record)'}`);
  }
  lines.push(line('linux.uml --version', 'linux.uml', ['--version']));
  lines.push(line('qemu-img --version', 'qemu-img', ['--version']));
  lines.push(line('qemu-io --version', 'qemu-io', ['--version']));
  return lines;
}
