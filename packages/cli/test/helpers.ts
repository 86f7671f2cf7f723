/**
 * Test helpers: every CLI test runs the built executable as a user would
 * (`node packages/cli/dist/blk.js ...` in a child process).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect } from 'vitest';
import { testTimeScale } from '@blk/faults';

export const CLI_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = path.resolve(CLI_DIR, '../..');
export const BLK = path.join(CLI_DIR, 'dist', 'blk.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

function stale(): 'none' | 'cli' | 'all' {
  const images = path.join(REPO, 'packages', 'images', 'dist', 'index.js');
  if (!fs.existsSync(images)) return 'all';
  if (!fs.existsSync(BLK)) return 'cli';
  // The bin carries copies of the @blk packages (tsup.bin.config.ts): a rebuilt one makes it stale too.
  const inputs = [
    path.join(CLI_DIR, 'src'),
    ...['core', 'raw', 'cow', 'native', 'images'].map((p) => path.join(REPO, 'packages', p, 'dist')),
  ];
  const newest = Math.max(...inputs.filter((d) => fs.existsSync(d)).map(newestMtime));
  return fs.statSync(BLK).mtimeMs < newest ? 'cli' : 'none';
}

/**
 * Builds the CLI when dist/ is missing or older than src/ or the bundled
 * packages' dist/ (and the packages it depends on when @blk/images has no
 * dist yet). Test files run in
 * parallel: a lock directory makes one of them build while the others wait.
 */
export function ensureBuilt(): void {
  if (stale() === 'none') return;
  const lock = path.join(CLI_DIR, '.build-lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      // A lock left by a killed run is stale after two minutes.
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 120_000) fs.rmdirSync(lock);
      } catch {
        // Gone meanwhile.
      }
      if (Date.now() > deadline) throw new Error('timed out waiting for another test file to build the CLI');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  try {
    const what = stale();
    if (what === 'all') {
      execFileSync('pnpm', ['--filter', '@blk/cli...', 'run', 'build'], { cwd: REPO, stdio: 'pipe' });
    } else if (what === 'cli') {
      execFileSync('pnpm', ['run', 'build'], { cwd: CLI_DIR, stdio: 'pipe' });
    }
  } finally {
    fs.rmdirSync(lock);
  }
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  input?: string;
  env?: Record<string, string | undefined>;
  timeout?: number;
}

