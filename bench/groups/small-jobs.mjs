// Small jobs (issue 16): the fixed cost of every `blk` command and of every open, against the floor
// of any Node CLI (`node -e 0`) and the C tools, all measured in the same run. Whole processes, page
// cache warm. `blk` is the package's bin (dist/blk.cjs: the bundle run from V8's code cache).
import * as fs from 'node:fs';
import * as net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeCow } from '../lib/cowfile.mjs';
import { commitRuns, fillPattern, TAG_BASE, TAG_OVERLAY } from '../lib/util.mjs';

const MiB = 1024 * 1024;

export default function smallJobs(ctx) {
  const { S, QUICK, dir, have, node, interleave, best, addRow, runCommand, fmtRate, pending, log } = ctx;
  const BIN = fileURLToPath(new URL('../../packages/cli/dist/blk.cjs', import.meta.url));
  const IMAGES = new URL('../../packages/images/dist/index.js', import.meta.url).href;
  const blk = (...args) => [node, BIN, ...args];
  const haveTool = (t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
  const reps = QUICK ? 3 : Math.max(7, S.cliReps * 4);
  const d = `${dir}/small-jobs`;
  const ready = () => have.cli && fs.existsSync(BIN);

  /** base.raw (64 MiB, written) and top.cow over it (empty): the small images of the start-up rows. */
  function smallImages() {
    fs.mkdirSync(d, { recursive: true });
    const base = `${d}/base.raw`;
    const top = `${d}/top.cow`;
    if (!fs.existsSync(top)) {
      fs.writeFileSync(base, new Uint8Array(64 * MiB).fill(1));
      runCommand(blk('create', '-q', '-f', 'cow', '-b', base, top), { rss: false });
    }
    return { base, top };
  }

  /**
   * One whole-process variant: the command, timed (wall seconds) with its peak RSS and its CPU time
   * (user + system, from GNU time): on a shared machine the CPU time is the steadier figure.
   */
  const cmd = (key, argv, extra = {}) => ({
    key,
    ...extra,
    run: () => {
      // bash's `times` gives the children's user and system time to the millisecond (GNU time: to 10 ms).
      const rss = `${d}/rss-${process.pid}`;
      const wrapped = fs.existsSync('/usr/bin/time') ? ['/usr/bin/time', '-f', '%M', '-o', rss, ...argv] : argv;
      const t0 = performance.now();
      const r = spawnSync('bash', ['-c', '"$@" >/dev/null; s=$?; times >&2; exit $s', 'bash', ...wrapped], {
        encoding: 'utf8',
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const seconds = (performance.now() - t0) / 1000;
      if (r.status !== 0) throw new Error(`${argv.join(' ')} exited with ${r.status}: ${String(r.stderr).slice(-500)}`);
      const lines = String(r.stderr).trim().split('\n');
      const m = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s/.exec(lines[lines.length - 1] ?? '');
      const cpu = m ? Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]) : undefined;
      let maxRssKiB;
      try {
        maxRssKiB = Number(fs.readFileSync(rss, 'utf8').trim().split('\n').pop());
        fs.rmSync(rss, { force: true });
      } catch {
        maxRssKiB = undefined;
      }
      return { value: seconds, unit: 's', cpu, maxRssKiB };
    },
  });
  /** The median CPU time of a variant's runs (seconds), for the notes. */
  const cpuOf = (list) => {
    const v = (list ?? [])
      .map((x) => x.cpu)
      .filter((x) => x !== undefined)
      .sort((a, b) => a - b);
    return v.length ? v[Math.floor(v.length / 2)] : undefined;
  };

  const startRows = {
    id: 'small-jobs',
    rows: ['small-info', 'small-create', 'small-map', 'small-check'],
    run() {
      if (!ready()) {
        for (const id of this.rows) addRow({ id, title: id, unit: 's', note: pending('@blk/cli') });
        return;
      }
      const { base, top } = smallImages();
      const made = `${d}/made.cow`;
      const rmMade = () => fs.rmSync(made, { force: true });
      const variants = [
        cmd('node -e 0', [node, '-e', '0']),
        cmd('blk info', blk('info', top)),
        cmd('blk create', blk('create', '-q', '-f', 'cow', '-b', base, made), { after: rmMade }),
        cmd('blk map', blk('map', top)),
        cmd('blk check', blk('check', top)),
        cmd('blk --help', blk('--help')),
      ];
      if (haveTool('qemu-img')) {
        variants.push(cmd('qemu-img info', ['qemu-img', 'info', top]));
        variants.push(cmd('qemu-img map', ['qemu-img', 'map', '-f', 'raw', base]));
        const q = `${d}/small.qcow2`;
        if (!fs.existsSync(q)) runCommand(['qemu-img', 'create', '-q', '-f', 'qcow2', q, '64M'], { rss: false });
        variants.push(cmd('qemu-img check', ['qemu-img', 'check', q])); // of a qcow2: qemu-img checks no cow or raw
      }
      if (haveTool('uml_mkcow')) variants.push(cmd('uml_mkcow', ['uml_mkcow', '-f', made, base], { after: rmMade }));
      const { out, errors } = interleave(reps, variants);
      const b = (k) => best(out[k], false);
      const floor = b('node -e 0');
      const abs = (k) => `${fmtRate(b(k)?.value, 's')} (CPU ${fmtRate(cpuOf(out[k]), 's')})`;
      const cpuRatio = (k) => {
        const a = cpuOf(out[k]);
        const f = cpuOf(out['node -e 0']);
        return a !== undefined && f ? `${(a / f).toFixed(2)}×` : '—';
      };
      const row = (id, key, title, peers) =>
        addRow({
          id,
          title,
          unit: 's',
          blk: b(key)?.value,
          baseline: floor?.value,
          baselineName: '`node -e 0` (the floor of any Node CLI)',
          goal: { max: 1.25 },
          rssKiB: b(key)?.maxRssKiB,
          note:
            errors[key]
            ?? `CPU time (user + system, median) ${cpuRatio(key)} of node -e 0's; absolute (best wall, median CPU): blk ${abs(key)}, node -e 0 ${abs('node -e 0')}, ${peers.map((p) => `${p} ${abs(p)}`).join(', ')}`,
          samples: id === 'small-info' ? out : undefined,
        });
      row('small-info', 'blk info', '`blk info` of an empty cow over a 64 MiB raw, whole process', [
        'qemu-img info',
        'blk --help',
      ]);
      row('small-create', 'blk create', '`blk create -f cow -b base.raw`, whole process', ['uml_mkcow']);
      row('small-map', 'blk map', '`blk map` of that cow, whole process', ['qemu-img map']);
      row('small-check', 'blk check', '`blk check` of that cow, whole process', ['qemu-img check']);
    },
  };

  /** The 64 MiB chain of the issue: base.raw <- overlay.cow, 25% of it in scattered 1 MiB runs. */
  function chainPair(sub) {
    const size = 64 * MiB;
    const p = `${d}/${sub}`;
    fs.rmSync(p, { recursive: true, force: true });
    fs.mkdirSync(p, { recursive: true });
    const buf = new Uint8Array(size);
    fillPattern(buf, 0, TAG_BASE);
    fs.writeFileSync(`${p}/base.raw`, buf);
    writeCow(`${p}/overlay.cow`, {
      size,
      backingPath: `${p}/base.raw`,
      runs: commitRuns(size),
      fill: (b, off) => fillPattern(b, off, TAG_OVERLAY),
    });
    return { base: `${p}/base.raw`, overlay: `${p}/overlay.cow` };
  }

  const copyRows = {
    id: 'small-copies',
    rows: ['small-commit', 'small-convert', 'small-compare'],
    async run() {
      if (!ready()) {
        for (const id of this.rows) addRow({ id, title: id, unit: 's', note: pending('@blk/cli') });
        return;
      }
      fs.mkdirSync(d, { recursive: true });
      const src = chainPair('chain');
      const merged = `${d}/merged.raw`;
      runCommand(['uml_moo', src.overlay, merged], { rss: false });
      const merged2 = `${d}/merged2.raw`;
      fs.copyFileSync(merged, merged2);
      const pairs = {};
      // commit writes into its base: a fresh pair (base and an overlay naming it) before each run.
      const fresh = (key) => () => {
        pairs[key] = chainPair(`c-${key.replace(/\W+/g, '-')}`);
      };
      const outFile = `${d}/out.raw`;
      const rmOut = () => fs.rmSync(outFile, { force: true });
      const commitOf = (key, argv) => ({
        key,
        before: fresh(key),
        run: () => {
          const r = runCommand(argv(pairs[key]));
          return { value: r.seconds, unit: 's', maxRssKiB: r.maxRssKiB };
        },
      });
      const variants = [
        commitOf('uml_moo -d', (p) => ['uml_moo', '-d', p.overlay]),
        commitOf('blk commit -t unsafe', (p) => blk('commit', '-q', '-t', 'unsafe', p.overlay)),
        cmd('uml_moo (copy)', ['uml_moo', src.overlay, outFile], { after: rmOut }),
        cmd('qemu-img convert', ['qemu-img', 'convert', '-f', 'raw', '-O', 'raw', merged, outFile], { after: rmOut }),
        cmd('blk convert -t unsafe', blk('convert', '-t', 'unsafe', '-O', 'raw', src.overlay, outFile), {
          after: rmOut,
        }),
        cmd('qemu-img compare', ['qemu-img', 'compare', '-f', 'raw', '-F', 'raw', merged, merged2]),
        cmd('blk compare', blk('compare', '-q', src.overlay, merged)),
      ];
      const { out, errors } = interleave(reps, variants);
      const b = (k) => best(out[k], false);
      // Best wall time, and the median CPU time (user + system) where the variant measures it: on a
      // loaded machine the CPU time is the steadier figure.
      const abs = (k) => {
        const cpu = cpuOf(out[k]);
        return `${fmtRate(b(k)?.value, 's')}${cpu === undefined ? '' : ` (CPU ${fmtRate(cpu, 's')})`}`;
      };
      const row = (id, key, peer, title, note) =>
        addRow({
          id,
          title,
          unit: 's',
          blk: b(key)?.value,
          baseline: b(peer)?.value,
          baselineName: `\`${peer}\``,
          goal: { max: 1.0 },
          rssKiB: b(key)?.maxRssKiB,
          note: errors[key] ?? errors[peer] ?? note,
          samples: id === 'small-commit' ? out : undefined,
        });
      row(
        'small-commit',
        'blk commit -t unsafe',
        'uml_moo -d',
        '`blk commit -t unsafe`, 64 MiB cow, 25% in 1 MiB runs (neither syncs)',
        `absolute: blk ${abs('blk commit -t unsafe')}, uml_moo -d ${abs('uml_moo -d')}`,
      );
      row(
        'small-convert',
        'blk convert -t unsafe',
        'qemu-img convert',
        '`blk convert -t unsafe -O raw` of that chain vs `qemu-img convert` of the merged image',
        `absolute (best wall, median CPU): blk ${abs('blk convert -t unsafe')}, qemu-img ${abs('qemu-img convert')}, uml_moo (copying form) ${abs('uml_moo (copy)')}`,
      );
      row(
        'small-compare',
        'blk compare',
        'qemu-img compare',
        '`blk compare` of that chain with the merged image vs `qemu-img compare` of the merged image with a copy',
        `absolute (best wall, median CPU): blk ${abs('blk compare')}, qemu-img ${abs('qemu-img compare')}`,
      );
    },
  };

  const inProcess = {
    id: 'small-inproc',
    rows: ['small-inproc-create', 'small-inproc-open'],
    run() {
      if (!ready()) {
        for (const id of this.rows) addRow({ id, title: id, unit: 's', note: pending('@blk/images') });
        return;
      }
      const { base, top } = smallImages();
      const runs = QUICK ? 200 : 1000;
      // One fresh process does the 1000 runs of each (after 50 untimed ones): p50 and p99 per operation.
      const script = `
        const { createImage, openImage } = await import(${JSON.stringify(IMAGES)});
        const fs = await import('node:fs');
        const q = (a, p) => a.sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))];
        const made = ${JSON.stringify(`${d}/inproc.cow`)};
        const create = [], open = [];
        const buf = new Uint8Array(4096);
        for (let i = 0; i < ${runs} + 50; i++) {
          fs.rmSync(made, { force: true });
          let t = performance.now();
          await createImage(made, { format: 'cow', backing: ${JSON.stringify(base)} });
          if (i >= 50) create.push(performance.now() - t);
          t = performance.now();
          const img = await openImage(${JSON.stringify(top)});
          await img.readInto(0, buf);
          await img.close();
          if (i >= 50) open.push(performance.now() - t);
        }
        fs.rmSync(made, { force: true });
        process.stdout.write(JSON.stringify({ create: [q(create, 0.5), q(create, 0.99)], open: [q(open, 0.5), q(open, 0.99)] }));
      `;
      const r = spawnSync(node, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      let res;
      try {
        res = JSON.parse(r.stdout);
      } catch {
        res = undefined;
      }
      const err = res ? undefined : `failed: ${String(r.stderr).split('\n').slice(0, 4).join(' | ')}`;
      const row = (id, k, title) =>
        addRow({
          id,
          title,
          unit: 's',
          blk: res ? res[k][0] / 1000 : undefined,
          goal: { max: 0.001, on: 'value' },
          note: err ?? `p50 ${res[k][0].toFixed(3)} ms, p99 ${res[k][1].toFixed(3)} ms over ${runs} runs (one process)`,
        });
      row('small-inproc-create', 'create', 'in process: `createImage` of a cow over a 64 MiB raw (median)');
      row('small-inproc-open', 'open', 'in process: `openImage` + first 4 KiB read + `close` of cow <- raw (median)');
    },
  };

  /** A minimal NBD client: fixed newstyle handshake, NBD_OPT_GO of export '', one 4 KiB read. */
  function firstRead(socketPath) {
    return new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      let data = Buffer.alloc(0);
      let phase = 'greeting';
      const t0 = performance.now();
      const fail = (e) => {
        s.destroy();
        reject(e);
      };
      s.on('error', fail);
      s.on('data', (chunk) => {
        data = Buffer.concat([data, chunk]);
        for (;;) {
          if (phase === 'greeting') {
            if (data.length < 18) return;
            data = data.subarray(18);
            const opt = Buffer.alloc(4 + 16 + 4 + 2);
            opt.writeUInt32BE(3, 0); // client flags: fixed newstyle, no zeroes
            opt.write('IHAVEOPT', 4, 'latin1');
            opt.writeUInt32BE(7, 12); // NBD_OPT_GO
            opt.writeUInt32BE(6, 16); // name length 0 + no info requests
            s.write(opt);
            phase = 'options';
          } else if (phase === 'options') {
            if (data.length < 20) return;
            const type = data.readUInt32BE(12);
            const len = data.readUInt32BE(16);
            if (data.length < 20 + len) return;
            data = data.subarray(20 + len);
            if (type === 1) {
              const req = Buffer.alloc(28);
              req.writeUInt32BE(0x25609513, 0);
              req.writeUInt16BE(0, 6); // NBD_CMD_READ
              req.writeUInt32BE(4096, 24);
              s.write(req);
              phase = 'reply';
            } else if (type >= 0x80000000) return fail(new Error(`NBD_OPT_GO refused (${type})`));
          } else {
            if (data.length < 16 + 4096) return;
            const ms = performance.now() - t0;
            s.end();
            return resolve(ms);
          }
        }
      });
    });
  }

  const serveRow = {
    id: 'small-serve',
    rows: ['small-serve-start', 'small-serve-first'],
    async run() {
      if (!ready()) {
        for (const id of this.rows) addRow({ id, title: id, unit: 's', note: pending('@blk/cli') });
        return;
      }
      const { top } = smallImages();
      const starts = [];
      const firsts = [];
      let error;
      for (let i = 0; i < reps && !error; i++) {
        const sock = `${d}/nbd-${i}.sock`;
        fs.rmSync(sock, { force: true });
        const t0 = performance.now();
        // -t: the probe connections below must not end it (without -t it exits when its last client leaves).
        const child = spawn(node, [BIN, 'serve', '-r', '-t', '-k', sock, top], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (c) => {
          stderr += c;
        });
        const exited = new Promise((r) => child.on('exit', r));
        try {
          // Start to accepting: the first moment a connection succeeds.
          for (;;) {
            const ok = await new Promise((r) => {
              const c = net.connect(sock, () => {
                c.destroy();
                r(true);
              });
              c.on('error', () => r(false));
            });
            if (ok) break;
            if (performance.now() - t0 > 10_000) throw new Error(`serve did not listen in 10 s: ${stderr}`);
            await new Promise((r) => setTimeout(r, 1));
          }
          starts.push(performance.now() - t0);
          firsts.push(await firstRead(sock));
        } catch (err) {
          error = String(err?.message ?? err);
        } finally {
          child.kill('SIGTERM');
          await exited;
        }
      }
      const med = (a) => (a.length ? a.sort((x, y) => x - y)[Math.floor(a.length / 2)] : undefined);
      log(
        `    blk serve: start ${starts.map((x) => x.toFixed(1)).join(' ')} ms; first read ${firsts.map((x) => x.toFixed(2)).join(' ')} ms`,
      );
      addRow({
        id: 'small-serve-start',
        info: true,
        title: '  (info) `blk serve -r -k SOCK` of a small cow: start to accepting connections (median)',
        unit: 's',
        blk: med(starts) !== undefined ? med(starts) / 1000 : undefined,
        note: error,
      });
      addRow({
        id: 'small-serve-first',
        info: true,
        title: '  (info) first request of a new connection: connect, handshake (NBD_OPT_GO), one 4 KiB read (median)',
        unit: 's',
        blk: med(firsts) !== undefined ? med(firsts) / 1000 : undefined,
        note: error,
      });
    },
  };

  return [startRows, copyRows, inProcess, serveRow];
}
