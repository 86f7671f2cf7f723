#!/usr/bin/env node
// blk benchmark suite: blk against its peers, side by side in one run.
//
//   pnpm bench                      # build, then the full suite (~3-5 min)
//   node bench/run.mjs --quick      # smoke run, small sizes (< 30 s)
//   node bench/run.mjs --only rand-read,map
//   node bench/run.mjs --cold       # drop the page cache before every timed run (needs root)
//   node bench/run.mjs --profile    # also write V8 CPU profiles of every blk run
//
// Every in-process workload runs in a fresh node process (bench/lib/child.mjs);
// CLI rows run the built CLI (packages/cli/dist/blk.js) and the C tools. Each
// variant of a group runs `reps` times, interleaved with its baseline, and the
// best run of each counts. See bench/README.md.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { execFileSync, spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { CLI, available } from './lib/blk.mjs';
import { dropCaches, residentBytes, warm } from './lib/cache.mjs';
import { writeCow, cowLayout } from './lib/cowfile.mjs';
import { runCommand, runWorkload } from './lib/proc.mjs';
import {
  GiB,
  KiB,
  MiB,
  TiB,
  TAG_BASE,
  TAG_OVERLAY,
  commitRuns,
  fillPattern,
  fmtBytes,
  fmtRate,
  halfRuns,
  median,
  prng,
  scatteredRuns,
} from './lib/util.mjs';

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    cold: { type: 'boolean', default: false },
    only: { type: 'string', multiple: true },
    reps: { type: 'string' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    experiment: { type: 'string', multiple: true },
    'write-results': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (opts.help) {
  console.log(`usage: node bench/run.mjs [--quick] [--cold] [--only ROW[,ROW...]] [--reps N] [--dir TMPDIR] [--keep] [--profile] [--write-results]
rows: seq-read rand-read seq-write unaligned-write rand-write commit convert durable-convert durable-commit map map-chain open info (prefixes of row ids work too)
--experiment NAME loads bench/experiments/NAME.mjs into every in-process blk run (a prototype, not blk code)`);
  process.exit(0);
}

const QUICK = opts.quick;
const S = QUICK
  ? {
      size: 64 * MiB,
      mapSize: 64 * GiB,
      mapRuns: 1000,
      mapChainRuns: 10_000,
      randOps: 200_000,
      randSeconds: 0.3,
      infoSeconds: 0.15,
      randWrites: 8192,
      reps: 1,
      cliReps: 1,
      infoRuns: 3,
      openProcs: 2,
      seqPasses: 2,
    }
  : {
      size: 1 * GiB,
      mapSize: 1 * TiB,
      mapRuns: 1000,
      mapChainRuns: 10_000,
      randOps: 1_500_000,
      randSeconds: 1.0,
      infoSeconds: 0.4,
      randWrites: 65536,
      reps: 3,
      cliReps: 2,
      infoRuns: 10,
      openProcs: 5,
      seqPasses: 3,
    };
if (opts.reps) S.reps = S.cliReps = Math.max(1, Number(opts.reps));
const REQ = 1 * MiB;

const only = (opts.only ?? [])
  .flatMap((s) => s.split(','))
  .map((s) => s.trim())
  .filter(Boolean);
const selected = (group, rowIds = []) =>
  only.length === 0
  || only.some((o) => group.startsWith(o) || o.startsWith(group) || rowIds.some((r) => r.startsWith(o)));

const have = available();
if (!have.core || !have.raw) {
  console.error('bench: packages/core and packages/raw must be built first (pnpm run build)');
  process.exit(2);
}

const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, 'Z');
const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));
fs.mkdirSync(resultsDir, { recursive: true });
const profileDir = `${resultsDir}profiles-${stamp}`;
if (opts.profile) fs.mkdirSync(profileDir, { recursive: true });
const experiments = (opts.experiment ?? []).map((name) => {
  const file = fileURLToPath(new URL(`./experiments/${name}.mjs`, import.meta.url));
  if (!fs.existsSync(file)) {
    console.error(`bench: no experiment ${name} (${file})`);
    process.exit(2);
  }
  return file;
});
let profSeq = 0;
const profArgs = (name) => [
  ...experiments.flatMap((f) => ['--import', f]),
  ...(opts.profile
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}-${++profSeq}.cpuprofile`]
    : []),
];

const tmpRoot = opts.dir ?? os.tmpdir();
const dir = fs.mkdtempSync(`${tmpRoot.replace(/\/$/, '')}/blk-bench-`);
// Files with many scattered extents (random-write outputs) take seconds to
// delete on a file system mounted with online discard; they go to a trash
// directory that is removed in the background after the run.
const trash = `${dir}/trash`;
fs.mkdirSync(trash);
const discardLater = (path) => {
  if (fs.existsSync(path)) fs.renameSync(path, `${trash}/${Date.now()}-${Math.random().toString(36).slice(2)}`);
};
const cleanup = () => {
  if (opts.keep) return;
  const later = `${tmpRoot.replace(/\/$/, '')}/blk-bench-trash-${process.pid}`;
  fs.renameSync(trash, later);
  fs.rmSync(dir, { recursive: true, force: true });
  if (fs.readdirSync(later).length === 0) fs.rmdirSync(later);
  else spawn('rm', ['-rf', later], { detached: true, stdio: 'ignore' }).unref();
};
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

// ---------------------------------------------------------------- environment
const toolVersion = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]
      .trim();
  } catch {
    return undefined;
  }
};
const env = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model,
  cores: os.cpus().length,
  memGiB: +(os.totalmem() / GiB).toFixed(1),
  loadavgStart: os.loadavg().map((x) => +x.toFixed(2)),
  mode: QUICK ? 'quick' : 'full',
  tmpDir: dir,
  fsType: toolVersion('findmnt', ['-n', '-o', 'FSTYPE', '-T', dir]),
  qemuImg: toolVersion('qemu-img', ['--version']),
  umlMoo: fs.existsSync('/usr/bin/uml_moo') ? 'uml_moo (uml-utilities)' : undefined,
  packages: have,
  sizes: {
    image: S.size,
    mapImage: S.mapSize,
    mapRuns: S.mapRuns,
    request: REQ,
    randomBlock: 4 * KiB,
    randomWrites: S.randWrites,
    reps: S.reps,
    cliReps: S.cliReps,
  },
};

// ---------------------------------------------------------------- cache state
let cacheNote;
const residency = [];
/** Puts inputs in the page cache (default) or drops every cache (--cold) right before a timed run. */
function prepare(files) {
  if (opts.cold) {
    const r = dropCaches();
    if (!r.ok) {
      cacheNote ??= `--cold requested but dropping caches is not permitted here (${r.reason}); runs are warm`;
    } else {
      cacheNote ??= 'cold: sync + echo 3 > /proc/sys/vm/drop_caches before every timed run';
      return;
    }
  }
  for (const f of files) {
    const [path, ranges] = Array.isArray(f) ? f : [f, undefined];
    const bytes = warm(path, ranges);
    const res = ranges ? undefined : residentBytes(path);
    if (res !== undefined && bytes > 0) residency.push(res / bytes);
  }
}

// ---------------------------------------------------------------- fixtures
const fixtures = {};
const fixturePath = (name) => `${dir}/${name}`;
function fixture(name, make) {
  if (!fixtures[name]) {
    const t0 = performance.now();
    fixtures[name] = make(fixturePath(name));
    log(`  fixture ${name} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  return fixtures[name];
}

function writeRaw(path, size, tag) {
  const fd = fs.openSync(path, 'w');
  const buf = new Uint8Array(REQ);
  for (let off = 0; off < size; off += REQ) {
    fillPattern(buf, off, tag);
    fs.writeSync(fd, buf, 0, Math.min(REQ, size - off), off);
  }
  fs.fdatasyncSync(fd);
  fs.closeSync(fd);
  return path;
}

const base = () => fixture('base.raw', (p) => writeRaw(p, S.size, TAG_BASE));
const overlayFill = (b, off) => fillPattern(b, off, TAG_OVERLAY);
const cowFull = () =>
  fixture('full.cow', (p) => {
    writeCow(p, { size: S.size, backingPath: base(), allAllocated: true, fill: overlayFill });
    return p;
  });