/** Runs `blk ARGS...` and waits for it. */
export function blk(args: string[], o: RunOptions = {}): Result {
  const env = { ...process.env, ...o.env };
  delete env.BLK_DEBUG;
  if (o.env?.BLK_DEBUG !== undefined) env.BLK_DEBUG = o.env.BLK_DEBUG;
  const r = spawnSync(process.execPath, [BLK, ...args], {
    cwd: o.cwd,
    input: o.input ?? '',
    encoding: 'utf8',
    env,
    timeout: Math.round((o.timeout ?? 60_000) * testTimeScale()), // a busy machine stretches every run
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `blk ARGS...` without waiting (for interruption tests). */
export function blkSpawn(args: string[], o: RunOptions = {}): ChildProcess {
  return spawn(process.execPath, [BLK, ...args], { cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh directory under the system's temporary directory. */
export function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `blk-cli-${label}-`));
}

/** A test file's scratch directory (see scratchDir). */
export interface ScratchDir {
  /** Its path: made in beforeAll, so read it in hooks and tests, not when the file loads. */
  readonly dir: string;
  /** `name` inside it. */
  p(name: string): string;
}

/**
 * The set-up most CLI test files share: beforeAll builds the CLI when it is stale (ensureBuilt) and
 * makes a fresh tempDir(label); afterAll removes it, when it was made.
 */
export function scratchDir(label: string): ScratchDir {
  let dir: string | undefined;
  beforeAll(() => {
    ensureBuilt();
    dir = tempDir(label);
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  const get = (): string => {
    if (dir === undefined) throw new Error(`the ${label} scratch directory is made in beforeAll: read it later`);
    return dir;
  };
  return {
    get dir() {
      return get();
    },
    p: (name) => path.join(get(), name),
  };
}

/** qemu-iotests' _filter_qemu_io: hides the timing of the report lines and qemu-io's prompt. */
export function filterQemuIo(text: string): string {
  return text
    .replace(/qemu-io> /g, '')
    .replace(
      /[0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* [EPTGMKiBbytes]*\/sec and [0-9/.inf]* ops\/sec\)/g,
      'X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)',
    );
}

/** Writes a raw file of `size` bytes, filling the given [offset, length, byte] ranges; the rest is a hole. */
export function rawFile(file: string, size: number, fills: Array<[number, number, number]> = []): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    for (const [offset, length, byte] of fills) {
      const chunk = Buffer.alloc(Math.min(length, 1 << 20), byte);
      for (let done = 0; done < length; done += chunk.length) {
        fs.writeSync(fd, chunk, 0, Math.min(chunk.length, length - done), offset + done);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Bytes the file occupies on disk. */
export function diskUsage(file: string): number {
  return fs.statSync(file).blocks * 512;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

/** Runs a shell command line under a pseudo-terminal (util-linux `script`), returning what it printed. */
export function underPty(commandLine: string, cwd: string): Result {
  const r = spawnSync('script', ['-qfec', commandLine, '/dev/null'], {
    cwd,
    encoding: 'utf8',
    timeout: Math.round(60_000 * testTimeScale()),
  });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Waits until `cond()` holds (polling), or throws after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms * testTimeScale();
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Resolves with the exit code/signal of a spawned child. */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/**
 * A cow overlay over a raw base (`size` bytes, filled with `baseByte`) in
 * which every other 512-byte sector is allocated and holds `topByte`:
 * many short runs, so that copying it takes a while (interruption tests).
 */
export function alternatingOverlay(
  dir: string,
  name: string,
  size: number,
  baseByte = 0x11,
  topByte = 0x22,
): { base: string; overlay: string } {
  const base = path.join(dir, `${name}.base.img`);
  const overlay = path.join(dir, `${name}.cow`);
  rawFile(base, size, [[0, size, baseByte]]);
  const created = blk(['create', '-q', '-f', 'cow', '-b', base, overlay]);
  if (created.code !== 0) throw new Error(created.stderr);
  const info = JSON.parse(blk(['info', '--output=json', overlay]).stdout) as {
    'format-specific': { data: Record<string, number> };
  };
  const d = info['format-specific'].data;
  const fd = fs.openSync(overlay, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(d['bitmap-length']!, 0x55), 0, d['bitmap-length']!, d['bitmap-offset']!);
    rawWrite(fd, d['data-offset']!, size, topByte);
  } finally {
    fs.closeSync(fd);
  }
  return { base, overlay };
}

function rawWrite(fd: number, offset: number, length: number, byte: number): void {
  const chunk = Buffer.alloc(1 << 20, byte);
  for (let done = 0; done < length; done += chunk.length) {
    fs.writeSync(fd, chunk, 0, Math.min(chunk.length, length - done), offset + done);
  }
}

/** What the alternating overlay reads as: sector n is topByte for even n, baseByte for odd n. */
export function alternatingExpected(file: string, size: number, baseByte = 0x11, topByte = 0x22): void {
  const buf = Buffer.alloc(size);
  for (let s = 0; s < size / 512; s++) buf.fill(s % 2 === 0 ? topByte : baseByte, s * 512, s * 512 + 512);
  fs.writeFileSync(file, buf);
}

/** `blk compare A B` says the guest-visible contents are identical (exit 0, nothing on stderr). */
export function expectSameImages(a: string, b: string): void {
  const r = blk(['compare', a, b]);
  expect(r.stderr).toBe('');
  expect(r.stdout).toBe('Images are identical.\n');
  expect(r.code).toBe(0);
}

/** Runs qemu-img with its program name in messages swapped for blk's, so that both outputs compare. */
export function qemuImgAsBlk(args: string[]): Result {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr.replaceAll('qemu-img:', 'blk:') };
}

export interface ToolOptions {
  cwd?: string;
  /** What the tool reads on stdin (default: nothing). */
  input?: string;
  /** Added to this process's environment. */
  env?: Record<string, string | undefined>;
  /** Milliseconds (default 60 s), stretched by testTimeScale() unless `fixedTimeout`. */
  timeout?: number;
  fixedTimeout?: boolean;
  maxBuffer?: number;
  /**
   * A tool that could not run or was stopped (not installed, timed out, output over maxBuffer):
   * 'throw' (default) throws spawnSync's error; 'ignore' returns what there is; 'stderr' returns
   * it with the error's text appended to stderr (and null output read as '').
   */
  spawnError?: 'throw' | 'ignore' | 'stderr';
}

/** Runs an installed tool (qemu-img, qemu-io, nbdinfo, ...) and waits for it. */
export function runTool(cmd: string, args: string[], o: ToolOptions = {}): Result {
  const timeout = o.timeout ?? 60_000;
  const r = spawnSync(cmd, args, {
    cwd: o.cwd,
    input: o.input ?? '',
    encoding: 'utf8',
    env: o.env ? { ...process.env, ...o.env } : process.env,
    timeout: o.fixedTimeout ? timeout : Math.round(timeout * testTimeScale()),
    ...(o.maxBuffer !== undefined ? { maxBuffer: o.maxBuffer } : {}),
  });
  const spawnError = o.spawnError ?? 'throw';
  if (r.error && spawnError === 'throw') throw r.error;
  if (spawnError === 'stderr') {
    const stderr = `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`;
    return { code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr };
  }
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the real `qemu-io ARGS...` (tests skip themselves where it is not installed). */
export function qemuIo(args: string[], o: { cwd?: string; input?: string } = {}): Result {
  return runTool('qemu-io', args, o);
}

/** Runs the real `qemu-img ARGS...`: its stdout; throws unless it exits with one of `codes`. */
export function qemuImg(args: string[], codes = [0]): string {
  const r = runTool('qemu-img', args);
  if (!codes.includes(r.code ?? -1)) throw new Error(`qemu-img ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
