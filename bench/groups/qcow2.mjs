/**
 * qcow2 read-side rows (issue 13's performance table):
 *
 * - qcow2-seq-read: sequential 1 MiB `Image.readInto` of a fully allocated qcow2 (64 KiB clusters) vs
 *   Node readSync of a raw file, goal >= 0.9x.
 * - qcow2-rand-read-qd1 / -qd32: random 4 KiB reads of a qcow2 half allocated over a raw backing file
 *   vs raw readSync, goal >= 0.7x.
 * - qcow2-convert-raw / -deflate: `blk convert -t unsafe -O raw` of a qcow2 25% allocated (and of the
 *   same image deflate-compressed by `qemu-img convert -c`) vs `qemu-img convert -O raw` (which does
 *   not sync either), goal <= 1.0x its time.
 * - qcow2-convert-qcow2: `blk convert -t unsafe -O qcow2` of a raw file with 50% holes (the bench's
 *   half layout: data runs and holes of 4-128 KiB, the holes sparse in the file) vs `qemu-img convert
 *   -O qcow2`, goal <= 1.0x its time; the output is checked with `qemu-img check` and `qemu-img compare`.
 * - qcow2-info / qcow2-map: `blk info` and `blk map --output=json` of a 1 TiB qcow2 with 8000 data
 *   extents vs qemu-img's, goal <= 1.5x their time and RSS <= 64 MiB.
 *
 * The machine's floor for a Node CLI is measured in the same runs and given in the notes: `node -e 0`
 * (convert and info), and for convert -O raw of the plainly allocated image a plain-Node copy of its
 * allocated host data (bench/lib/plain-copy.mjs: readSync into one buffer, writeSync at the guest
 * offsets of a sparse file, its run list read from the L2 tables before the timed runs), as a whole
 * process. The goals stay qemu-img's; the notes say how far blk is from what Node itself can do.
 *
 * The images are written here by a small qcow2 writer (v3, 64 KiB clusters, refcounts 16 bits, every
 * cluster's refcount 1), with the bench's sector patterns so that the workloads verify what they read,
 * and checked once with `qemu-img check`. It does not use blk's qcow2 writer (not part of these rows).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { halfRuns, commitRuns, fillPattern, prng, TAG_BASE, TAG_OVERLAY } from '../lib/util.mjs';
import { qcow2Runs } from '../lib/plain-copy.mjs';

const PLAIN_COPY = new URL('../lib/plain-copy.mjs', import.meta.url).pathname;

const CLUSTER = 64 * 1024;

/**
 * A qcow2 v3 image of `size` bytes: the guest clusters that meet `runs` (sorted [start, length] byte
 * runs, sector aligned) are allocated, in guest order, with sector patterns: TAG_OVERLAY inside the
 * runs, `outside` (TAG_BASE, or 0 for zeros) elsewhere in the cluster. `backing` names a raw backing
 * file. Runs may be given as whole clusters with `clusters` (a sorted list of cluster numbers) instead.
 */