const cowHalf = () =>
  fixture('half.cow', (p) => {
    writeCow(p, { size: S.size, backingPath: base(), runs: halfRuns(S.size), fill: overlayFill });
    return p;
  });
/** Ranges of a cow file worth warming: header, bitmap, and the data of allocated runs. */
const cowWarmRanges = (size, runs) => {
  const l = cowLayout(size);
  return [[0, l.dataOffset], ...runs.map(([s, n]) => [l.dataOffset + s, n])];
};
function makeCommitPair(sub, size = S.size, source = base) {
  const d = `${dir}/${sub}`;
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(d);
  fs.copyFileSync(source(), `${d}/base.raw`);
  // Clean pages only: a dirty copy would make the commit's own flush write the whole file.
  const fd = fs.openSync(`${d}/base.raw`, 'r+');
  fs.fdatasyncSync(fd);
  fs.closeSync(fd);
  const runs = commitRuns(size);
  writeCow(`${d}/overlay.cow`, { size, backingPath: `${d}/base.raw`, runs, fill: overlayFill });
  // The overlay's pages clean too (written back, untimed): the commit's flushes then write only what it writes.
  const fo = fs.openSync(`${d}/overlay.cow`, 'r+');
  fs.fdatasyncSync(fo);
  fs.closeSync(fo);
  return { dir: d, base: `${d}/base.raw`, overlay: `${d}/overlay.cow`, runs };
}
const convertCow = () =>
  fixture('convert.cow', (p) => {
    writeCow(p, { size: S.size, backingPath: base(), runs: commitRuns(S.size), fill: overlayFill });
    return p;
  });
const mapFixture = () =>
  fixture('map', (d) => {
    fs.mkdirSync(d);
    const backing = `${d}/backing.raw`;
    fs.closeSync(fs.openSync(backing, 'w'));
    fs.truncateSync(backing, S.mapSize);
    const runs = scatteredRuns(S.mapSize, S.mapRuns);
    const cow = `${d}/big.cow`;
    writeCow(cow, { size: S.mapSize, backingPath: backing, runs, fill: overlayFill });
    // The same runs in a qcow2 (no backing file), for qemu-img map as a reference.
    let qcow2;
    try {
      qcow2 = `${d}/big.qcow2`;
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, String(S.mapSize)]);
      const cmds = runs.flatMap(([s, n]) => ['-c', `write -q -P 0x5a ${s} ${n}`]);
      execFileSync('qemu-io', ['-f', 'qcow2', ...cmds, qcow2], { stdio: 'ignore' });
    } catch {
      qcow2 = undefined;
    }
    return { dir: d, backing, cow, qcow2, runs };
  });

// ---------------------------------------------------------------- measurement
const rows = [];
const t0All = performance.now();
const log = (...a) => console.error(...a);

/** Runs every variant `reps` times, interleaved (rotating the start); returns { key: [results] }. */
function interleave(reps, variants) {
  const out = Object.fromEntries(variants.map((v) => [v.key, []]));
  const errors = {};
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + r) % variants.length];
      if (errors[v.key]) continue;
      try {
        v.before?.();
        const res = v.run(r);
        out[v.key].push(res);
        log(
          `    ${v.key.padEnd(22)} rep ${r + 1}: ${fmtRate(res.value, res.unit)}${res.maxRssKiB ? `  rss ${(res.maxRssKiB / 1024).toFixed(0)} MiB` : ''}`,
        );
      } catch (err) {
        errors[v.key] = String(err?.message ?? err)
          .split('\n')
          .slice(0, 6)
          .join(' | ');
        log(`    ${v.key}: ERROR ${errors[v.key]}`);
      } finally {
        v.after?.();
      }
    }
  }
  return { out, errors };
}

const best = (list, higherIsBetter) => {
  if (!list || list.length === 0) return undefined;
  return list.reduce((a, b) => ((higherIsBetter ? b.value > a.value : b.value < a.value) ? b : a));
};

/**
 * Adds a table row. kind 'throughput': ratio = blk / baseline, goal is a minimum.
 * kind 'time': ratio = blk / baseline, goal is a maximum. kind 'abs': goal on blk's value.
 */
function addRow(row) {
  const { blk, baseline } = row;
  if (blk !== undefined && baseline !== undefined && baseline > 0) row.ratio = blk / baseline;
  if (row.goal && blk !== undefined) {
    const g = row.goal;
    const v = g.on === 'value' ? blk : row.ratio;
    let met = v !== undefined && (g.min !== undefined ? v >= g.min : v <= g.max);
    if (met && g.maxRssKiB !== undefined) met = row.rssKiB !== undefined && row.rssKiB <= g.maxRssKiB;
    row.met = met;
  }
  rows.push(row);
}

const fmtRatio = (r) => (r === undefined ? '—' : `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`);
const pending = (what) => `pending: ${what} not built yet`;

/**
 * A maker of variants that each write a fresh output file `${dir}/${prefix}NAME` and delete it after
 * every timed run (`remove`: rmSync, or discardLater where unlinking a fragmented file is slow).
 * `prof` names the CPU profile of blk's variants (and loads --experiment modules); baselines have none.
 */
const outputVariant =
  (prefix, remove = (p) => fs.rmSync(p, { force: true })) =>
  (key, name, params, prof) => {
    const path = `${dir}/${prefix}${name}`;
    return {
      key,
      run: () => runWorkload({ ...params, path }, prof ? { nodeArgs: profArgs(prof) } : {}),
      after: () => remove(path),
    };
  };

// ---------------------------------------------------------------- groups
const groups = [];

groups.push({
  id: 'seq-read',
  rows: ['seq-read', 'seq-read-raw'],
  run() {
    const b = base();
    const cow = have.cow ? cowFull() : undefined;
    const common = { task: 'readSeq', size: S.size, req: REQ, passes: S.seqPasses };
    const files = [b, ...(cow ? [cow] : [])];
    const variants = [
      { key: 'node readSync', run: () => runWorkload({ ...common, target: 'node-sync', path: b }) },
      { key: 'node FileHandle.read', run: () => runWorkload({ ...common, target: 'node-fh', path: b }) },
      {
        key: 'blk raw',
        run: () =>
          runWorkload(
            { ...common, target: 'blk', path: b, layout: 'base', verify: true },
            { nodeArgs: profArgs('seq-read-raw') },
          ),
      },
    ];
    if (cow)
      variants.push({
        key: 'blk cow',
        run: () =>
          runWorkload(
            { ...common, target: 'blk', path: cow, layout: 'full', verify: true },
            { nodeArgs: profArgs('seq-read-cow') },
          ),
      });
    for (const v of variants) v.before = () => prepare(files);
    const { out, errors } = interleave(S.reps, variants);
    const bs = best(out['node readSync'], true),
      bf = best(out['node FileHandle.read'], true);
    const bl = [bs, bf].filter(Boolean).reduce((a, x) => (!a || x.value > a.value ? x : a), undefined);
    const blName = bl === bs ? 'readSync' : 'FileHandle.read';
    const baseNote = `baseline ${blName} (readSync ${fmtRate(bs?.value, 'MB/s')}, FileHandle.read ${fmtRate(bf?.value, 'MB/s')})`;
    const c = best(out['blk cow'], true),
      r = best(out['blk raw'], true);
    addRow({
      id: 'seq-read',
      title: `seq read ${fmtBytes(S.size)} fully allocated COW, 1 MiB \`Image.readInto\``,
      unit: 'MB/s',
      blk: c?.value,
      baseline: bl?.value,
      baselineName: `raw file, Node ${blName}`,
      goal: { min: 0.9 },
      rssKiB: c?.maxRssKiB,
      note: cow ? (errors['blk cow'] ?? baseNote) : pending('@blk/cow'),
      samples: out,
    });
    addRow({
      id: 'seq-read-raw',
      info: true,
      title: `  (info) same through a raw image`,
      unit: 'MB/s',
      blk: r?.value,
      baseline: bl?.value,
      baselineName: `raw file, Node ${blName}`,
      rssKiB: r?.maxRssKiB,
      note: errors['blk raw'],
    });
  },
});

