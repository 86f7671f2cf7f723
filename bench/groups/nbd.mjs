/**
 * blk serve (NBD) against nbdkit's file plugin and qemu-nbd, clients and servers over Unix sockets,
 * page-cached inputs, all measured in the same run:
 *   nbd-copy-raw   nbdcopy URI null: of a raw image: blk serve / nbdkit file (goal >= 1.0x MiB/s)
 *   nbd-copy-cow   the same of a cow chain (half in the overlay): blk serving the chain / blk serving raw (>= 0.9x)
 *   nbd-read-qd1   4 KiB reads, qemu-img bench -d 1: blk / the better of nbdkit file and qemu-nbd (>= 1.5x)
 *   nbd-read-qd16  the same at queue depth 16
 *   nbd-write      4 KiB writes + a flush every 16 (qemu-img bench -w -d 16): blk / qemu-nbd (>= 1.0x)
 *   nbd-fair       4 KiB reads one at a time on one connection while nbdcopy reads the image in 32 MiB
 *                  requests on another: p99 latency beside the copy / alone (informational: how much a
 *                  large read holds back small ones), nbdkit file's figures in the note
 *   BLK_NBD_ROWS=id,id runs only those rows of this group (each row restarts its servers)
 * qemu-img bench steps through the image 4 KiB at a time (-S 4096): it has no random mode; the image
 * is in the page cache, so the order costs the servers alike.
 * BLK_NBD_SERVE_PROF=DIR runs blk serve with --cpu-prof into DIR.
 * The copy and read rows also run the machine's Node floor (bench/lib/nbd-floor-server.mjs: a bare Node
 * server, no blk code) interleaved and print blk ÷ floor in the note: what any Node server can reach here.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { writeCow } from '../lib/cowfile.mjs';
import { connectNbd, quantile, readLatencies } from '../lib/nbd-latency.mjs';
import { halfRuns } from '../lib/util.mjs';

const ROWS = ['nbd-copy-raw', 'nbd-copy-cow', 'nbd-read-qd1', 'nbd-read-qd16', 'nbd-write', 'nbd-fair'];

export default (ctx) => ({
  id: 'nbd',
  rows: ROWS,
  async run() {
    const { S, QUICK, MiB, dir, log, addRow, pending, have, node, CLI } = ctx;
    const tools = ['nbdcopy', 'nbdkit', 'qemu-nbd', 'qemu-img'];
    const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
    if (!have.cli || missing.length > 0) {
      for (const id of ROWS) {
        addRow({
          id,
          title: id,
          unit: 'MB/s',
          note: !have.cli ? pending('@blk/cli') : `missing: ${missing.join(', ')}`,
        });
      }
      return;
    }
    const size = S.size;
    const base = ctx.base();
    const chain = ctx.fixture('nbd-half.cow', (p) => {
      writeCow(p, { size, backingPath: base, runs: halfRuns(size), fill: (b) => b.fill(0x6b) });
      return p;
    });
    const scratch = `${dir}/nbd-write.raw`;
    const only = process.env.BLK_NBD_ROWS?.split(',').filter(Boolean);
    const want = (id) => only === undefined || only.includes(id);
    let serial = 0;

    /** Starts a server (argv with SOCK for the socket path) and waits until it accepts; returns stop(). */
    async function start(argv) {
      const sock = `${dir}/nbd-bench-${++serial}.sock`;
      fs.rmSync(sock, { force: true });
      const child = spawn(
        argv[0],
        argv.slice(1).map((a) => (a === 'SOCK' ? sock : a)),
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (b) => {
        stderr += b;
      });
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`${argv[0]} exited: ${stderr.slice(-500)}`);
        const ok = await new Promise((r) => {
          const s = net.connect(sock);
          s.once('connect', () => {
            s.destroy();
            r(true);
          });
          s.once('error', () => r(false));
        });
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`${argv[0]} did not listen: ${stderr.slice(-500)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const uri = `nbd+unix:///?socket=${sock}`;
      const stop = async () => {
        if (child.exitCode === null) {
          child.kill('SIGTERM');
          await new Promise((r) => child.once('exit', r));
        }
        fs.rmSync(sock, { force: true });
      };
      return { uri, stop };
    }

    const prof = process.env.BLK_NBD_SERVE_PROF;
    const blkServe = (file, extra = []) => [
      node,
      ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []),
      CLI,
      'serve',
      '-t',
      '-e',
      '16',
      ...extra,
      '-k',
      'SOCK',
      file,
    ];
    // The machine's Node floor: a bare read-only NBD server with no blk code (bench/lib/nbd-floor-server.mjs).
    const floorServer = (file) => [
      node,
      new URL('../lib/nbd-floor-server.mjs', import.meta.url).pathname,
      '--multi-conn',
      'SOCK',
      file,
    ];
    const floorNote = (blk, floor) =>
      floor ? `; Node floor (bare Node NBD server) ${Math.round(floor)}, blk/floor ${(blk / floor).toFixed(2)}×` : '';
    const nbdkit = (file, ro = true) => ['nbdkit', '-f', ...(ro ? ['-r'] : []), '-U', 'SOCK', 'file', file];
    const qemuNbd = (file, ro = true) => [
      'qemu-nbd',
      ...(ro ? ['-r'] : []),
      '-t',
      '-e',
      '0',
      '-f',
      'raw',
      '-k',
      'SOCK',
      file,
    ];

    /** Runs `measure(uri)` against a fresh server per repetition, variants interleaved; best of S.reps. */
    async function compare(variants, measure, prepare) {
      const out = Object.fromEntries(variants.map((v) => [v.key, []]));
      const errors = {};
      for (let r = 0; r < S.reps; r++) {
        for (let i = 0; i < variants.length; i++) {
          const v = variants[(i + r) % variants.length];
          if (errors[v.key]) continue;
          let server;
          try {
            prepare?.(v);
            server = await start(v.argv);
            const value = await measure(server.uri, v);
            out[v.key].push(value);
            log(`    ${v.key.padEnd(22)} rep ${r + 1}: ${value.toFixed(1)}`);
          } catch (e) {
            errors[v.key] = String(e?.message ?? e).slice(0, 300);
            log(`    ${v.key}: ERROR ${errors[v.key]}`);
          } finally {
            await server?.stop();
          }
        }
      }
      const bestOf = (k) => (out[k].length ? Math.max(...out[k]) : undefined);
      return { bestOf, out, errors };
    }

    const copyMiBs = (uri) => {
      const t0 = performance.now();
      const r = spawnSync('nbdcopy', [uri, 'null:'], { stdio: ['ignore', 'ignore', 'pipe'] });
      if (r.status !== 0) throw new Error(`nbdcopy: ${String(r.stderr).slice(-300)}`);
      return size / MiB / ((performance.now() - t0) / 1000);
    };

    // nbdcopy of the raw image: blk serve vs nbdkit file.
    ctx.prepare([base]);
    if (want('nbd-copy-raw')) {
      const { bestOf, out, errors } = await compare(
        [
          { key: 'blk serve', argv: blkServe(base, ['-r', '-f', 'raw']) },
          { key: 'nbdkit file', argv: nbdkit(base) },
          { key: 'node floor', argv: floorServer(base) },
        ],
        copyMiBs,
      );
      addRow({
        id: 'nbd-copy-raw',
        title: `nbdcopy URI null: of a ${size / MiB} MiB raw image (unix socket, multi-conn)`,
        unit: 'MB/s',
        blk: bestOf('blk serve'),
        baseline: bestOf('nbdkit file'),
        baselineName: 'nbdkit file',
        goal: { min: 1.0 },
        note:
          errors['blk serve']
          ?? errors['nbdkit file']
          ?? `MiB/s, best of ${S.reps}, interleaved${floorNote(bestOf('blk serve'), bestOf('node floor'))}`,
        samples: out,
      });
    }
    // nbdcopy of the cow chain vs blk serving the raw file.
    ctx.prepare([base, chain]);
    if (want('nbd-copy-cow')) {
      const { bestOf, out, errors } = await compare(
        [
          { key: 'blk serve cow chain', argv: blkServe(chain, ['-r']) },
          { key: 'blk serve raw', argv: blkServe(base, ['-r', '-f', 'raw']) },
        ],
        copyMiBs,
      );
      addRow({
        id: 'nbd-copy-cow',
        title: `nbdcopy URI null: of a ${size / MiB} MiB cow chain (half in the overlay)`,
        unit: 'MB/s',
        blk: bestOf('blk serve cow chain'),
        baseline: bestOf('blk serve raw'),
        baselineName: 'blk serve raw',
        goal: { min: 0.9 },
        note: errors['blk serve cow chain'] ?? errors['blk serve raw'] ?? `MiB/s, best of ${S.reps}, interleaved`,
        samples: out,
      });
    }
    // 4 KiB reads at queue depth 1 and 16.
    const count = QUICK ? 20_000 : 200_000;
    const benchIops = (uri, extra) => {
      const t0 = performance.now();
      const r = spawnSync(
        'qemu-img',
        ['bench', '-f', 'raw', '-c', String(count), '-s', '4096', '-S', '4096', ...extra, uri],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      if (r.status !== 0) throw new Error(`qemu-img bench: ${String(r.stderr).slice(-300)}`);
      return count / ((performance.now() - t0) / 1000);
    };
    ctx.prepare([base]);
    for (const depth of [1, 16].filter((d) => want(`nbd-read-qd${d}`))) {
      const { bestOf, out, errors } = await compare(
        [
          { key: 'blk serve', argv: blkServe(base, ['-r', '-f', 'raw']) },
          { key: 'nbdkit file', argv: nbdkit(base) },
          { key: 'qemu-nbd', argv: qemuNbd(base) },
          { key: 'node floor', argv: floorServer(base) },
        ],
        (uri) => benchIops(uri, ['-d', String(depth)]),
      );
      const nk = bestOf('nbdkit file');
      const qn = bestOf('qemu-nbd');
      const better = Math.max(nk ?? 0, qn ?? 0) || undefined;
      addRow({
        id: `nbd-read-qd${depth}`,
        title: `4 KiB reads over NBD, queue depth ${depth} (qemu-img bench, ${count} requests)`,
        unit: 'IOPS',
        blk: bestOf('blk serve'),
        baseline: better,
        baselineName: (nk ?? 0) >= (qn ?? 0) ? 'nbdkit file' : 'qemu-nbd',
        goal: { min: 1.5 },
        note:
          errors['blk serve']
          ?? `nbdkit ${Math.round(nk ?? 0)} IOPS, qemu-nbd ${Math.round(qn ?? 0)} IOPS; best of ${S.reps}, interleaved${floorNote(bestOf('blk serve'), bestOf('node floor'))}`,
        samples: out,
      });
    }
    // 4 KiB writes with a flush every 16, into a fresh copy of the raw image each time.
    if (want('nbd-write')) {
      const wcount = QUICK ? 20_000 : 100_000;
      const { bestOf, out, errors } = await compare(
        [
          { key: 'blk serve', argv: blkServe(scratch, ['-f', 'raw']) },
          { key: 'qemu-nbd', argv: qemuNbd(scratch, false) },
        ],
        (uri) => {
          const t0 = performance.now();
          const r = spawnSync(
            'qemu-img',
            [
              'bench',
              '-w',
              '-f',
              'raw',
              '-c',
              String(wcount),
              '-d',
              '16',
              '-s',
              '4096',
              '-S',
              '4096',
              '--flush-interval=16',
              uri,
            ],
            { stdio: ['ignore', 'ignore', 'pipe'] },
          );
          if (r.status !== 0) throw new Error(`qemu-img bench -w: ${String(r.stderr).slice(-300)}`);
          return wcount / ((performance.now() - t0) / 1000);
        },
        () => {
          fs.copyFileSync(base, scratch);
          const fd = fs.openSync(scratch, 'r+');
          fs.fdatasyncSync(fd);
          fs.closeSync(fd);
        },
      );
      addRow({
        id: 'nbd-write',
        title: `4 KiB writes + a flush every 16 over NBD, queue depth 16 (qemu-img bench -w, ${wcount} requests)`,
        unit: 'IOPS',
        blk: bestOf('blk serve'),
        baseline: bestOf('qemu-nbd'),
        baselineName: 'qemu-nbd',
        goal: { min: 1.0 },
        note: errors['blk serve'] ?? errors['qemu-nbd'] ?? `best of ${S.reps}, interleaved`,
        samples: out,
      });
      fs.rmSync(scratch, { force: true });
    }
    // Fairness: the latency of 4 KiB reads, one at a time on one connection, alone and while
    // nbdcopy reads the image in 32 MiB requests on another; blk serve and nbdkit file alike.
    ctx.prepare([base]);
    if (want('nbd-fair')) {
      const fcount = QUICK ? 2_000 : 20_000;
      const fairness = async (argv) => {
        const server = await start(argv);
        const sock = server.uri.slice(server.uri.indexOf('socket=') + 7);
        try {
          const client = await connectNbd(sock);
          try {
            await readLatencies(client, Math.min(500, fcount)); // warm-up
            const alone = await readLatencies(client, fcount);
            let copying = true;
            let copies = 0;
            let failures = 0;
            const loop = (async () => {
              while (copying) {
                await new Promise((res) => {
                  const c = spawn('nbdcopy', ['-C', '1', '-R', '2', '--request-size=33554432', server.uri, 'null:'], {
                    stdio: 'ignore',
                  });
                  c.once('exit', (code) => {
                    if (code !== 0) failures++;
                    res();
                  });
                });
                copies++;
              }
            })();
            await new Promise((r) => setTimeout(r, 300));
            const beside = await readLatencies(client, fcount);
            copying = false;
            await loop;
            if (failures > 0) throw new Error(`nbdcopy failed ${failures} of ${copies} times`);
            return { alone, beside, copies };
          } finally {
            client.close();
          }
        } finally {
          await server.stop();
        }
      };
      const fmt = (ms) => (ms >= 1 ? `${ms.toFixed(1)} ms` : `${Math.round(ms * 1000)} µs`);
      const summary = (r) =>
        `p50 ${fmt(quantile(r.alone, 0.5))} / p99 ${fmt(quantile(r.alone, 0.99))} alone, `
        + `p50 ${fmt(quantile(r.beside, 0.5))} / p99 ${fmt(quantile(r.beside, 0.99))} / max ${fmt(Math.max(...r.beside))} beside ${r.copies} copies`;
      let blk;
      let nk;
      let error;
      try {
        blk = await fairness(blkServe(base, ['-r', '-f', 'raw']));
        nk = await fairness(nbdkit(base));
      } catch (e) {
        error = String(e?.message ?? e).slice(0, 300);
      }
      addRow({
        id: 'nbd-fair',
        title: `p99 latency of 4 KiB reads (qd1, ${fcount}) on one connection while nbdcopy reads in 32 MiB requests on another (blk serve)`,
        unit: 'ms',
        blk: blk && quantile(blk.beside, 0.99),
        baseline: blk && quantile(blk.alone, 0.99),
        baselineName: 'the same reads alone',
        note: error ?? `blk serve: ${summary(blk)}; nbdkit file: ${summary(nk)}; informational (lower is better)`,
      });
    }
  },
});