export function writeQcow2(path, { size, runs = [], clusters, outside = TAG_BASE, backing }) {
  const cs = CLUSTER;
  const l2Entries = cs / 8;
  const guestClusters = Math.ceil(size / cs);
  const l1Size = Math.ceil(guestClusters / l2Entries);
  // Allocated guest clusters, in order.
  let alloc = clusters;
  if (!alloc) {
    alloc = [];
    for (const [s, n] of runs) {
      for (let c = Math.floor(s / cs); c * cs < s + n; c++) if (alloc[alloc.length - 1] !== c) alloc.push(c);
    }
  }
  const tables = [...new Set(alloc.map((c) => Math.floor(c / l2Entries)))];
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  let next = 2; // 0 header, 1 refcount table
  const l1Offset = next * cs;
  next += l1Clusters;
  const l2Of = new Map();
  for (const t of tables) l2Of.set(t, next++ * cs);
  const dataStart = next;
  next += alloc.length;
  // Refcount blocks (16-bit entries: 32768 clusters each) after the data, covering themselves.
  const perBlock = cs / 2;
  let blocks = Math.ceil(next / perBlock);
  while (Math.ceil((next + blocks) / perBlock) > blocks) blocks++;
  const refStart = next;
  const total = next + blocks;
  if (blocks > cs / 8) throw new Error('writeQcow2: refcount table too small');

  const fd = fs.openSync(path, 'w');
  try {
    const header = Buffer.alloc(cs);
    header.writeUInt32BE(0x514649fb, 0);
    header.writeUInt32BE(3, 4);
    header.writeUInt32BE(16, 20);
    header.writeBigUInt64BE(BigInt(size), 24);
    header.writeUInt32BE(l1Size, 36);
    header.writeBigUInt64BE(BigInt(l1Offset), 40);
    header.writeBigUInt64BE(BigInt(cs), 48);
    header.writeUInt32BE(1, 56);
    header.writeUInt32BE(4, 96);
    header.writeUInt32BE(104, 100);
    let at = 104;
    if (backing) {
      header.writeUInt32BE(0xe2792aca, at);
      header.writeUInt32BE(3, at + 4);
      header.write('raw', at + 8, 'latin1');
      at += 16;
    }
    header.writeUInt32BE(0, at); // end of extensions
    if (backing) {
      header.writeBigUInt64BE(512n, 8);
      header.writeUInt32BE(Buffer.byteLength(backing), 16);
      header.write(backing, 512);
    }
    fs.writeSync(fd, header, 0, cs, 0);
    const reftable = Buffer.alloc(cs);
    for (let b = 0; b < blocks; b++) reftable.writeBigUInt64BE(BigInt((refStart + b) * cs), b * 8);
    fs.writeSync(fd, reftable, 0, cs, cs);
    const l1 = Buffer.alloc(l1Clusters * cs);
    for (const [t, off] of l2Of) l1.writeBigUInt64BE((1n << 63n) | BigInt(off), t * 8);
    fs.writeSync(fd, l1, 0, l1.length, l1Offset);
    const l2s = new Map(tables.map((t) => [t, Buffer.alloc(cs)]));
    // Data, 1 MiB at a time.
    const chunk = Buffer.alloc(16 * cs);
    let ri = 0;
    for (let i = 0; i < alloc.length; i += 16) {
      const n = Math.min(16, alloc.length - i);
      for (let k = 0; k < n; k++) {
        const c = alloc[i + k];
        const host = (dataStart + i + k) * cs;
        const t = Math.floor(c / l2Entries);
        l2s.get(t).writeBigUInt64BE((1n << 63n) | BigInt(host), (c % l2Entries) * 8);
        const buf = chunk.subarray(k * cs, (k + 1) * cs);
        const off = c * cs;
        if (clusters) {
          fillPattern(buf, off, TAG_OVERLAY);
          continue;
        }
        if (outside) fillPattern(buf, off, outside);
        else buf.fill(0);
        while (ri < runs.length && runs[ri][0] + runs[ri][1] <= off) ri++;
        for (let j = ri; j < runs.length && runs[j][0] < off + cs; j++) {
          const s = Math.max(off, runs[j][0]);
          const e = Math.min(off + cs, runs[j][0] + runs[j][1]);
          fillPattern(buf.subarray(s - off, e - off), s, TAG_OVERLAY);
        }
      }
      fs.writeSync(fd, chunk, 0, n * cs, (dataStart + i) * cs);
    }
    for (const [t, off] of l2Of) fs.writeSync(fd, l2s.get(t), 0, cs, off);
    const ref = Buffer.alloc(blocks * cs);
    for (let c = 0; c < total; c++) ref.writeUInt16BE(1, c * 2);
    fs.writeSync(fd, ref, 0, ref.length, refStart * cs);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return path;
}

function qemuCheck(path) {
  const r = spawnSync('qemu-img', ['check', path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`qemu-img check ${path}: ${r.stdout}${r.stderr}`);
}

const hasQemu = () => spawnSync('qemu-img', ['--version']).status === 0;

const ms = (seconds) => `${(seconds * 1000).toFixed(1)} ms`;

/**
 * A convert row's floor note: `node -e 0` and the plain-Node copy (whole processes, best runs of the
 * same interleaved set), and blk's time over the copy's.
 */
function convertFloorNote(out, errors, blkSeconds) {
  const start = out['node -e 0']?.reduce((a, b) => (b.value < a.value ? b : a), out['node -e 0'][0])?.value;
  const plain = out['plain-Node copy']?.reduce((a, b) => (b.value < a.value ? b : a), out['plain-Node copy'][0])?.value;
  const failed = errors['node -e 0'] ?? errors['plain-Node copy'];
  if (failed) return `; floor not measured: ${failed}`;
  if (start === undefined || plain === undefined || blkSeconds === undefined) return '';
  return `; floor: node -e 0 ${ms(start)}, plain-Node copy ${ms(plain)} (node start + readSync/writeSync of the allocated data); blk/floor ${(blkSeconds / plain).toFixed(2)}× (target ≤ 1.15×)`;
}

export default function qcow2Rows(ctx) {
  const { S, fixture, base, prepare, interleave, best, addRow, runWorkload, runCommand, blkCli, profArgs } = ctx;
  const REQ = ctx.REQ;
  const have = () => ctx.have.qcow2 !== false;
  const pending = !have() ? ctx.pending('@blk/qcow2') : undefined;
  const full = () =>
    fixture('full.qcow2', (p) => {
      writeQcow2(p, { size: S.size, runs: [[0, S.size]] });
      if (hasQemu()) qemuCheck(p);
      return p;
    });
  const half = () =>
    fixture('half.qcow2', (p) => {
      const b = base();
      writeQcow2(p, { size: S.size, runs: halfRuns(S.size), backing: b });
      if (hasQemu()) qemuCheck(p);
      return p;
    });
  const quarter = () =>
    fixture('quarter.qcow2', (p) => {
      writeQcow2(p, { size: S.size, runs: commitRuns(S.size), outside: 0 });
      if (hasQemu()) qemuCheck(p);
      return p;
    });
  const deflated = () =>
    fixture('quarter-deflate.qcow2', (p) => {
      execFileSync('qemu-img', ['convert', '-c', '-O', 'qcow2', quarter(), p]);
      return p;
    });
  const holes = () =>
    fixture('holes.raw', (path) => {
      const fd = fs.openSync(path, 'w');
      try {
        fs.ftruncateSync(fd, S.size);
        const buf = Buffer.alloc(128 * 1024);
        for (const [start, length] of halfRuns(S.size)) {
          const part = buf.subarray(0, length);
          fillPattern(part, start, TAG_OVERLAY);
          fs.writeSync(fd, part, 0, length, start);
        }
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      return path;
    });
  const big = () =>
    fixture('big.qcow2', (p) => {
      const size = S.mapSize;
      const count = 8000;
      const rnd = prng(21);
      const slot = Math.floor(size / CLUSTER / count);
      const clusters = Array.from({ length: count }, (_, i) => i * slot + (rnd() % slot));
      writeQcow2(p, { size, clusters });
      if (hasQemu()) qemuCheck(p);
      return p;
    });

  /**
   * The floor variants of a convert -O raw row: `node -e 0`, and the plain-Node copy of `src`'s
   * allocated data into `out` (its run list computed here, before any timed run).
   */
  const floorVariants = (src, out) => {
    const runsFile = `${out}.runs.json`;
    fs.writeFileSync(runsFile, JSON.stringify(qcow2Runs(src)));
    return [
      {
        key: 'node -e 0',
        run: () => {
          const r = runCommand([process.execPath, '-e', '0']);
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      },
      {
        key: 'plain-Node copy',
        before: () => prepare([src]),
        after: () => ctx.discardLater(out),
        run: () => {
          const r = runCommand([process.execPath, PLAIN_COPY, src, out, runsFile]);
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      },
    ];
  };

  return [
    {
      id: 'qcow2-seq-read',
      rows: ['qcow2-seq-read'],
      run() {
        const b = base();
        const q = full();
        const common = { task: 'readSeq', size: S.size, req: REQ, passes: S.seqPasses };
        const variants = [
          { key: 'node readSync', run: () => runWorkload({ ...common, target: 'node-sync', path: b }) },
          {
            key: 'blk qcow2',
            run: () =>
              runWorkload(
                { ...common, target: 'blk', path: q, layout: 'full', verify: true },
                { nodeArgs: profArgs('qcow2-seq-read') },
              ),
          },
        ];
        for (const v of variants) v.before = () => prepare([b, q]);
        const { out, errors } = interleave(S.reps, variants);
        const r = best(out['blk qcow2'], true);
        addRow({
          id: 'qcow2-seq-read',
          title: `seq read ${ctx.fmtBytes(S.size)} fully allocated qcow2 (64 KiB clusters), 1 MiB \`Image.readInto\``,
          unit: 'MB/s',
          blk: r?.value,
          baseline: best(out['node readSync'], true)?.value,
          baselineName: 'raw file, Node readSync',
          goal: { min: 0.9 },
          rssKiB: r?.maxRssKiB,
          note: pending ?? errors['blk qcow2'],
          samples: out,
        });
      },
    },
    {
      id: 'qcow2-rand-read',
      rows: ['qcow2-rand-read-qd1', 'qcow2-rand-read-qd32'],
      run() {
        const b = base();
        const q = half();
        const common = { task: 'readRand', size: S.size, ops: S.randOps, maxSeconds: S.randSeconds, seed: 1 };
        const blkRun = (depth) => () =>
          runWorkload(
            { ...common, target: 'blk', path: q, layout: 'half', depth, verify: true },
            { nodeArgs: profArgs(`qcow2-rand-read-qd${depth}`) },
          );
        const variants = [
          { key: 'node readSync', run: () => runWorkload({ ...common, target: 'node-sync', path: b }) },
          { key: 'blk qcow2 qd1', run: blkRun(1) },
          { key: 'blk qcow2 qd32', run: blkRun(32) },
        ];
        for (const v of variants) v.before = () => prepare([b, q]);
        const { out, errors } = interleave(S.reps, variants);
        const bl = best(out['node readSync'], true);
        for (const depth of [1, 32]) {
          const r = best(out[`blk qcow2 qd${depth}`], true);
          addRow({
            id: `qcow2-rand-read-qd${depth}`,
            title: `random 4 KiB read, qcow2 half allocated over a raw backing file, ${depth} in flight`,
            unit: 'IOPS',
            blk: r?.value,
            baseline: bl?.value,
            baselineName: 'raw file, Node readSync 4 KiB',
            goal: { min: 0.7 },
            rssKiB: r?.maxRssKiB,
            note: pending ?? errors[`blk qcow2 qd${depth}`],
            samples: depth === 1 ? out : undefined,
          });
        }
      },
    },
    {
      id: 'qcow2-convert',
      rows: ['qcow2-convert-raw', 'qcow2-convert-raw-deflate'],
      run() {
        if (!hasQemu()) {
          for (const id of ['qcow2-convert-raw', 'qcow2-convert-raw-deflate'])
            addRow({ id, title: id, unit: 's', note: 'qemu-img is not installed' });
          return;
        }
        for (const [id, src, what] of [
          ['qcow2-convert-raw', quarter(), '25% allocated'],
          ['qcow2-convert-raw-deflate', deflated(), '25% allocated, deflate-compressed (`qemu-img convert -c`)'],
        ]) {
          const outBlk = `${ctx.dir}/${id}.blk.raw`;
          const outQemu = `${ctx.dir}/${id}.qemu.raw`;
          const outPlain = `${ctx.dir}/${id}.plain.raw`;
          let same;
          // The floor (plainly allocated image only: the plain copy does not inflate clusters).
          const floor = id === 'qcow2-convert-raw' ? floorVariants(src, outPlain) : [];
          const variants = [
            ...floor,
            {
              key: 'qemu-img convert',
              before: () => prepare([src]),
              after: () => ctx.discardLater(outQemu),
              run: () => {
                const r = runCommand(['qemu-img', 'convert', '-O', 'raw', src, outQemu]);
                return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
              },
            },
            {
              key: 'blk convert -t unsafe',
              before: () => prepare([src]),
              after: () => {
                if (same === undefined && fs.existsSync(outBlk) && fs.existsSync(outQemu)) {
                  same = spawnSync('cmp', ['-s', outBlk, outQemu]).status === 0;
                }
                ctx.discardLater(outBlk);
              },
              run: () => {
                const r = runCommand(blkCli('convert', '-t', 'unsafe', '-O', 'raw', src, outBlk));
                return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
              },
            },
          ];
          const { out, errors } = interleave(S.cliReps, variants);
          const r = best(out['blk convert -t unsafe'], false);
          const floorNote = floor.length > 0 ? convertFloorNote(out, errors, r?.value) : '';
          addRow({
            id,
            title: `\`blk convert -t unsafe -O raw\` of a ${ctx.fmtBytes(S.size)} qcow2, ${what}`,
            unit: 's',
            blk: r?.value,
            baseline: best(out['qemu-img convert'], false)?.value,
            baselineName: '`qemu-img convert -O raw` (no sync either)',
            goal: { max: 1.0 },
            rssKiB: r?.maxRssKiB,
            wrong: same === false,
            note:
              pending
              ?? errors['blk convert -t unsafe']
              ?? errors['qemu-img convert']
              ?? (same === false
                ? 'WRONG RESULT: output differs from qemu-img convert'
                : `output identical to qemu-img convert${floorNote}`),
            samples: out,
          });
        }
      },
    },
    {
      id: 'qcow2-convert-qcow2',
      rows: ['qcow2-convert-qcow2'],
      run() {
        const id = 'qcow2-convert-qcow2';
        if (!hasQemu()) {
          addRow({ id, title: id, unit: 's', note: 'qemu-img is not installed' });
          return;
        }
        const src = holes();
        const outBlk = `${ctx.dir}/${id}.blk.qcow2`;
        const outQemu = `${ctx.dir}/${id}.qemu.qcow2`;
        let verdict;
        const variants = [
          {
            key: 'qemu-img convert',
            before: () => prepare([src]),
            after: () => ctx.discardLater(outQemu),
            run: () => {
              const r = runCommand(['qemu-img', 'convert', '-O', 'qcow2', src, outQemu]);
              return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
            },
          },
          {
            key: 'blk convert -t unsafe',
            before: () => prepare([src]),
            after: () => {
              if (verdict === undefined && fs.existsSync(outBlk)) {
                const check = spawnSync('qemu-img', ['check', outBlk], { encoding: 'utf8' });
                const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', src, outBlk], {
                  encoding: 'utf8',
                });
                verdict =
                  check.status !== 0
                    ? `WRONG RESULT: qemu-img check: ${check.stdout}${check.stderr}`
                    : cmp.status !== 0
                      ? `WRONG RESULT: qemu-img compare: ${cmp.stdout}${cmp.stderr}`
                      : 'qemu-img check clean, qemu-img compare identical';
              }
              ctx.discardLater(outBlk);
            },
            run: () => {
              const r = runCommand(blkCli('convert', '-t', 'unsafe', '-O', 'qcow2', src, outBlk));
              return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
            },
          },
        ];
        const { out, errors } = interleave(S.cliReps, variants);
        const r = best(out['blk convert -t unsafe'], false);
        addRow({
          id,
          title: `\`blk convert -t unsafe -O qcow2\` of a ${ctx.fmtBytes(S.size)} raw file with 50% holes`,
          unit: 's',
          blk: r?.value,
          baseline: best(out['qemu-img convert'], false)?.value,
          baselineName: '`qemu-img convert -O qcow2` (no sync either)',
          goal: { max: 1.0 },
          rssKiB: r?.maxRssKiB,
          wrong: verdict?.startsWith('WRONG') === true,
          note: pending ?? errors['blk convert -t unsafe'] ?? errors['qemu-img convert'] ?? verdict,
          samples: out,
        });
      },
    },
    {
      id: 'qcow2-info-map',
      rows: ['qcow2-info', 'qcow2-map'],
      run() {
        if (!hasQemu()) {
          for (const id of ['qcow2-info', 'qcow2-map'])
            addRow({ id, title: id, unit: 's', note: 'qemu-img is not installed' });
          return;
        }
        const q = big();
        let sameMap;
        const cmd = (argv) => () => {
          const r = runCommand(argv, { capture: true });
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB, stdout: r.stdout };
        };
        const variants = [
          { key: 'node -e 0', run: cmd([process.execPath, '-e', '0']) },
          { key: 'qemu-img info', run: cmd(['qemu-img', 'info', q]) },
          { key: 'blk info', run: cmd(blkCli('info', q)) },
          { key: 'qemu-img map', run: cmd(['qemu-img', 'map', '--output=json', q]) },
          { key: 'blk map', run: cmd(blkCli('map', '--output=json', q)) },
        ];
        for (const v of variants) v.before = () => prepare([q]);
        const { out, errors } = interleave(S.cliReps, variants);
        const bm = out['blk map']?.[0]?.stdout;
        const qm = out['qemu-img map']?.[0]?.stdout;
        if (bm !== undefined && qm !== undefined)
          sameMap = JSON.stringify(JSON.parse(bm)) === JSON.stringify(JSON.parse(qm));
        for (const list of Object.values(out)) for (const r of list) delete r.stdout;
        const bi = best(out['blk info'], false);
        const nodeStart = best(out['node -e 0'], false)?.value;
        const infoFloor =
          bi?.value !== undefined && nodeStart !== undefined
            ? `floor: node -e 0 ${ms(nodeStart)}; blk/floor ${(bi.value / nodeStart).toFixed(2)}× (target ≤ 1.2×)`
            : undefined;
        addRow({
          id: 'qcow2-info',
          title: `open + \`info\` of a ${ctx.fmtBytes(S.mapSize)} qcow2 with 8000 data extents`,
          unit: 's',
          blk: bi?.value,
          baseline: best(out['qemu-img info'], false)?.value,
          baselineName: '`qemu-img info`',
          goal: { max: 1.5, maxRssKiB: 64 * 1024 },
          rssKiB: bi?.maxRssKiB,
          note: pending ?? errors['blk info'] ?? errors['qemu-img info'] ?? errors['node -e 0'] ?? infoFloor,
          samples: out,
        });
        const bmap = best(out['blk map'], false);
        addRow({
          id: 'qcow2-map',
          title: `\`map --output=json\` of that qcow2 (16000 entries)`,
          unit: 's',
          blk: bmap?.value,
          baseline: best(out['qemu-img map'], false)?.value,
          baselineName: '`qemu-img map --output=json`',
          goal: { max: 1.5, maxRssKiB: 64 * 1024 },
          rssKiB: bmap?.maxRssKiB,
          wrong: sameMap === false,
          note:
            pending
            ?? errors['blk map']
            ?? errors['qemu-img map']
            ?? (sameMap === false
              ? 'WRONG RESULT: output differs from qemu-img map'
              : 'output identical to qemu-img map'),
        });
      },
    },
  ];
}