groups.push({
  id: 'rand-read',
  rows: ['rand-read-qd1', 'rand-read-qd32', 'rand-read-raw', 'rand-read-fs', 'rand-read-async', 'rand-read-fh'],
  run() {
    const b = base();
    const cow = have.cow ? cowHalf() : undefined;
    const files = [b, ...(cow ? [[cow, cowWarmRanges(S.size, halfRuns(S.size))]] : [])];
    const common = { task: 'readRand', size: S.size, ops: S.randOps, maxSeconds: S.randSeconds, seed: 1 };
    const infoCommon = { ...common, maxSeconds: S.infoSeconds };
    const variants = [
      { key: 'node readSync', run: () => runWorkload({ ...common, target: 'node-sync', path: b }) },
      { key: 'node fh.read qd1', run: () => runWorkload({ ...infoCommon, target: 'node-fh', path: b, depth: 1 }) },
      { key: 'node fh.read qd32', run: () => runWorkload({ ...infoCommon, target: 'node-fh', path: b, depth: 32 }) },
      { key: 'node fs.read cb qd32', run: () => runWorkload({ ...infoCommon, target: 'node-cb', path: b, depth: 32 }) },
      {
        key: 'blk raw qd1',
        run: () =>
          runWorkload(
            { ...infoCommon, target: 'blk', path: b, layout: 'base', depth: 1, verify: true },
            { nodeArgs: profArgs('rand-read-raw-qd1') },
          ),
      },
      {
        key: 'blk raw qd32',
        run: () =>
          runWorkload(
            { ...infoCommon, target: 'blk', path: b, layout: 'base', depth: 32, verify: true },
            { nodeArgs: profArgs('rand-read-raw-qd32') },
          ),
      },
    ];
    if (cow) {
      variants.push(
        {
          key: 'blk cow qd1',
          run: () =>
            runWorkload(
              { ...common, target: 'blk', path: cow, layout: 'half', depth: 1, verify: true },
              { nodeArgs: profArgs('rand-read-qd1') },
            ),
        },
        {
          key: 'blk cow qd32',
          run: () =>
            runWorkload(
              { ...common, target: 'blk', path: cow, layout: 'half', depth: 32, verify: true },
              { nodeArgs: profArgs('rand-read-qd32') },
            ),
        },
        {
          key: 'blk cow fs qd1',
          run: () =>
            runWorkload(
              { ...infoCommon, target: 'blk', path: cow, layout: 'half', depth: 1, verify: true },
              { nodeArgs: profArgs('rand-read-fs-qd1'), env: { BLK_NATIVE_IO: 'off' } },
            ),
        },
        {
          key: 'blk cow async qd32',
          run: () =>
            runWorkload(
              { ...infoCommon, target: 'blk', path: cow, layout: 'half', depth: 32, io: 'async', verify: true },
              { nodeArgs: profArgs('rand-read-async-qd32') },
            ),
        },
      );
    }
    for (const v of variants) v.before = () => prepare(files);
    const { out, errors } = interleave(S.reps, variants);
    const bl = best(out['node readSync'], true);
    const g = (k) => best(out[k], true);
    const blName = 'raw file, Node readSync 4 KiB';
    const goalRow = (id, title, key, samples) =>
      addRow({
        id,
        title,
        unit: 'IOPS',
        blk: g(key)?.value,
        baseline: bl?.value,
        baselineName: blName,
        goal: { min: 0.7 },
        rssKiB: g(key)?.maxRssKiB,
        note: cow ? errors[key] : pending('@blk/cow'),
        samples,
      });
    goalRow('rand-read-qd1', `random 4 KiB read, COW half in overlay, 1 in flight`, 'blk cow qd1', out);
    goalRow('rand-read-qd32', `random 4 KiB read, COW half in overlay, 32 in flight`, 'blk cow qd32');
    // The info rows: one variant each against the same baseline.
    const infoRow = (id, title, key, note) =>
      addRow({
        id,
        info: true,
        title,
        unit: 'IOPS',
        blk: g(key)?.value,
        baseline: bl?.value,
        baselineName: blName,
        rssKiB: g(key)?.maxRssKiB,
        note: note ?? errors[key],
      });
    infoRow('rand-read-raw-qd1', '  (info) raw image, 1 in flight', 'blk raw qd1');
    infoRow('rand-read-raw-qd32', '  (info) raw image, 32 in flight', 'blk raw qd32');
    infoRow(
      'rand-read-fs-qd1',
      "  (info) COW through Node's fs.readSync (BLK_NATIVE_IO=off), 1 in flight",
      'blk cow fs qd1',
      cow ? undefined : pending('@blk/cow'),
    );
    infoRow(
      'rand-read-async-qd32',
      "  (info) COW with io: 'async', 32 in flight",
      'blk cow async qd32',
      cow ? undefined : pending('@blk/cow'),
    );
    addRow({
      id: 'rand-read-fh',
      info: true,
      title: '  (info) plain Node awaited FileHandle.read, 1 / 32 in flight',
      unit: 'IOPS',
      blk: g('node fh.read qd1')?.value,
      baseline: bl?.value,
      baselineName: blName,
      note:
        `32 in flight: ${fmtRate(g('node fh.read qd32')?.value, 'IOPS')} (libuv thread pool, UV_THREADPOOL_SIZE default 4); `
        + `fs.read with a callback, 32 in flight: ${fmtRate(g('node fs.read cb qd32')?.value, 'IOPS')} (the ceiling of io: 'async')`,
    });
  },
});

groups.push({
  id: 'seq-write',
  rows: ['seq-write'],
  run() {
    const b = base();
    const variant = outputVariant('w-');
    const common = { task: 'writeSeq', size: S.size, req: REQ };
    const variants = [
      variant('node writeSync', 'sync.raw', { ...common, target: 'node-sync' }),
      variant('node FileHandle.write', 'fh.raw', { ...common, target: 'node-fh' }),
    ];
    if (have.cow) variants.push(variant('blk cow', 'seq.cow', { ...common, target: 'blk', backing: b }, 'seq-write'));
    for (const v of variants) v.before = () => prepare([b]);
    const { out: res, errors } = interleave(S.reps, variants);
    const bs = best(res['node writeSync'], true),
      bf = best(res['node FileHandle.write'], true);
    const bl = [bs, bf].filter(Boolean).reduce((a, x) => (!a || x.value > a.value ? x : a), undefined);
    const blName = bl === bs ? 'writeSync' : 'FileHandle.write';
    const c = best(res['blk cow'], true);
    addRow({
      id: 'seq-write',
      title: `seq write ${fmtBytes(S.size)} into a fresh COW, 1 MiB, then flush()`,
      unit: 'MB/s',
      blk: c?.value,
      baseline: bl?.value,
      baselineName: `fresh raw file, Node ${blName} + fdatasync`,
      goal: { min: 0.8 },
      rssKiB: c?.maxRssKiB,
      note: have.cow
        ? (errors['blk cow']
          ?? `writeSync ${fmtRate(bs?.value, 'MB/s')}, FileHandle.write ${fmtRate(bf?.value, 'MB/s')}; blk flush ${c ? (c.extra.flushSeconds * 1000).toFixed(0) : '?'} ms of ${c ? (c.seconds * 1000).toFixed(0) : '?'} ms`)
        : pending('@blk/cow'),
      samples: res,
    });
  },
});

groups.push({
  id: 'unaligned-write',
  rows: ['unaligned-write'],
  run() {
    const b = base();
    const variant = outputVariant('uw-');
    const common = { task: 'writeSeq', size: S.size, req: REQ, target: 'blk', backing: b };
    const variants = have.cow
      ? [
          variant('blk cow aligned', 'aligned.cow', common, 'unaligned-write-aligned'),
          variant('blk cow offset 1', 'shifted.cow', { ...common, shift: 1 }, 'unaligned-write'),
        ]
      : [];
    for (const v of variants) v.before = () => prepare([b]);
    const { out: res, errors } = interleave(S.reps, variants);
    const a = best(res['blk cow aligned'], true),
      u = best(res['blk cow offset 1'], true);
    addRow({
      id: 'unaligned-write',
      title: `seq write into a fresh COW, 1 MiB requests at offset 1 (unaligned), then flush()`,
      unit: 'MB/s',
      blk: u?.value,
      baseline: a?.value,
      baselineName: 'the same, 1 MiB requests at aligned offsets',
      goal: { min: 0.8 },
      rssKiB: u?.maxRssKiB,
      note: have.cow
        ? (errors['blk cow offset 1']
          ?? errors['blk cow aligned']
          ?? "only the partial first and last sectors of each request are read-modify-written; the middle is written from the caller's buffer")
        : pending('@blk/cow'),
      samples: res,
    });
  },
});

