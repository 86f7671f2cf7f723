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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_DIR, ensureBuilt, rawFile, tempDir } from './helpers.js';

const BIN = path.join(CLI_DIR, 'dist', 'blk.cjs');
const FIXTURE = path.join(__dirname, 'fixtures', 'start-output.json');

interface Case {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

let dir: string;
let cacheHome: string;
beforeAll(() => {
  ensureBuilt();
  dir = tempDir('startup');
  cacheHome = path.join(dir, 'cache');
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function run(args: string[], env: Record<string, string> = {}, bin = BIN, preload?: string): Case {
  const r = spawnSync(process.execPath, [...(preload ? ['-r', preload] : []), bin, ...args], {
    encoding: 'utf8',
    cwd: dir,
    env: { ...process.env, BLK_DEBUG: '', XDG_CACHE_HOME: cacheHome, ...env },
    timeout: 60_000,
  });
  return { args, code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const cacheFiles = () =>
  fs.existsSync(path.join(cacheHome, 'blk'))
    ? fs
        .readdirSync(path.join(cacheHome, 'blk'))
        .filter((f) => f.endsWith('.cache'))
        .map((f) => path.join(cacheHome, 'blk', f))
    : [];

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

  it('keeps a code cache in the user cache directory, keyed; a stale, corrupt or foreign cache is replaced, never trusted', () => {
    fs.rmSync(cacheHome, { recursive: true, force: true });
    const img = path.join(dir, 'c.raw');
    rawFile(img, 1024 * 1024);
    const first = run(['info', img]);
    expect(first.code).toBe(0);
    const [file, ...more] = cacheFiles();
    expect(more).toEqual([]);
    const bytes = fs.readFileSync(file!);
    const key = bytes.subarray(0, bytes.indexOf(10)).toString('latin1');
    expect(key).toContain(process.version);
    expect(bytes.length).toBeGreaterThan(10_000);
    // A second start reads it and leaves it as it is.
    const mtime = fs.statSync(file!).mtimeMs;
    expect(run(['info', img])).toEqual(first);
    expect(fs.statSync(file!).mtimeMs).toBe(mtime);
    // Corrupt data (V8's release build would abort on it: the checksum catches it first): same output,
    // and the file is made again. A flipped byte in a sampled word, a truncated tail.
    const corrupt = Buffer.from(bytes);
    for (let i = key.length + 200; i < corrupt.length; i += 97) corrupt[i] ^= 0xff;
    fs.writeFileSync(file!, bytes.subarray(0, bytes.length - 1000));
    expect(run(['info', img])).toEqual(first);
    expect(fs.readFileSync(file!).length).toBeGreaterThan(bytes.length - 1000);
    fs.writeFileSync(file!, corrupt);
    expect(run(['info', img])).toEqual(first);
    expect(fs.readFileSync(file!).equals(corrupt)).toBe(false);
    // Another key (another Node, another bundle): ignored and replaced.
    fs.writeFileSync(
      file!,
      Buffer.concat([Buffer.from('blk-code-cache 1 v0.0.0 x\n'), bytes.subarray(key.length + 1)]),
    );
    expect(run(['info', img])).toEqual(first);
    expect(fs.readFileSync(file!).subarray(0, key.length).toString('latin1')).toBe(key);
    // Garbage, a truncated file, an empty one.
    for (const junk of [Buffer.from('nonsense'), bytes.subarray(0, 100), Buffer.alloc(0)]) {
      fs.writeFileSync(file!, junk);
      expect(run(['info', img])).toEqual(first);
    }
    // A FIFO where the cache should be: not opened for reading (it would block), replaced.
    fs.rmSync(file!);
    spawnSync('mkfifo', [file!]);
    if (fs.existsSync(file!)) {
      expect(run(['info', img])).toEqual(first);
      expect(fs.statSync(file!).isFile()).toBe(true);
    }
    // BLK_CODE_CACHE=off neither reads nor writes one.
    fs.rmSync(cacheHome, { recursive: true, force: true });
    expect(run(['info', img], { BLK_CODE_CACHE: 'off' })).toEqual(first);
    expect(cacheFiles()).toEqual([]);
  });

  it('runs where no cache can be written (the output is the same)', () => {
    const ro = path.join(dir, 'no-such-dir', 'file-not-dir');
    const r = run(['--help'], { XDG_CACHE_HOME: ro, HOME: ro });
    const expected = (JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as Case[])[0]!;
    expect(r).toEqual(expected);
  });

  it('loads no Node module its command does not need (child_process, readline, fs/promises, http)', () => {
    const img = path.join(dir, 'm.raw');
    rawFile(img, 1024 * 1024);
    const dump = path.join(dir, 'dump.cjs');
    const list = path.join(dir, 'modules.txt');
    fs.writeFileSync(
      dump,
      `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')));\n`,
    );
    for (const args of [
      ['info', img],
      ['map', img],
      ['--help'],
      ['create', '-q', '-f', 'raw', path.join(dir, 'n.raw'), '1M'],
    ]) {
      const r = run(args, {}, BIN, dump);
      expect(r.code, r.stderr).toBe(0);
      const loaded = fs.readFileSync(list, 'utf8').split('\n');
      // (net is loaded whenever stdout is a pipe, as here: process.stdout is a socket then.)
      for (const mod of ['child_process', 'dgram', 'readline', 'internal/fs/promises', 'http', 'https']) {
        expect(loaded, `blk ${args[0]} loads ${mod}`).not.toContain(`NativeModule ${mod}`);
      }
    }
  });
});
