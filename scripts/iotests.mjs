#!/usr/bin/env node
/**
 * QEMU's own iotests against `blk io` as the qemu-io under test.
 *
 *   node scripts/iotests.mjs [--fetch-only] [-qcow2|-raw] [--quick] [--json FILE] [TEST...]
 *
 * 1. Fetches Debian's QEMU 7.2 source (the `qemu` source package of the installed qemu-utils, or
 *    of the newest bookworm one) with `apt-get source` through a private deb-src list, into a cache
 *    directory outside git ($BLK_IOTESTS_CACHE, default ~/.cache/blk-iotests): the system's apt
 *    configuration and package lists are not touched (private Dir::Etc::SourceParts,
 *    Dir::State::Lists and Dir::Cache). dpkg-source applies debian/patches/series.
 * 2. Writes wrappers into CACHE/bin: `qemu-io` runs this checkout's built `blk io` (packages/cli/dist,
 *    so `node scripts/build.mjs` first); `qemu-system-x86_64` and `qemu-storage-daemon` are
 *    stand-ins that answer `-machine help` and otherwise fail with "no VM in blk's iotests run", so
 *    tests that need a VM fail early and are reported as such.
 * 3. Runs `tests/qemu-iotests/check -FMT` with QEMU_IO_PROG = the wrapper, QEMU_IMG_PROG and
 *    QEMU_NBD_PROG = the real /usr/bin/qemu-img and qemu-nbd (the judges), the stand-in QEMU_PROG,
 *    and prints one line per test: pass, fail (with the first differing lines of its .out.bad),
 *    not run (the reason check gives), or needs-vm.
 *
 * Without TEST arguments it runs every test of the format that does not need a VM, judged by the
 * test's source (tests that launch QEMU, the storage daemon or an iotests.VM are left out and
 * counted). `--quick` runs only the `quick` group. `--json FILE` writes the results as JSON.
 * `--real-qemu-io` runs the same tests with the real qemu-io (the reference: what fails there fails
 * for reasons that are not blk's); `--passed-in FILE.json` runs only the tests that passed in such a
 * run. check's output is logged as it runs (CACHE/check-FMT-{blk,qemu}.log); `--parse LOG` reads
 * the results of a run from its log (an interrupted run too). A failure's reason is its first
 * differing line, or `needs-vm`, or that blk io refused to open a qcow2 image writable.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cache = process.env.BLK_IOTESTS_CACHE ?? path.join(os.homedir(), '.cache', 'blk-iotests');
const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return false;
  args.splice(i, 1);
  return true;
};
const option = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const fetchOnly = flag('--fetch-only');
const quick = flag('--quick');
const realQemuIo = flag('--real-qemu-io');
const jsonOut = option('--json');
const parseLog = option('--parse');
const passedIn = option('--passed-in');
const raw = flag('-raw');
flag('-qcow2'); // the default
const fmt = raw ? 'raw' : 'qcow2';
const tests = args.filter((a) => !a.startsWith('-'));

function sh(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  }
  return r;
}
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** The QEMU source tree, fetched and patched once; the path of tests/qemu-iotests. */
export function fetchSource() {
  const marker = path.join(cache, 'src', 'READY');
  if (fs.existsSync(marker)) return fs.readFileSync(marker, 'utf8').trim();
  for (const tool of ['apt-get', 'apt-cache', 'dpkg-source']) {
    if (!have(tool)) throw new Error(`${tool} is missing: the QEMU source cannot be fetched`);
  }
  const etc = path.join(cache, 'etc');
  const lists = path.join(cache, 'lists');
  const aptCache = path.join(cache, 'apt-cache');
  for (const d of [
    etc,
    path.join(lists, 'partial'),
    path.join(aptCache, 'archives', 'partial'),
    path.join(cache, 'src'),
  ])
    fs.mkdirSync(d, { recursive: true });
  // The system's deb entries, turned into deb-src entries, in a private list.
  const system = '/etc/apt/sources.list.d/debian.sources';
  let sources;
  if (fs.existsSync(system)) {
    sources = fs.readFileSync(system, 'utf8').replace(/^Types: deb$/gm, 'Types: deb-src');
  } else {
    sources =
      'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n'
      + 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n';
  }
  fs.writeFileSync(path.join(etc, 'deb-src.sources'), sources);
  const apt = [
    '-o',
    `Dir::Etc::SourceParts=${etc}`,
    '-o',
    'Dir::Etc::SourceList=/dev/null',
    '-o',
    `Dir::State::Lists=${lists}`,
    '-o',
    `Dir::Cache=${aptCache}`,
    '-o',
    'Dir::Cache::pkgcache=',
    '-o',
    'Dir::Cache::srcpkgcache=',
    '-o',
    'APT::Sandbox::User=root',
  ];
  process.stderr.write(`iotests: apt-get update (private deb-src list in ${etc})\n`);
  sh('apt-get', [...apt, '-q', 'update']);
  // The version of the installed qemu-utils (without a binNMU suffix), else the newest.
  let version;
  const installed = sh(
    'dpkg-query',
    ['-W', '-f', '$' + '{source:Version}' /* dpkg-query's field syntax */, 'qemu-utils'],
    { allowFail: true },
  );
  if (installed.status === 0 && installed.stdout.trim() !== '') version = installed.stdout.trim();
  const src = path.join(cache, 'src');
  const spec = version ? `qemu=${version}` : 'qemu';
  process.stderr.write(`iotests: apt-get source --download-only ${spec}\n`);
  let got = sh('apt-get', [...apt, '-q', 'source', '--download-only', spec], { cwd: src, allowFail: true });
  if (got.status !== 0 && version) {
    process.stderr.write(`iotests: ${spec} is not in the archive; taking the newest qemu source\n`);
    got = sh('apt-get', [...apt, '-q', 'source', '--download-only', 'qemu'], { cwd: src });
  }
  const dsc = fs
    .readdirSync(src)
    .filter((f) => f.startsWith('qemu_') && f.endsWith('.dsc'))
    .sort()
    .pop();
  if (!dsc) throw new Error('apt-get source left no qemu .dsc');
  const tree = path.join(src, 'qemu');
  fs.rmSync(tree, { recursive: true, force: true });
  process.stderr.write(`iotests: dpkg-source -x ${dsc} (applies debian/patches/series)\n`);
  sh('dpkg-source', ['--no-check', '-x', dsc, tree], { cwd: src });
  const iotests = path.join(tree, 'tests', 'qemu-iotests');
  if (!fs.existsSync(path.join(iotests, 'check'))) throw new Error(`${iotests}/check is missing`);
  fs.writeFileSync(marker, `${iotests}\n`);
  return iotests;
}