groups.push({
  id: 'rand-write',
  rows: ['rand-write'],
  run() {
    const b = base();
    const variant = outputVariant('rw-', discardLater);
    const common = { task: 'writeRand', size: S.size, count: S.randWrites, seed: 2 };
    const variants = [variant('node writeSync', 'sync.raw', { ...common, target: 'node-sync' })];
    if (have.cow) variants.push(variant('blk cow', 'rand.cow', { ...common, target: 'blk', backing: b }, 'rand-write'));
    for (const v of variants) v.before = () => prepare([b]);
    const { out: res, errors } = interleave(S.reps, variants);
    const bl = best(res['node writeSync'], true),
      c = best(res['blk cow'], true);
    addRow({
      id: 'rand-write',
      title: `random 4 KiB writes (${S.randWrites}) into a fresh COW, then flush()`,
      unit: 'IOPS',
      blk: c?.value,
      baseline: bl?.value,
      baselineName: `fresh ${fmtBytes(S.size)} raw file, Node writeSync + fdatasync`,
      goal: { min: 0.5 },
      rssKiB: c?.maxRssKiB,
      note: have.cow
        ? (errors['blk cow']
          ?? (c
            ? `blk flush ${(c.extra.flushSeconds * 1000).toFixed(0)} ms of ${(c.seconds * 1000).toFixed(0)} ms; baseline fdatasync ${(bl.extra.flushSeconds * 1000).toFixed(0)} ms`
            : undefined))
        : pending('@blk/cow'),
      samples: res,
    });
  },
});

const node = process.execPath;
const blkCli = (...args) => [node, ...(opts.profile ? profArgs(`cli-${args[0]}`) : []), CLI, ...args];

