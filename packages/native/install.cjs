#!/usr/bin/env node
/*
 * Builds the blk_native addon (OS locks, positional I/O) at install time (the package's `install` script).
 * Tries node-gyp (from PATH, as pnpm and npm provide it to lifecycle
 * scripts, or the copy bundled with npm), then a direct C compiler call
 * (a Node-API addon needs only Node's headers). Never fails the install:
 * without the addon, @blk/native warns once at run time and images are opened
 * without OS locks (and read through Node's slower fs calls).
 *
 * scripts/pack.mjs also ships this script, binding.gyp and native/ in the
 * @blk/cli tarball, whose self-contained `blk` loads the addon from its own
 * build/Release: there it runs as @blk/cli's install script.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const here = __dirname;
const name = JSON.parse(fs.readFileSync(path.join(here, 'package.json'), 'utf8')).name;
const out = path.join(here, 'build', 'Release', 'blk_native.node');
if (process.platform === 'win32') {
  console.warn(`${name}: no native addon on Windows; images are opened without locks`);
  process.exit(0);
}

function headersDir() {
  const configured = process.env.npm_config_nodedir;
  if (configured && fs.existsSync(path.join(configured, 'include', 'node', 'node_api.h'))) return configured;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  for (const dir of [prefix, '/usr', '/usr/local']) {
    if (fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return dir;
  }
  return undefined;
}

// The compilers' output (node-gyp alone prints a hundred lines) goes to a log
// file; the install prints one line, and the log's tail only when it fails.
// Not under build/: `node-gyp rebuild` starts by deleting that directory.
const logFile = path.join(here, 'install.log');

function run(cmd, args) {
  fs.appendFileSync(logFile, `\n$ ${cmd} ${args.join(' ')}\n`);
  const fd = fs.openSync(logFile, 'a');
  try {
    const r = spawnSync(cmd, args, { cwd: here, stdio: ['ignore', fd, fd], env: process.env });
    if (r.error) fs.appendFileSync(logFile, `${r.error.message}\n`);
    return r.status === 0;
  } finally {
    fs.closeSync(fd);
  }
}

function logTail(lines) {
  return fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Whether the addon built last time can stay: it is newer than everything it
 * is built from and loads in this Node (Node-API addons keep working across
 * Node versions; a different platform or a broken file fails to load).
 * pnpm runs this script at every `pnpm install` of the repository.
 */
function upToDate() {
  if (process.env.BLK_NATIVE_FORCE_BUILD || !fs.existsSync(out)) return false;
  const inputs = [
    path.join(here, 'binding.gyp'),
    __filename,
    ...fs.readdirSync(path.join(here, 'native')).map((f) => path.join(here, 'native', f)),
  ];
  const built = fs.statSync(out).mtimeMs;
  if (inputs.some((f) => fs.statSync(f).mtimeMs > built)) return false;
  try {
    require(out);
    return true;
  } catch {
    return false;
  }
}

if (upToDate()) {
  console.log(`${name}: ${path.relative(here, out)} is up to date`);
  process.exit(0);
}

fs.writeFileSync(logFile, ''); // (an up-to-date run keeps the last build's log)
const nodedir = headersDir();
const gypArgs = ['rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const candidates = [
  ['node-gyp', gypArgs],
  [
    process.execPath,
    [
      path.join(
        path.dirname(process.execPath),
        '..',
        'lib',
        'node_modules',
        'npm',
        'node_modules',
        'node-gyp',
        'bin',
        'node-gyp.js',
      ),
      ...gypArgs,
    ],
  ],
];
for (const [cmd, args] of candidates) {
  if (cmd !== 'node-gyp' && !fs.existsSync(args[0])) continue;
  if (run(cmd, args) && fs.existsSync(out)) {
    console.log(`${name}: built ${path.relative(here, out)} with node-gyp (log: ${logFile})`);
    process.exit(0);
  }
}
// No node-gyp: compile directly (Node-API symbols are resolved when Node loads the addon).
if (nodedir) {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const cc = process.env.CC || 'cc';
  const flags = [
    '-O2',
    '-Wall',
    '-fPIC',
    '-shared',
    `-I${path.join(nodedir, 'include', 'node')}`,
    ...['addon.c', 'lock.c', 'io.c', 'send.c'].map((f) => path.join(here, 'native', f)),
    '-o',
    out,
    '-lm',
  ];
  if (process.platform === 'darwin') flags.push('-undefined', 'dynamic_lookup');
  if (run(cc, flags) && fs.existsSync(out)) {
    console.log(`${name}: built ${path.relative(here, out)} with ${cc} (log: ${logFile})`);
    process.exit(0);
  }
}
console.warn(
  `${logTail(20)}\n`
    + `${name}: WARNING: could not build the native addon (node-gyp and a C compiler with Node headers are needed); `
    + "images will be opened without OS advisory locks, so two processes could write one image at once, and read through Node's slower fs calls. "
    + `Full log: ${logFile}`,
);
process.exit(0);