/** CACHE/bin with the qemu-io wrapper and the VM stand-ins. */
export function writeWrappers() {
  const bin = path.join(cache, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const blk = path.join(repo, 'packages', 'cli', 'dist', 'blk.js');
  if (!fs.existsSync(blk)) throw new Error(`${blk} is missing: run node scripts/build.mjs first`);
  const write = (name, text) => {
    fs.writeFileSync(path.join(bin, name), text, { mode: 0o755 });
    return path.join(bin, name);
  };
  const io = write('qemu-io', `#!/bin/sh\nexec "${process.execPath}" --no-warnings "${blk}" io "$@"\n`);
  const vm =
    '#!/bin/sh\n'
    + 'if [ "$1 $2" = "-machine help" ]; then echo "pc-i440fx-7.2 Standard PC (i440FX + PIIX, 1996) (default)"; exit 0; fi\n'
    + 'echo "no VM in blk\'s iotests run (stand-in for $0)" >&2\nexit 1\n';
  return { io, qemu: write('qemu-system-x86_64', vm), qsd: write('qemu-storage-daemon', vm) };
}

/** Whether a test needs a VM (QEMU itself or the storage daemon), judged from its source. */
export function needsVm(file) {
  const text = fs.readFileSync(file, 'utf8');
  return /_launch_qemu|_send_qemu_cmd|_launch_qsd|QSD_PROG|qemu_storage_daemon|iotests\.VM\(|\bVM\(|QemuStorageDaemon|_qemu_img_wrapper\s+create.*-n|\$QEMU_PROG|QEMU_PROG\b/.test(
    text,
  );
}

/** The tests of the format (numbered and tests/NAME), with their groups. */
export function listTests(iotests) {
  const names = [
    ...fs.readdirSync(iotests).filter((f) => /^\d{3}$/.test(f)),
    ...fs
      .readdirSync(path.join(iotests, 'tests'))
      .filter((f) => !f.includes('.'))
      .map((f) => `tests/${f}`),
  ];
  return names.map((name) => {
    const text = fs.readFileSync(path.join(iotests, name), 'utf8');
    const groups = (text.match(/^#\s*group:\s*(.*)$/m)?.[1] ?? '').split(/\s+/).filter(Boolean);
    return { name, groups, vm: needsVm(path.join(iotests, name)) };
  });
}

function runCheck(iotests, wrappers, fmtName, names) {
  const env = {
    ...process.env,
    PATH: `/usr/bin:${process.env.PATH}`,
    QEMU_PROG: wrappers.qemu,
    QSD_PROG: wrappers.qsd,
    QEMU_IMG_PROG: '/usr/bin/qemu-img',
    QEMU_IO_PROG: realQemuIo ? '/usr/bin/qemu-io' : wrappers.io,
    QEMU_NBD_PROG: '/usr/bin/qemu-nbd',
    TEST_DIR: scratchDir(fmtName),
    SOCK_DIR: path.join(cache, `sock-${fmtName}-${realQemuIo ? 'qemu' : 'blk'}`),
  };
  // check takes tests/NAME tests by their bare name. Its output goes to a log as it runs, so that an
  // interrupted run can still be read (--parse LOG).
  const log = logFile(fmtName);
  const fd = fs.openSync(log, 'w');
  try {
    spawnSync('python3', ['check', `-${fmtName}`, ...names.map((n) => n.replace(/^tests\//, ''))], {
      cwd: iotests,
      env,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    fs.closeSync(fd);
  }
  return fs.readFileSync(log, 'utf8');
}

/** check's output of the last run of the format with this qemu-io. */
const logFile = (fmtName) => path.join(cache, `check-${fmtName}-${realQemuIo ? 'qemu' : 'blk'}.log`);

/** Each format and qemu-io has its own scratch directory, so that runs can go on side by side. */
const scratchDir = (fmtName) => path.join(cache, `scratch-${fmtName}-${realQemuIo ? 'qemu' : 'blk'}`);

/** check's output → { name: { status, reason } }. */
export function parseCheck(output, iotests, scratch = scratchDir(fmt)) {
  const results = {};
  for (const line of output.split(/[\r\n]+/)) {
    // "001   pass       [20:00:00] [20:00:01]   0.5s", "002   fail ...", "003   not run ..."
    // A test's name (not a diff line of a failure's output, which starts with - + or @).
    const m = /^([0-9A-Za-z][\w.-]*)\s+(pass|fail|not run)(?:\s(.*))?$/.exec(line);
    if (!m) continue;
    const [, name, status, rest = ''] = m;
    let reason = '';
    if (status === 'not run')
      reason = rest
        .replace(/\[[^\]]*\]|\.\.\./g, '')
        .replace(/\s+/g, ' ')
        .trim();
    if (status === 'fail') {
      const bad = path.join(iotests, `${name}.out.bad`);
      const scratchBad = path.join(scratch, `${path.basename(name)}.out.bad`);
      for (const f of [bad, scratchBad]) {
        if (!fs.existsSync(f)) continue;
        reason = failureReason(path.join(iotests, `${name}.out`), fs.readFileSync(f, 'utf8'));
        break;
      }
    }
    results[name] = { status, reason };
  }
  return results;
}

/** Why a failed test failed, from its .out.bad text: the VM stand-in, a refused write, blk.js gone, or the first differing line. */
export function failureReason(expectedFile, text) {
  if (/no VM in blk's iotests run/.test(text)) return 'needs-vm';
  if (/format qcow2 cannot be written/.test(text)) return 'needs qcow2 writes (blk io refuses a writable open)';
  // A build replaced packages/cli/dist while the test ran: not the test's verdict.
  if (/Cannot find module '[^']*blk\.js'/.test(text))
    return 'blk.js was missing (rebuilt during the run): run it again';
  return firstDiff(expectedFile, text);
}

/** The first line that differs, trailing whitespace ignored as check's file_diff ignores it. */
export function firstDiff(expectedFile, actual) {
  if (!fs.existsSync(expectedFile)) return '';
  const want = fs.readFileSync(expectedFile, 'utf8').split('\n');
  const got = actual.split('\n');
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    if (want[i]?.trimEnd() !== got[i]?.trimEnd())
      return `line ${i + 1}: expected ${JSON.stringify(want[i] ?? '<eof>')}, got ${JSON.stringify(got[i] ?? '<eof>')}`;
  }
  return '';
}

async function main() {
  const iotests = fetchSource();
  if (fetchOnly) {
    console.log(iotests);
    return;
  }
  const wrappers = writeWrappers();
  let names = tests;
  let vmCount = 0;
  if (passedIn) {
    // The tests that passed in an earlier run's JSON (the real qemu-io's: what can pass here at all).
    const earlier = JSON.parse(fs.readFileSync(passedIn, 'utf8')).results;
    names = Object.entries(earlier)
      .filter(([, r]) => r.status === 'pass')
      .map(([n]) => (fs.existsSync(path.join(iotests, 'tests', n)) ? `tests/${n}` : n));
  } else if (names.length === 0) {
    const all = listTests(iotests).filter((t) => !quick || t.groups.includes('quick'));
    vmCount = all.filter((t) => t.vm).length;
    names = all.filter((t) => !t.vm).map((t) => t.name);
  }
  process.stderr.write(
    `iotests: check -${fmt} with ${realQemuIo ? 'the real qemu-io' : 'blk io'}: ${names.length} tests${vmCount ? ` (${vmCount} needing a VM left out)` : ''}\n`,
  );
  const output = parseLog ? fs.readFileSync(parseLog, 'utf8') : runCheck(iotests, wrappers, fmt, names);
  const results = parseCheck(output, iotests);
  const by = { pass: [], fail: [], 'not run': [] };
  for (const [name, r] of Object.entries(results)) {
    by[r.status].push(name);
    console.log(`${name.padEnd(28)} ${r.status.padEnd(8)} ${r.reason}`);
  }
  console.log(`\npass ${by.pass.length}, fail ${by.fail.length}, not run ${by['not run'].length}`);
  if (Object.keys(results).length === 0) console.log(output);
  if (jsonOut) fs.writeFileSync(jsonOut, `${JSON.stringify({ fmt, realQemuIo, results }, null, 1)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`iotests: ${err.message}\n`);
    process.exit(1);
  });
}