/** Compares two files chunk by chunk; returns undefined when equal, else a message. */
function compareFiles(a, b) {
  const sa = fs.statSync(a).size,
    sb = fs.statSync(b).size;
  if (sa !== sb) return `sizes differ: ${sa} vs ${sb}`;
  const fa = fs.openSync(a, 'r'),
    fb = fs.openSync(b, 'r');
  const ba = Buffer.allocUnsafe(4 * MiB),
    bb = Buffer.allocUnsafe(4 * MiB);
  try {
    for (let off = 0; off < sa; off += ba.length) {
      const na = fs.readSync(fa, ba, 0, ba.length, off),
        nb = fs.readSync(fb, bb, 0, bb.length, off);
      if (na !== nb || ba.compare(bb, 0, nb, 0, na) !== 0) return `contents differ in the 4 MiB block at ${off}`;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
  return undefined;
}
const allocated = (p) => fs.statSync(p).blocks * 512;

/**
 * A timed run of `argv`, then an untimed `sync -d file` that writes its dirty pages back (its time is
 * the row notes' "durable" figure) so that they do not slow the next run.
 */
function runThenSync(argv, file) {
  const r = runCommand(argv);
  const sync = runCommand(['sync', '-d', file], { rss: false });
  return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB, syncSeconds: sync.seconds };
}

groups.push({
  id: 'commit',
  rows: ['commit', 'commit-durable'],
  run() {
    base();
    let uml;
    const pairs = {};
    const checks = {};
    // Neither uml_moo nor `blk commit -t unsafe` syncs: the goal row compares those. After each timed run an
    // untimed `sync -d base` writes the dirty pages back (its time is the note's "durable" figure) so that they
    // do not slow the next run. `blk commit` (default -t writeback) flushes: the info row.
    const variants = [
      {
        key: 'uml_moo -d',
        before: () => {
          uml = makeCommitPair('commit-uml');
          prepare([uml.base, [uml.overlay, cowWarmRanges(S.size, uml.runs)]]);
        },
        run: () => {
          return runThenSync(['uml_moo', '-d', uml.overlay], uml.base);
        },
      },
    ];
    const blkVariants = [
      ['blk commit -t unsafe', 'commit-blk-unsafe', ['-t', 'unsafe']],
      ['blk commit', 'commit-blk', []],
    ];
    if (have.cli) {
      for (const [key, sub, extra] of blkVariants) {
        variants.push({
          key,
          before: () => {
            const p = makeCommitPair(sub);
            pairs[key] = p;
            prepare([p.base, [p.overlay, cowWarmRanges(S.size, p.runs)]]);
          },
          run: () => {
            const p = pairs[key];
            return runThenSync(blkCli('commit', ...extra, p.overlay), p.base);
          },
        });
      }
    }
    // Compare each merged base with uml_moo's once both commits have run.
    const ready = new Set();
    const { out, errors } = interleave(
      S.cliReps,
      variants.map((v) => ({
        ...v,
        before: () => {
          ready.delete(v.key);
          v.before();
        },
        run: (r) => {
          const res = v.run(r);
          ready.add(v.key);
          return res;
        },
        after: () => {
          if (!ready.has('uml_moo -d')) return;
          for (const [key] of blkVariants) {
            if (ready.has(key) && checks[key] === undefined)
              checks[key] = compareFiles(uml.base, pairs[key].base) ?? 'ok';
          }
        },
      })),
    );
    for (const sub of ['commit-uml', ...blkVariants.map((v) => v[1])])
      fs.rmSync(`${dir}/${sub}`, { recursive: true, force: true });
    const bl = best(out['uml_moo -d'], false),
      c = best(out['blk commit -t unsafe'], false),
      d = best(out['blk commit'], false);
    const durable = bl ? bl.value + bl.syncSeconds : undefined;
    const checkNote = (key) => {
      const check = checks[key];
      return check && check !== 'ok' ? `WRONG RESULT: merged base differs from uml_moo's: ${check}` : undefined;
    };
    const wrongOf = (key) => checks[key] !== undefined && checks[key] !== 'ok';
    addRow({
      id: 'commit',
      title: `\`blk commit -t unsafe\`, ${fmtBytes(S.size)} COW, 25% in scattered 1 MiB runs`,
      unit: 's',
      blk: c?.value,
      baseline: bl?.value,
      baselineName: '`uml_moo -d` on an identical copy (neither syncs)',
      goal: { max: 0.4 },
      rssKiB: c?.maxRssKiB,
      note: !have.cli
        ? pending('@blk/cli')
        : (errors['blk commit -t unsafe']
          ?? checkNote('blk commit -t unsafe')
          ?? `merged bases identical to uml_moo's; like with like: uml_moo and \`-t unsafe\` never sync; with \`sync -d base\` afterwards: uml_moo ${fmtRate(durable, 's')}, blk -t unsafe ${fmtRate(c ? c.value + c.syncSeconds : undefined, 's')}`),
      wrong: wrongOf('blk commit -t unsafe'),
      samples: out,
    });
    addRow({
      id: 'commit-durable',
      info: true,
      title: '  (info) `blk commit` (default -t writeback: flushed, durable) vs uml_moo -d + `sync -d base`',
      unit: 's',
      blk: d?.value,
      baseline: durable,
      baselineName: '`uml_moo -d` + `sync -d base`',
      rssKiB: d?.maxRssKiB,
      note: !have.cli
        ? pending('@blk/cli')
        : (errors['blk commit']
          ?? checkNote('blk commit')
          ?? `blk commit (durable) ${fmtRate(d?.value, 's')} = ${bl && d ? fmtRatio(d.value / bl.value) : '—'} of uml_moo -d without sync`),
      wrong: wrongOf('blk commit'),
    });
  },
});

groups.push({
  id: 'convert',
  rows: ['convert-uml', 'convert-qemu', 'convert-durable'],
  run() {
    const cow = convertCow();
    const runs = commitRuns(S.size);
    const merged = `${dir}/merged.raw`;
    const inputs = () => [base(), [cow, cowWarmRanges(S.size, runs)]];
    // The merged image for qemu-img: uml_moo's output, made once (untimed).
    if (!fs.existsSync(merged)) {
      runCommand(['uml_moo', cow, merged], { rss: false });
      runCommand(['sync', '-d', merged], { rss: false });
    }
    const outs = {
      uml: `${dir}/conv-uml.raw`,
      qemu: `${dir}/conv-qemu.raw`,
      blk: `${dir}/conv-blk.raw`,
      blkUnsafe: `${dir}/conv-blk-unsafe.raw`,
    };
    const rm = (k) => () => fs.rmSync(outs[k], { force: true });
    const checks = {};
    let blkAlloc, qemuAlloc;
    // Neither C tool syncs (qemu-img convert's default target cache mode is unsafe; checked with strace), and
    // neither does `blk convert -t unsafe`: the goal rows compare those. After each timed run of a tool that does
    // not sync, an untimed `sync -d out` writes the dirty pages back (the durable figures of the notes) so that
    // they do not slow the next run. `blk convert` (default -t writeback) flushes: the info row.
    const variants = [
      {
        key: 'uml_moo (copy)',
        before: () => prepare(inputs()),
        after: rm('uml'),
        run: () => {
          return runThenSync(['uml_moo', cow, outs.uml], outs.uml);
        },
      },
      {
        key: 'qemu-img convert',
        before: () => prepare([merged]),
        after: () => {
          qemuAlloc ??= allocated(outs.qemu);
          rm('qemu')();
        },
        run: () => {
          return runThenSync(['qemu-img', 'convert', '-f', 'raw', '-O', 'raw', merged, outs.qemu], outs.qemu);
        },
      },
    ];
    if (have.cli) {
      variants.push({
        key: 'blk convert -t unsafe',
        before: () => prepare(inputs()),
        after: () => {
          if (fs.existsSync(outs.blkUnsafe)) {
            checks.unsafe ??= compareFiles(merged, outs.blkUnsafe) ?? 'ok';
            blkAlloc ??= allocated(outs.blkUnsafe);
          }
          rm('blkUnsafe')();
        },
        run: () => {
          return runThenSync(blkCli('convert', '-t', 'unsafe', '-O', 'raw', cow, outs.blkUnsafe), outs.blkUnsafe);
        },
      });
      variants.push({
        key: 'blk convert',
        before: () => prepare(inputs()),
        after: () => {
          if (fs.existsSync(outs.blk)) checks.durable ??= compareFiles(merged, outs.blk) ?? 'ok';
          rm('blk')();
        },
        run: () => {
          const r = runCommand(blkCli('convert', '-O', 'raw', cow, outs.blk));
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      });
    }
    const { out, errors } = interleave(S.cliReps, variants);
    const u = best(out['uml_moo (copy)'], false),
      q = best(out['qemu-img convert'], false);
    const c = best(out['blk convert -t unsafe'], false),
      d = best(out['blk convert'], false);
    const wrongU = checks.unsafe !== undefined && checks.unsafe !== 'ok';
    const wrongD = checks.durable !== undefined && checks.durable !== 'ok';
    const uDur = u ? u.value + u.syncSeconds : undefined,
      qDur = q ? q.value + q.syncSeconds : undefined;
    const note = !have.cli
      ? pending('@blk/cli')
      : (errors['blk convert -t unsafe']
        ?? (wrongU
          ? `WRONG RESULT: output differs from the merged image: ${checks.unsafe}`
          : `output identical to the merged image; allocated on disk: blk ${fmtBytes(blkAlloc ?? 0)}, qemu-img ${fmtBytes(qemuAlloc ?? 0)}`
            + `; like with like: neither C tool nor \`blk convert -t unsafe\` syncs; with \`sync -d out\` afterwards uml_moo ${fmtRate(uDur, 's')}, qemu-img ${fmtRate(qDur, 's')}, `
            + `blk -t unsafe ${fmtRate(c ? c.value + c.syncSeconds : undefined, 's')}`));
    addRow({
      id: 'convert-uml',
      title: `\`blk convert -t unsafe -O raw\` of that chain vs uml_moo`,
      unit: 's',
      blk: c?.value,
      baseline: u?.value,
      baselineName: '`uml_moo` (copying form; no sync)',
      goal: { max: 0.2 },
      rssKiB: c?.maxRssKiB,
      note,
      wrong: wrongU,
      samples: out,
    });
    addRow({
      id: 'convert-qemu',
      title: `\`blk convert -t unsafe -O raw\` of that chain vs qemu-img`,
      unit: 's',
      blk: c?.value,
      baseline: q?.value,
      baselineName: '`qemu-img convert -f raw -O raw` of the merged image (default -t unsafe)',
      goal: { max: 1.2 },
      rssKiB: c?.maxRssKiB,
      note: errors['qemu-img convert'],
      wrong: wrongU,
    });
    addRow({
      id: 'convert-durable',
      info: true,
      title: '  (info) `blk convert -O raw` (default -t writeback: flushed, durable) vs qemu-img + `sync -d out`',
      unit: 's',
      blk: d?.value,
      baseline: qDur,
      baselineName: '`qemu-img convert` + `sync -d out`',
      rssKiB: d?.maxRssKiB,
      note: !have.cli
        ? pending('@blk/cli')
        : (errors['blk convert']
          ?? (wrongD
            ? `WRONG RESULT: output differs from the merged image: ${checks.durable}`
            : `blk convert (durable) ${fmtRate(d?.value, 's')}: ${u && d ? fmtRatio(d.value / uDur) : '—'} of uml_moo + sync, ${u && d ? fmtRatio(d.value / u.value) : '—'} of uml_moo without sync`)),
      wrong: wrongD,
    });
    fs.rmSync(merged, { force: true });
  },
});

// The durable convert of issue 12: 512 MiB (quick: S.size), 25% of it in the overlay (1 MiB of every 4 MiB), written
// with `blk convert -O raw` (default -t writeback: the target is fsync'ed, then its directory) against the disk's own
// limit for the same bytes, `cp --sparse=always` of the merged raw image followed by `sync` of the copy and its
// directory. Both read warm inputs; both runs are interleaved in one invocation.
const DURABLE_SIZE = QUICK ? S.size : 512 * MiB;
const durableBase = () => fixture('durable-base.raw', (p) => writeRaw(p, DURABLE_SIZE, TAG_BASE));
const durableCow = () =>
  fixture('durable.cow', (p) => {
    writeCow(p, { size: DURABLE_SIZE, backingPath: durableBase(), runs: commitRuns(DURABLE_SIZE), fill: overlayFill });
    return p;
  });

groups.push({
  id: 'durable-convert',
  rows: ['durable-convert'],
  run() {
    const cow = durableCow();
    const runs = commitRuns(DURABLE_SIZE);
    const merged = `${dir}/durable-merged.raw`;
    if (!fs.existsSync(merged)) {
      runCommand(['uml_moo', cow, merged], { rss: false });
      runCommand(['sync', '-d', merged], { rss: false });
    }
    const outs = { blk: `${dir}/durable-blk.raw`, cp: `${dir}/durable-cp.raw` };
    const rm = (k) => () => fs.rmSync(outs[k], { force: true });
    let check;
    const variants = [
      {
        key: 'cp --sparse + sync',
        before: () => prepare([merged]),
        after: rm('cp'),
        run: () => {
          const r = runCommand(['cp', '--sparse=always', merged, outs.cp]);
          const sync = runCommand(['sync', outs.cp, dir], { rss: false });
          return { value: r.seconds + sync.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      },
    ];
    if (have.cli) {
      variants.push({
        key: 'blk convert (durable)',
        before: () => prepare([durableBase(), [cow, cowWarmRanges(DURABLE_SIZE, runs)]]),
        after: () => {
          if (fs.existsSync(outs.blk)) check ??= compareFiles(merged, outs.blk) ?? 'ok';
          rm('blk')();
        },
        run: () => {
          const r = runCommand(blkCli('convert', '-O', 'raw', cow, outs.blk));
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      });
    }
    const { out, errors } = interleave(S.cliReps, variants);
    const c = best(out['cp --sparse + sync'], false),
      b = best(out['blk convert (durable)'], false);
    const wrong = check !== undefined && check !== 'ok';
    addRow({
      id: 'durable-convert',
      title: `durable \`blk convert -O raw\` of a ${fmtBytes(DURABLE_SIZE)} cow chain (25% in the overlay) vs cp + sync`,
      unit: 's',
      blk: b?.value,
      baseline: c?.value,
      baselineName: '`cp --sparse=always` of the merged image + `sync` of it and its directory',
      goal: { max: 1.3 },
      rssKiB: b?.maxRssKiB,
      wrong,
      samples: out,
      note: !have.cli
        ? pending('@blk/cli')
        : (errors['blk convert (durable)']
          ?? errors['cp --sparse + sync']
          ?? (wrong
            ? `WRONG RESULT: output differs from the merged image: ${check}`
            : 'output identical to the merged image')),
    });
    fs.rmSync(merged, { force: true });
  },
});

// The durable commit of issue 12: the same 512 MiB chain (quick: S.size), 25% of it in the overlay, committed with
// `blk commit` (default -t writeback: the base, the overlay and the journal's directory are flushed at each step of
// its crash-safety protocol) against `uml_moo -d` (which never syncs) followed by `sync -d base`. Both start from
// identical copies whose pages are clean (written back before the timed run), with warm page cache.
groups.push({
  id: 'durable-commit',
  rows: ['durable-commit'],
  run() {
    const pairs = {};
    const checks = {};
    const make = (key, sub) => {
      const p = makeCommitPair(sub, DURABLE_SIZE, durableBase);
      pairs[key] = p;
      prepare([p.base, [p.overlay, cowWarmRanges(DURABLE_SIZE, p.runs)]]);
    };
    const variants = [
      {
        key: 'uml_moo -d + sync',
        before: () => make('uml_moo -d + sync', 'durable-commit-uml'),
        run: () => {
          const p = pairs['uml_moo -d + sync'];
          const r = runCommand(['uml_moo', '-d', p.overlay]);
          const sync = runCommand(['sync', '-d', p.base], { rss: false });
          return { value: r.seconds + sync.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      },
    ];
    // What no Node program can beat: starting node, and writing the bytes the commit copies (a quarter of the
    // image) to the disk with fdatasync. Shown in the note, against the goal.
    const floorFile = `${dir}/durable-commit-floor.raw`;
    variants.push({
      key: 'floor',
      after: () => fs.rmSync(floorFile, { force: true }),
      run: () => {
        const n = runCommand([node, '-e', '0'], { rss: false });
        const dd = runCommand(
          [
            'dd',
            'if=/dev/zero',
            `of=${floorFile}`,
            'bs=1M',
            `count=${DURABLE_SIZE / 4 / MiB}`,
            'conv=fdatasync',
            'status=none',
          ],
          { rss: false },
        );
        return { value: n.seconds + dd.seconds, unit: 's', node: n.seconds, dd: dd.seconds };
      },
    });
    if (have.cli) {
      variants.push({
        key: 'blk commit (durable)',
        before: () => make('blk commit (durable)', 'durable-commit-blk'),
        run: () => {
          const r = runCommand(blkCli('commit', pairs['blk commit (durable)'].overlay));
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      });
    }
    const ready = new Set();
    const { out, errors } = interleave(
      S.cliReps,
      variants.map((v) => ({
        ...v,
        before: () => {
          ready.delete(v.key);
          v.before?.();
        },
        run: (r) => {
          const res = v.run(r);
          ready.add(v.key);
          return res;
        },
        after: () => {
          v.after?.();
          if (ready.has('uml_moo -d + sync') && ready.has('blk commit (durable)') && checks.blk === undefined) {
            checks.blk = compareFiles(pairs['uml_moo -d + sync'].base, pairs['blk commit (durable)'].base) ?? 'ok';
          }
        },
      })),
    );
    for (const sub of ['durable-commit-uml', 'durable-commit-blk'])
      fs.rmSync(`${dir}/${sub}`, { recursive: true, force: true });
    const u = best(out['uml_moo -d + sync'], false),
      b = best(out['blk commit (durable)'], false),
      f = best(out.floor, false);
    const wrong = checks.blk !== undefined && checks.blk !== 'ok';
    const floorNote = f
      ? `; floor (\`node -e 0\` ${fmtRate(f.node, 's')} + \`dd\` of ${fmtBytes(DURABLE_SIZE / 4)} with fdatasync ${fmtRate(f.dd, 's')}): `
        + `${fmtRate(f.value, 's')} = ${u ? fmtRatio(f.value / u.value) : '—'} of the baseline`
      : '';
    addRow({
      id: 'durable-commit',
      title: `durable \`blk commit\` of a ${fmtBytes(DURABLE_SIZE)} cow chain (25% in the overlay) vs uml_moo -d + sync`,
      unit: 's',
      blk: b?.value,
      baseline: u?.value,
      baselineName: '`uml_moo -d` on an identical copy + `sync -d base`',
      goal: { max: 0.2 },
      rssKiB: b?.maxRssKiB,
      wrong,
      samples: out,
      note: !have.cli
        ? pending('@blk/cli')
        : (errors['blk commit (durable)']
          ?? errors['uml_moo -d + sync']
          ?? (wrong
            ? `WRONG RESULT: merged base differs from uml_moo's: ${checks.blk}`
            : `merged base identical to uml_moo's${floorNote}`)),
    });
  },
});

/** Checks `blk map --output=json` against the runs written: extents at depth 0 must be exactly those runs. */
function checkMap(stdout, runs) {
  let list;
  try {
    list = JSON.parse(stdout);
  } catch (err) {
    return `output is not JSON: ${err.message}`;
  }
  if (!Array.isArray(list)) return 'output is not a JSON array';
  const top = list.filter((e) => e.depth === 0);
  if (list.length > 0 && list[0].depth === undefined) return 'no depth field; not checked';
  if (top.length !== runs.length) return `${top.length} extents at depth 0, want ${runs.length}`;
  for (let i = 0; i < runs.length; i++) {
    if (top[i].start !== runs[i][0] || top[i].length !== runs[i][1])
      return `extent ${i} is ${top[i].start}+${top[i].length}, want ${runs[i][0]}+${runs[i][1]}`;
  }
  return 'ok';
}

groups.push({
  id: 'map',
  rows: ['map'],
  run() {
    const m = mapFixture();
    const l = cowLayout(S.mapSize);
    const inputs = () => [[m.cow, [[0, l.dataOffset]]]];
    let check, extents;
    const variants = [];
    if (m.qcow2) {
      variants.push({
        key: 'qemu-img map (qcow2)',
        before: () => prepare([m.qcow2]),
        run: () => {
          const r = runCommand(['qemu-img', 'map', '--output=json', m.qcow2], { capture: true });
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      });
    }
    if (have.cli) {
      variants.push({
        key: 'blk map',
        before: () => prepare(inputs()),
        run: () => {
          const r = runCommand(blkCli('map', '--output=json', m.cow), { capture: true });
          if (check === undefined) {
            check = checkMap(r.stdout, m.runs);
            try {
              extents = JSON.parse(r.stdout).length;
            } catch {
              /* above */
            }
          }
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      });
    }
    const { out, errors } = interleave(S.cliReps + 1, variants);
    const q = best(out['qemu-img map (qcow2)'], false),
      c = best(out['blk map'], false);
    const wrong = check !== undefined && check !== 'ok' && !check.includes('not checked');
    addRow({
      id: 'map',
      title: `\`blk map --output=json\`, ${fmtBytes(S.mapSize)} COW, ${S.mapRuns} scattered runs`,
      unit: 's',
      blk: c?.value,
      baseline: q?.value,
      baselineName: `(reference) \`qemu-img map\` of a qcow2 with the same runs`,
      goal: { on: 'value', max: 1, maxRssKiB: 64 * 1024 },
      rssKiB: c?.maxRssKiB,
      wrong,
      note: !have.cli
        ? pending('@blk/cli')
        : (errors['blk map']
          ?? `goal: < 1 s and peak RSS < 64 MiB; ${extents ?? '?'} extents; check: ${check}; bitmap ${fmtBytes(l.bitmapLen)}`),
      samples: out,
    });
  },
});

/**
 * A raw base of S.mapSize with `count` 4 KiB data runs (one per slot, 64 KiB-aligned, in the slot's first
 * half) under a COW of the same size holding MAP_CHAIN_TOP 64 KiB runs (in the second half of some slots):
 * no run of one layer touches a run of the other, so the chain has exactly count + MAP_CHAIN_TOP data runs.
 */
const MAP_CHAIN_TOP = 16;
const mapChainFixture = (count) =>
  fixture(`map-chain-${count}`, (d) => {
    fs.mkdirSync(d);
    const backing = `${d}/base.raw`;
    const grid = Math.max(count, MAP_CHAIN_TOP);
    const slot = Math.floor(S.mapSize / grid / (64 * KiB)) * 64 * KiB;
    const rnd = prng(21);
    const baseRuns = [];
    const fd = fs.openSync(backing, 'w');
    const data = new Uint8Array(4 * KiB);
    for (let i = 0; i < count; i++) {
      const start = i * slot + (rnd() % (slot / 2 / (64 * KiB))) * 64 * KiB;
      fillPattern(data, start, TAG_BASE);
      fs.writeSync(fd, data, 0, data.length, start);
      baseRuns.push([start, data.length]);
    }
    fs.ftruncateSync(fd, S.mapSize);
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
    const topRuns = [];
    for (let j = 0; j < MAP_CHAIN_TOP; j++) {
      const i = Math.floor((j * grid) / MAP_CHAIN_TOP);
      topRuns.push([i * slot + slot / 2 + (rnd() % Math.max(1, slot / 4 / (64 * KiB))) * 64 * KiB, 64 * KiB]);
    }
    const cow = `${d}/top.cow`;
    writeCow(cow, { size: S.mapSize, backingPath: backing, runs: topRuns, fill: overlayFill });
    return { dir: d, backing, cow, baseRuns, topRuns };
  });

groups.push({
  id: 'map-chain',
  rows: ['map-chain', 'map-chain-linear'],
  run() {
    if (!have.cow) {
      addRow({
        id: 'map-chain',
        title: '`Image.map()` of a COW over a fragmented raw base',
        unit: 'µs/run',
        note: pending('@blk/cow'),
      });
      return;
    }
    // 0 runs measures the walk's fixed costs (process, open, JIT, the top's bitmap), which the per-run figures leave out.
    const counts = [0, S.mapChainRuns / 10, S.mapChainRuns];
    const fx = Object.fromEntries(counts.map((n) => [n, mapChainFixture(n)]));
    const l = cowLayout(S.mapSize);
    const variants = [];
    for (const n of counts) {
      const m = fx[n];
      const baseWarm = [m.backing, m.baseRuns];
      variants.push({
        key: `chain ${n}`,
        before: () =>
          prepare([[m.cow, [[0, l.dataOffset], ...m.topRuns.map(([s, k]) => [l.dataOffset + s, k])]], baseWarm]),
        run: () =>
          runWorkload(
            { task: 'mapWalk', path: m.cow, expectData: n + MAP_CHAIN_TOP },
            { nodeArgs: profArgs(`map-chain-${n}`) },
          ),
      });
      variants.push({
        key: `base ${n}`,
        before: () => prepare([baseWarm]),
        run: () =>
          runWorkload({ task: 'mapWalk', path: m.backing, expectData: n }, { nodeArgs: profArgs(`map-base-${n}`) }),
      });
    }
    const { out, errors } = interleave(S.reps, variants);
    const [, small, large] = counts;
    const at = (kind, n) => best(out[`${kind} ${n}`], false);
    /** Time per run above the fixed cost of the same walk over a base without runs. */
    const perRun = (kind, n) => {
      const r = at(kind, n),
        z = at(kind, 0);
      return r && z && r.runs > z.runs ? ((r.seconds - z.seconds) * 1e6) / (r.runs - z.runs) : undefined;
    };
    const c1 = perRun('chain', small),
      c2 = perRun('chain', large),
      b1 = perRun('base', small),
      b2 = perRun('base', large);
    const err =
      Object.entries(errors)
        .map(([k, e]) => `${k}: ${e}`)
        .join('; ') || undefined;
    const walk = (kind, n) => {
      const r = at(kind, n);
      return r ? `${fmtRate(r.seconds, 's')} for ${r.runs} runs, status calls per layer ${r.calls.join(' / ')}` : '—';
    };
    addRow({
      id: 'map-chain',
      title: `\`Image.map()\` of a ${fmtBytes(S.mapSize)} COW (${MAP_CHAIN_TOP} runs) over a raw base with ${large} runs, time per run`,
      unit: 'µs/run',
      blk: c2,
      baseline: b2,
      baselineName: '`Image.map()` of the base alone (1 layer), time per run',
      goal: { max: 2 },
      rssKiB: at('chain', large)?.maxRssKiB,
      note:
        err
        ?? `goal: ≤ 2× a 1-layer map's time per run (linear in runs, not runs × depth). Per run = (time − time of the same walk over a base without runs) ÷ (runs − its runs). `
          + `chain: ${walk('chain', large)} (top / base); base alone: ${walk('base', large)}; no runs: chain ${walk('chain', 0)}, base ${walk('base', 0)}`,
      samples: out,
    });
    addRow({
      id: 'map-chain-linear',
      title: `  same chain, time per run with ${large} vs ${small} runs in the base`,
      unit: 'µs/run',
      blk: c2,
      baseline: c1,
      baselineName: `the same walk over a base with ${small} runs`,
      goal: { max: 1.5 },
      note:
        err
        ?? `goal: ≤ 1.5× (time per run does not grow with the runs; runs × depth or worse would); ${small} runs: chain ${walk('chain', small)}, `
          + `base alone ${walk('base', small)}; chain ÷ base per run: ${c1 && b1 ? fmtRatio(c1 / b1) : '—'} at ${small}, ${c2 && b2 ? fmtRatio(c2 / b2) : '—'} at ${large}`,
    });
  },
});

groups.push({
  id: 'open',
  rows: ['open'],
  run() {
    const m = mapFixture();
    if (!have.cow) {
      addRow({
        id: 'open',
        title: `\`openImage\` of a ${fmtBytes(S.mapSize)} COW, in-process`,
        unit: 'ms',
        note: pending('@blk/cow'),
        goal: { on: 'value', max: 10 },
      });
      return;
    }
    const l = cowLayout(S.mapSize);
    const res = [];
    let error;
    for (let i = 0; i < S.openProcs; i++) {
      prepare([[m.cow, [[0, l.dataOffset]]]]);
      try {
        res.push(runWorkload({ task: 'openInfo', path: m.cow, n: 20 }, { nodeArgs: profArgs('open') }));
      } catch (err) {
        error = String(err.message);
        break;
      }
    }
    const first = res.length ? median(res.map((r) => r.firstMs)) : undefined;
    const warmMs = res.length ? median(res.map((r) => r.warmMedianMs)) : undefined;
    addRow({
      id: 'open',
      title: `\`openImage\` of a ${fmtBytes(S.mapSize)} COW (first open in a process)`,
      unit: 'ms',
      blk: first,
      goal: { on: 'value', max: 10 },
      rssKiB: res.length ? Math.max(...res.map((r) => r.maxRssKiB)) : undefined,
      note:
        error
        ?? `median over ${res.length} processes; warm re-open ${warmMs?.toFixed(2)} ms; import of @blk/images ${res.length ? median(res.map((r) => r.importMs)).toFixed(1) : '?'} ms`,
      samples: { open: res },
    });
  },
});

groups.push({
  id: 'info',
  rows: ['info'],
  run() {
    const m = mapFixture();
    const l = cowLayout(S.mapSize);
    const nodeRuns = [],
      blkRuns = [];
    let error;
    prepare([[m.cow, [[0, l.dataOffset]]]]);
    runCommand([node, '-e', '0'], { rss: false }); // warm the node binary
    for (let i = 0; i < S.infoRuns; i++) {
      nodeRuns.push(runCommand([node, '-e', '0'], { rss: false }).seconds);
      if (have.cli && !error) {
        try {
          blkRuns.push(runCommand(blkCli('info', m.cow), { rss: false }).seconds);
        } catch (err) {
          error = String(err.message);
        }
      }
    }
    const nodeRss = runCommand([node, '-e', '0']).maxRssKiB;
    let blkRss;
    if (have.cli && !error) blkRss = runCommand(blkCli('info', m.cow)).maxRssKiB;
    const nb = median(nodeRuns),
      bb = blkRuns.length ? median(blkRuns) : undefined;
    addRow({
      id: 'info',
      title: `whole \`blk info\` of a ${fmtBytes(S.mapSize)} COW (process wall time)`,
      unit: 's',
      blk: bb,
      baseline: nb,
      baselineName: '`node -e 0` process',
      goal: { max: 2 },
      rssKiB: blkRss,
      note: !have.cli
        ? pending('@blk/cli')
        : (error ?? `median of ${S.infoRuns} interleaved runs; node -e 0 peak RSS ${(nodeRss / 1024).toFixed(0)} MiB`),
      samples: { node: nodeRuns, blk: blkRuns },
    });
  },
});

// ---------------------------------------------------------------- plug-in groups
// Each bench/groups/*.mjs default-exports `(ctx) => group | group[]`, a group being
// { id, rows, run() } like the ones above (run may be async). New packages add their rows there, so
// parallel work does not edit this file; ctx is everything the groups above use.
const groupsDir = fileURLToPath(new URL('./groups/', import.meta.url));
if (fs.existsSync(groupsDir)) {
  const ctx = {
    S,
    QUICK,
    MiB,
    REQ,
    opts,
    dir,
    have,
    env,
    log,
    node: process.execPath,
    CLI,
    fixture,
    fixturePath,
    base,
    prepare,
    interleave,
    best,
    addRow,
    pending,
    fmtRatio,
    fmtRate,
    fmtBytes,
    runWorkload,
    runCommand,
    blkCli,
    profArgs,
    discardLater,
    warm,
    dropCaches,
  };
  for (const name of fs
    .readdirSync(groupsDir)
    .filter((n) => n.endsWith('.mjs'))
    .sort()) {
    const mod = await import(new URL(`./groups/${name}`, import.meta.url).href);
    const made = await mod.default(ctx);
    groups.push(...(Array.isArray(made) ? made : [made]));
  }
}

// ---------------------------------------------------------------- run
log(
  `blk bench: ${env.mode} mode, ${env.cores} cores, load ${env.loadavgStart.join(' ')}, temp dir ${dir} (${env.fsType})`,
);
log(
  `packages built: ${Object.entries(have)
    .map(([k, v]) => `${k}${v ? '' : ' (missing)'}`)
    .join(', ')}`,
);
try {
  for (const g of groups) {
    if (!selected(g.id, g.rows)) continue;
    log(`[${g.id}]`);
    const t = performance.now();
    try {
      await g.run();
    } catch (err) {
      log(`  group ${g.id} failed: ${err.stack ?? err}`);
      addRow({ id: g.id, title: g.id, note: `harness error: ${String(err.message ?? err).slice(0, 300)}` });
    }
    log(`  (${((performance.now() - t) / 1000).toFixed(1)} s)`);
  }
} finally {
  cleanup();
}

env.loadavgEnd = os.loadavg().map((x) => +x.toFixed(2));
env.uptime = toolVersion('uptime', []);
env.seconds = +((performance.now() - t0All) / 1000).toFixed(1);
env.experiments = opts.experiment ?? [];
env.cache =
  cacheNote
  ?? `warm: every input is read into the page cache right before each timed run${residency.length ? ` (fincore residency of whole files: median ${(median(residency) * 100).toFixed(0)}%, min ${(Math.min(...residency) * 100).toFixed(0)}%)` : ''}; write rows include fdatasync to disk`;

// ---------------------------------------------------------------- report
const fmtGoal = (row) => {
  const g = row.goal;
  if (!g) return 'info';
  let s;
  if (g.on === 'value') s = `${g.min !== undefined ? '≥' : '≤'} ${g.min ?? g.max} ${row.unit}`;
  else s = g.min !== undefined ? `≥ ${g.min}×` : `≤ ${g.max}×`;
  if (g.maxRssKiB) s += `, RSS < ${g.maxRssKiB / 1024} MiB`;
  return s;
};
const metCell = (row) =>
  row.wrong ? '❌ wrong' : row.met === undefined ? (row.goal ? '—' : '') : row.met ? '✅' : '❌';
const lines = [];
lines.push('| workload | blk | baseline | ratio | goal | met? | peak RSS |');
lines.push('|---|---:|---:|---:|---|:---:|---:|');
for (const row of rows) {
  const value = fmtRate(row.blk, row.unit);
  const baseline =
    row.baseline !== undefined
      ? `${fmtRate(row.baseline, row.unit)} (${row.baselineName})`
      : row.baselineName
        ? `— (${row.baselineName})`
        : '—';
  const ratio =
    row.goal?.on === 'value' ? (row.ratio !== undefined ? `(${fmtRatio(row.ratio)})` : '—') : fmtRatio(row.ratio);
  const rss = row.rssKiB ? `${(row.rssKiB / 1024).toFixed(0)} MiB` : '—';
  lines.push(`| ${row.title} | ${value} | ${baseline} | ${ratio} | ${fmtGoal(row)} | ${metCell(row)} | ${rss} |`);
}
const notes = rows.filter((r) => r.note).map((r) => `- **${r.id}**: ${r.note}`);
const header = [
  `blk bench, ${env.date}, \`${['node bench/run.mjs', ...process.argv.slice(2)].join(' ')}\``,
  `node ${env.node}, ${env.cpu} × ${env.cores}, ${env.memGiB} GiB RAM, ${env.fsType} at ${tmpRoot}; load average ${env.loadavgStart.join(' ')} at start, ${env.loadavgEnd.join(' ')} at end; ${env.seconds} s`,
  `data: ${fmtBytes(S.size)} images (base raw fully written; COW overlays as described), ${fmtBytes(S.mapSize)} COW for map/open/info; ${env.cache}`,
  `each variant runs ${S.reps}× (CLI rows ${S.cliReps}×) interleaved with its baseline; best run counts. Ratios: throughput rows blk ÷ baseline (higher is better), time rows blk ÷ baseline (lower is better).`,
];
if (QUICK)
  header.push(
    '**--quick: a smoke run with small sizes; the goals are defined for the full sizes (fixed costs such as process start-up dominate here), so ✅/❌ mean little.**',
  );
if (experiments.length)
  header.unshift(
    `**EXPERIMENT run: in-process blk rows ran with ${opts.experiment.join(', ')} (bench/experiments/) monkeypatched onto the built packages; these are not blk's numbers.**`,
  );
const md = [...header.map((h) => `${h}  `), '', ...lines, '', ...notes, ''].join('\n');
console.log(`\n${md}`);
const json = { env, rows: rows.map(({ samples, ...r }) => ({ ...r, samples })), markdown: md };
const jsonPath = `${resultsDir}${stamp}.json`;
fs.writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
fs.writeFileSync(`${resultsDir}latest.md`, md);
if (opts['write-results']) {
  // The table for the README's Performance section (bench/RESULTS.md is committed; results/ is not).
  fs.writeFileSync(
    fileURLToPath(new URL('./RESULTS.md', import.meta.url)),
    `# blk benchmark results\n\nMade by \`${['node bench/run.mjs', ...process.argv.slice(2)].join(' ')}\` (after \`pnpm run build\`; \`pnpm bench\` runs the same).\n`
      + `Raw JSON: \`bench/results/${stamp}.json\` (not committed).\n\n${md}`,
  );
}
log(`wrote ${jsonPath} and ${resultsDir}latest.md${opts.profile ? `; CPU profiles in ${profileDir}` : ''}`);
const failed = rows.some((r) => r.wrong);
process.exitCode = failed ? 1 : 0;
