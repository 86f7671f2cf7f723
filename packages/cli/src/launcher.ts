#!/usr/bin/env node
/**
 * The `blk` executable's first module (built to dist/blk.cjs; dist/blk.js
 * requires it): it runs the bundled program (dist/blk-main.cjs, one CommonJS
 * file whose commands initialise only when they run) from V8's code cache,
 * so that a start does not parse and compile the program again.
 *
 * The cache is what V8 produced after a previous run (`createCachedData()`
 * once the command has run, so that it holds every function that command
 * compiled; one cache per command), stored beside the bundle where that
 * directory is writable, else in the user's cache directory
 * ($XDG_CACHE_HOME/blk or ~/.cache/blk, one file per install). A cache
 * file starts with a key line (Node and V8 versions, architecture, the
 * bundle's size and mtime) and a line with the data's length and a checksum
 * of it: a file with another key, another length or another checksum is
 * ignored and replaced, and so is one V8 rejects (`cachedDataRejected`).
 * The check matters: V8's release builds do not checksum code caches, and
 * deserialising a damaged one aborts the process. The checksum samples the
 * data (4096 words and the tail) rather than reading all of it: a full hash
 * of the ~300 KB costs about as much as the cache saves at start (measured:
 * 3-4 ms with node:crypto or a JS loop), and the file is only ever written
 * whole (rename) by the user's own blk. Writes are atomic
 * (temporary file + rename), so concurrent starts never read half a file.
 * `BLK_CODE_CACHE=off` runs without it. Nothing here changes what blk does
 * or prints.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as vm from 'node:vm';

type Wrapper = (
  exports: object,
  require: NodeJS.Require,
  module: { exports: object },
  filename: string,
  dirname: string,
) => void;

const MAIN = path.join(__dirname, 'blk-main.cjs');

/** The commands with a cache of their own (anything else, a typo too, shares 'other'). */
const COMMANDS = new Set(
  'create info serve map convert commit rebase compare check resize measure amend bench dd io snapshot'.split(' '),
);

/**
 * V8 flags a command runs with. They are set here, before the bundle compiles, never by the command
 * itself: V8 stamps a code cache with a hash of the flags in force when it was made and rejects it
 * under other flags, so a flag set mid-run made every start of that command compile again and
 * rewrite its cache (~25 ms per `blk map`, measured).
 * map: a map of a fragmented image makes much short-lived garbage (about 100 MB for 8000 extents of a
 * 1 TiB qcow2) and V8 doubles its young generation as it goes, which is most of map's peak RSS above
 * `blk info`'s (64 -> 60 MiB with the young generation left at its start size, measured).
 */
const COMMAND_V8_FLAGS: Record<string, string[]> = { map: ['--semi-space-growth-factor=1'] };

/**
 * Where the cache may live: beside the bundle (an install the user owns: the repository, a project's
 * node_modules, where it goes away with the install), then $XDG_CACHE_HOME/blk or ~/.cache/blk (a
 * system-wide install), one file per install there. One cache per command: each holds the
 * functions its command compiled (a cache made by `blk --help` would leave `blk info` compiling).
 */
function cachePlaces(): string[] {
  const word = process.argv[2] ?? '';
  const command = COMMANDS.has(word) ? word : 'other';
  const name = `blk-main.${command}.${process.arch}-${process.versions.v8}.cache`;
  const places = [path.join(__dirname, name)];
  const home = process.env.XDG_CACHE_HOME || (process.env.HOME ? path.join(process.env.HOME, '.cache') : undefined);
  // A per-install name in the shared directory: two installs never fight over one file.
  if (home) places.push(path.join(home, 'blk', `${hash(__dirname)}-${name}`));
  return places;
}

/** FNV-1a of a string, as 8 hex digits (a file name, not a security check: V8 validates the data). */
function hash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/**
 * A checksum of `data`: FNV-1a over 4096 words spread across it and its last 64 words, with the length.
 * The words are read through an Int32Array (a copy when `data` is not 4-byte aligned: ~0.1 ms),
 * not `readInt32LE`: this runs once per start in V8's interpreter, where 4200 `readInt32LE` calls
 * cost 3-6 ms, more than the code cache's own deserialisation.
 */
