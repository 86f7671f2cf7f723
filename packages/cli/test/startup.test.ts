/**
 * How blk starts (issue 16): the bin (dist/blk.cjs) runs one bundle from V8's
 * code cache, loads no Node module its command does not need, and prints
 * exactly what the previous, ES-module bin printed: help and error output are
 * compared with test/fixtures/start-output.json, captured from that bin (when
 * help text changes on purpose, regenerate it: BLK_UPDATE_FIXTURES=1).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI_DIR, rawFile, scratchDir } from './helpers.js';

const BIN = path.join(CLI_DIR, 'dist', 'blk.cjs');
const FIXTURE = path.join(__dirname, 'fixtures', 'start-output.json');

interface Case {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

const scratch = scratchDir('startup');
let cacheHome: string;
beforeAll(() => {
  cacheHome = path.join(scratch.dir, 'cache');
});

function run(args: string[], env: Record<string, string> = {}, bin = BIN, preload?: string): Case {
  const r = spawnSync(process.execPath, [...(preload ? ['-r', preload] : []), bin, ...args], {
    encoding: 'utf8',
    cwd: scratch.dir,
    env: { ...process.env, BLK_DEBUG: '', XDG_CACHE_HOME: cacheHome, ...env },
    timeout: 60_000,
  });
  return { args, code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The code caches of `command` beside the bundle in `distDir`, and in the user cache directory. */
const cacheFiles = (command: string, distDir = path.join(CLI_DIR, 'dist')) => {
  const beside = fs
    .readdirSync(distDir)
    .filter((f) => f.startsWith(`blk-main.${command}.`) && f.endsWith('.cache'))
    .map((f) => path.join(distDir, f));
  const home = path.join(cacheHome, 'blk');
  const inHome = fs.existsSync(home)
    ? fs
        .readdirSync(home)
        .filter((f) => f.includes(`blk-main.${command}.`))
        .map((f) => path.join(home, f))
    : [];
  return { beside, inHome };
};

/** A copy of the bin (dist/blk.cjs + its bundle) under the test's directory, so its caches are its own. */
function privateBin(name: string): string {
  const copy = path.join(scratch.dir, name);
  fs.mkdirSync(path.join(copy, 'dist'), { recursive: true });
  for (const f of ['blk.cjs', 'blk-main.cjs'])
    fs.copyFileSync(path.join(CLI_DIR, 'dist', f), path.join(copy, 'dist', f));
  fs.symlinkSync(fs.realpathSync(path.join(CLI_DIR, 'build')), path.join(copy, 'build'));
  return path.join(copy, 'dist', 'blk.cjs');
}

describe('blk start-up', () => {
  it('prints the same help and errors as before (fixture), with and without the code cache, through blk.js too', () => {
    const expected = JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as Case[];
    if (process.env.BLK_UPDATE_FIXTURES === '1') {
      fs.writeFileSync(
        FIXTURE,
        `${JSON.stringify(
          expected.map((c) => run(c.args)),
          null,
          1,
        )}\n`,
      );
      // The repo's formatter owns the layout of checked-in JSON (CI checks it).
      spawnSync(process.execPath, [
        path.join(CLI_DIR, '..', '..', 'node_modules/@biomejs/biome/bin/biome'),
        'format',
        '--write',
        FIXTURE,
      ]);
      return;
    }
    expect(expected.length).toBeGreaterThanOrEqual(10);
    for (const c of expected) {
      expect(run(c.args), `blk ${c.args.join(' ')} (cache made)`).toEqual(c);
      expect(run(c.args), `blk ${c.args.join(' ')} (from the cache)`).toEqual(c);
      expect(run(c.args, { BLK_CODE_CACHE: 'off' }), `blk ${c.args.join(' ')} (no cache)`).toEqual(c);
    }
    for (const c of expected.slice(0, 4)) {
      expect(run(c.args, {}, path.join(CLI_DIR, 'dist', 'blk.js')), `dist/blk.js ${c.args.join(' ')}`).toEqual(c);
    }
  });

  it('keeps a code cache per command beside the bundle, keyed; a stale, corrupt or foreign cache is replaced, never trusted', () => {
    // A private copy of the bin: other test files run blk (and write the shared dist's caches) meanwhile.
    const bin = privateBin('private');
    const distDir = path.dirname(bin);
    const caches = () => cacheFiles('info', distDir);
    const runInfo = (args: string[], env: Record<string, string> = {}) => run(args, env, bin);
    const img = path.join(scratch.dir, 'c.raw');
    rawFile(img, 1024 * 1024);
    const first = runInfo(['info', img]);
    expect(first.code).toBe(0);
    const [file, ...more] = caches().beside;
    expect(more).toEqual([]);
    expect(caches().inHome).toEqual([]);
    const bytes = fs.readFileSync(file!);
    const key = bytes.subarray(0, bytes.indexOf(10)).toString('latin1');
    expect(key).toContain(process.version);
    expect(bytes.length).toBeGreaterThan(10_000);
    // A second start reads it and leaves it as it is.
    const mtime = fs.statSync(file!).mtimeMs;
    expect(runInfo(['info', img])).toEqual(first);
    expect(fs.statSync(file!).mtimeMs).toBe(mtime);
    // Corrupt data (V8's release build would abort on it: the checksum catches it first): same output,
    // and the file is made again. A flipped byte in a sampled word, a truncated tail.
    const corrupt = Buffer.from(bytes);
    for (let i = key.length + 200; i < corrupt.length; i += 97) corrupt[i] ^= 0xff;
    fs.writeFileSync(file!, bytes.subarray(0, bytes.length - 1000));
    expect(runInfo(['info', img])).toEqual(first);
    expect(fs.readFileSync(file!).length).toBeGreaterThan(bytes.length - 1000);
    fs.writeFileSync(file!, corrupt);
    expect(runInfo(['info', img])).toEqual(first);
    expect(fs.readFileSync(file!).equals(corrupt)).toBe(false);
    // Another key (another Node, another bundle): ignored and replaced.
    fs.writeFileSync(
      file!,
      Buffer.concat([Buffer.from('blk-code-cache 1 v0.0.0 x\n'), bytes.subarray(key.length + 1)]),
    );
    expect(runInfo(['info', img])).toEqual(first);
    expect(fs.readFileSync(file!).subarray(0, key.length).toString('latin1')).toBe(key);
    // Garbage, a truncated file, an empty one.
    for (const junk of [Buffer.from('nonsense'), bytes.subarray(0, 100), Buffer.alloc(0)]) {
      fs.writeFileSync(file!, junk);
      expect(runInfo(['info', img])).toEqual(first);
    }
    // A FIFO where the cache should be: not opened for reading (it would block), replaced.
    fs.rmSync(file!);
    spawnSync('mkfifo', [file!]);
    if (fs.existsSync(file!)) {
      expect(runInfo(['info', img])).toEqual(first);
      expect(fs.statSync(file!).isFile()).toBe(true);
    }
    // BLK_CODE_CACHE=off neither reads nor writes one.
    fs.rmSync(file!);
    expect(runInfo(['info', img], { BLK_CODE_CACHE: 'off' })).toEqual(first);
    expect(caches().beside).toEqual([]);
  });

  it('a command that runs with V8 flags of its own (map) keeps its cache: V8 rejects a cache made under other flags', () => {
    const bin = privateBin('flags');
    const img = path.join(scratch.dir, 'f.raw');
    rawFile(img, 1024 * 1024);
    const first = run(['map', img], {}, bin);
    expect(first.code, first.stderr).toBe(0);
    const [file] = cacheFiles('map', path.dirname(bin)).beside;
    const made = fs.statSync(file!).mtimeMs;
    for (let i = 0; i < 2; i++) expect(run(['map', img], {}, bin)).toEqual(first);
    expect(fs.statSync(file!).mtimeMs, 'the cache was made again: V8 rejected it').toBe(made);
  });

  it('uses the user cache directory where the bundle directory cannot hold one; runs where neither can', () => {
    // A copy of the bin whose cache places beside it are directories: reading skips them, writing fails.
    const bin = privateBin('copy');
    const copy = path.dirname(path.dirname(bin));
    const name = `blk-main.--help.${process.arch}-${process.versions.v8}.cache`;
    const other = `blk-main.other.${process.arch}-${process.versions.v8}.cache`;
    for (const n of [name, other]) fs.mkdirSync(path.join(copy, 'dist', n, 'x'), { recursive: true });
    const expected = (JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as Case[])[0]!;
    fs.rmSync(cacheHome, { recursive: true, force: true });
    expect(run(['--help'], {}, bin)).toEqual(expected);
    expect(run(['--help'], {}, bin)).toEqual(expected);
    const inHome = fs.readdirSync(path.join(cacheHome, 'blk'));
    expect(inHome.filter((f) => f.endsWith('.cache'))).toHaveLength(1);
    // Neither place usable (the cache directory is a file): same output, nothing written.
    const nowhere = path.join(scratch.dir, 'not-a-dir');
    fs.writeFileSync(nowhere, '');
    expect(run(['--help'], { XDG_CACHE_HOME: nowhere, HOME: nowhere }, bin)).toEqual(expected);
  });

  it("gives every command of the program a cache of its own (the launcher's list is blk.ts's commands)", () => {
    const program = fs.readFileSync(path.join(CLI_DIR, 'src', 'program.ts'), 'utf8');
    const launcher = fs.readFileSync(path.join(CLI_DIR, 'src', 'launcher.ts'), 'utf8');
    const commands = [...program.matchAll(/\.command\('([a-z]+)'\)/g)].map((m) => m[1]!).sort();
    const listed = /'([a-z ]+)'\.split\(' '\)/.exec(launcher)?.[1]?.split(' ').sort();
    expect(commands.length).toBeGreaterThan(10);
    expect(listed).toEqual(commands);
  });

  it('loads no Node module its command does not need (child_process, readline, fs/promises, http, tls)', () => {
    const img = path.join(scratch.dir, 'm.raw');
    rawFile(img, 1024 * 1024);
    const dump = path.join(scratch.dir, 'dump.cjs');
    const list = path.join(scratch.dir, 'modules.txt');
    fs.writeFileSync(
      dump,
      `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')));\n`,
    );
    for (const args of [
      ['info', img],
      ['map', img],
      ['--help'],
      ['create', '-q', '-f', 'raw', path.join(scratch.dir, 'n.raw'), '1M'],
    ]) {
      const r = run(args, {}, BIN, dump);
      expect(r.code, r.stderr).toBe(0);
      const loaded = fs.readFileSync(list, 'utf8').split('\n');
      // (net is loaded whenever stdout is a pipe, as here: process.stdout is a socket then. tls: @blk/http's
      // socket transport loads on the first URL request, not at start.)
      for (const mod of ['child_process', 'dgram', 'readline', 'internal/fs/promises', 'http', 'https', 'tls']) {
        expect(loaded, `blk ${args[0]} loads ${mod}`).not.toContain(`NativeModule ${mod}`);
      }
      // info writes its text on descriptor 1 and create -q prints nothing: neither makes process.stdout or
      // process.stderr (stdio.ts), so neither loads net for the pipes they are here.
      if (args[0] === 'info' || args[0] === 'create') {
        expect(loaded, `blk ${args[0]} makes a stream for its stdio`).not.toContain('NativeModule net');
      }
    }
  });
});