function sampleSum(data: Buffer): string {
  const words = data.length >>> 2;
  const aligned = data.byteOffset % 4 === 0 ? data : new Uint8Array(data.subarray(0, words * 4));
  const w = new Int32Array(aligned.buffer, aligned.byteOffset, words);
  let h = 0x811c9dc5 ^ data.length;
  const stride = Math.max(1, Math.floor(words / 4096));
  for (let i = 0; i < words; i += stride) h = Math.imul(h ^ w[i]!, 0x01000193);
  for (let i = Math.max(0, words - 64); i < words; i++) h = Math.imul(h ^ w[i]!, 0x01000193);
  for (let i = words * 4; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** The header of a cache file: the key, then the data's length and checksum. */
const header = (key: string, data: Buffer) => `${key}\n${data.length} ${sampleSum(data)}\n`;

function readCache(places: string[], key: string): { data: Buffer; file: string } | undefined {
  for (const file of places) {
    let bytes: Buffer;
    let fd: number | undefined;
    try {
      // Never block on a FIFO or read a device put where the cache should be: regular files only.
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      const st = fs.fstatSync(fd);
      if (!st.isFile() || st.size > 64 * 1024 * 1024) continue;
      bytes = fs.readFileSync(fd);
    } catch {
      continue;
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
    const first = bytes.indexOf(10);
    const second = first < 0 ? -1 : bytes.indexOf(10, first + 1);
    if (second < 0 || bytes.toString('latin1', 0, first) !== key) continue;
    const data = bytes.subarray(second + 1);
    if (bytes.toString('latin1', 0, second + 1) === header(key, data)) return { data, file };
  }
  return undefined;
}

function writeCache(places: string[], key: string, data: Buffer): void {
  for (const file of places) {
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(tmp, Buffer.concat([Buffer.from(header(key, data), 'latin1'), data]), { mode: 0o644 });
      fs.renameSync(tmp, file);
      return;
    } catch {
      try {
        fs.rmSync(tmp, { force: true });
      } catch {
        // Nothing to clean.
      }
    }
  }
}

const requireBuiltin = createRequire(__filename);

function run(): void {
  const flags = COMMAND_V8_FLAGS[process.argv[2] ?? ''];
  // node:v8 is loaded only by a command that has flags (every module loaded costs every start).
  if (flags) for (const flag of flags) (requireBuiltin('node:v8') as typeof import('node:v8')).setFlagsFromString(flag);
  // latin1, not utf8: the bundle is ASCII only (esbuild escapes every other character; the build checks
  // it), and a one-byte decode is a copy where UTF-8 validates 480 KB first (~0.5 ms of every start).
  const source = fs.readFileSync(MAIN, 'latin1');
  const requireMain = createRequire(MAIN);
  const useCache = process.env.BLK_CODE_CACHE !== 'off';
  let key = '';
  let places: string[] = [];
  let cached: { data: Buffer; file: string } | undefined;
  if (useCache) {
    const st = fs.statSync(MAIN);
    key = `blk-code-cache 1 ${process.version} ${process.versions.v8} ${process.arch} ${st.size} ${Math.floor(st.mtimeMs)}`;
    places = cachePlaces();
    cached = readCache(places, key);
  }
  // The bundle is one function expression (see tsup.bin.config.ts): compiled here as a script.
  const script = new vm.Script(source, {
    filename: MAIN,
    ...(cached ? { cachedData: cached.data } : {}),
  });
  if (useCache && (cached === undefined || script.cachedDataRejected === true)) {
    // Once the command has run: the cache then holds the functions it compiled too.
    process.once('exit', () => {
      try {
        writeCache(places, key, script.createCachedData());
      } catch {
        // No cache this time: the next start compiles again.
      }
    });
  }
  const wrapper = script.runInThisContext() as Wrapper;
  const module = { exports: {} };
  wrapper.call(module.exports, module.exports, requireMain, module, MAIN, __dirname);
}

run();
