// @blk/http rows (issue 15, Node side): images read over HTTP from a local nginx, against curl, against
// the same chain from local files, and against a naive one-request-per-read client behind a proxy that
// adds 5 ms to every request. nginx missing: the rows say so.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeCow } from '../lib/cowfile.mjs';
import { fillPattern, halfRuns, TAG_OVERLAY } from '../lib/util.mjs';

const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => fs.existsSync(p));
const CURL = ['/usr/bin/curl', '/usr/local/bin/curl'].find((p) => fs.existsSync(p));
const CHILD = fileURLToPath(new URL('./http/child.mjs', import.meta.url));
const PROXY = fileURLToPath(new URL('./http/proxy.mjs', import.meta.url));

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

function work(params) {
  const r = spawnSync(process.execPath, [CHILD, JSON.stringify(params)], { encoding: 'utf8', maxBuffer: 16 << 20 });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  let parsed;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new Error(`http bench child died (${r.status}): ${(r.stderr ?? '').slice(-2000)}`);
  }
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.result;
}

async function startNginx(root, tmp) {
  const port = await freePort();
  const t = (name) => `${name} ${path.join(tmp, name.replace('_path', ''))};`;
  fs.writeFileSync(
    path.join(tmp, 'nginx.conf'),
    [
      'daemon off;',
      'master_process off;',
      'worker_processes 1;',
      `pid ${path.join(tmp, 'nginx.pid')};`,
      `error_log ${path.join(tmp, 'error.log')} warn;`,
      'events { worker_connections 256; }',
      'http {',
      '  access_log off;',
      `  ${t('client_body_temp_path')} ${t('proxy_temp_path')} ${t('fastcgi_temp_path')} ${t('uwsgi_temp_path')} ${t('scgi_temp_path')}`,
      '  default_type application/octet-stream; sendfile on; keepalive_requests 1000000;',
      `  server { listen 127.0.0.1:${port}; root ${root}; }`,
      '}',
    ].join('\n'),
  );
  const child = spawn(NGINX, ['-p', tmp, '-c', path.join(tmp, 'nginx.conf'), '-e', path.join(tmp, 'error.log')], {
    stdio: 'ignore',
  });
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`${origin}/`, { method: 'HEAD' });
      return { origin, stop: () => child.kill('SIGTERM') };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill('SIGTERM');
  throw new Error('nginx did not answer');
}

async function startProxy(target, delayMs) {
  const child = spawn(process.execPath, [PROXY, target, String(delayMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    child.stdout.once('data', (c) => {
      const m = /listening (\d+)/.exec(String(c));
      m ? resolve(Number(m[1])) : reject(new Error(`proxy: ${c}`));
    });
    child.once('exit', (code) => reject(new Error(`proxy exited ${code}`)));
  });
  const origin = `http://127.0.0.1:${port}`;
  const count = async () => Number(await (await fetch(`${origin}/__count`)).text());
  return { origin, count, stop: () => child.kill('SIGTERM') };
}

export default (ctx) => {
  const { S, QUICK, MiB, dir, addRow, log, fixture, base, prepare, fmtRatio } = ctx;
  const chainSize = QUICK ? 32 * MiB : 256 * MiB;
  const chain = () =>
    fixture('http-chain.cow', (p) => {
      const b = fixture('http-base.raw', (bp) => {
        execFileSync('cp', [base(), bp]); // S.size bytes; the chain uses its first chainSize
        fs.truncateSync(bp, chainSize);
        return bp;
      });
      writeCow(p, {
        size: chainSize,
        backingPath: b,
        runs: halfRuns(chainSize),
        fill: (buf, off) => fillPattern(buf, off, TAG_OVERLAY),
      });
      // A relative backing name (cow v3: offset 32, 4096 bytes): resolved against the image's URL.
      const fd = fs.openSync(p, 'r+');
      const name = Buffer.alloc(4096);
      name.write('http-base.raw');
      fs.writeSync(fd, name, 0, 4096, 32);
      fs.closeSync(fd);
      return p;
    });
  const missing = (id, title) =>
    addRow({
      id,
      title,
      unit: '',
      note: `skipped: ${NGINX ? 'curl' : 'nginx'} is not installed (apt-get install nginx-light curl)`,
    });

  return {
    id: 'http',
    rows: ['http-seq', 'http-rand-warm', 'http-rand-cold'],
    async run() {
      const seqTitle = `sequential read of a ${QUICK ? '64 MiB' : '1 GiB'} raw image over HTTP from nginx (1 MiB reads)`;
      if (!NGINX || !CURL) {
        missing('http-seq', seqTitle);
        missing('http-rand-warm', 'random 4 KiB reads of a cow chain over HTTP, warm cache');
        missing('http-rand-cold', 'cold random 4 KiB reads over HTTP, 5 ms added latency');
        return;
      }
      const tmp = fs.mkdtempSync(path.join(dir, 'nginx-'));
      const ng = await startNginx(dir, tmp);
      try {
        // ---- sequential: Image.read vs curl -o /dev/null
        const b = base();
        const url = `${ng.origin}/${path.basename(b)}`;
        const blkRuns = [];
        const curlRuns = [];
        for (let rep = 0; rep < S.reps; rep++) {
          prepare([b]);
          const t0 = performance.now();
          execFileSync(CURL, ['-s', '-o', '/dev/null', url]);
          curlRuns.push(S.size / 1e6 / ((performance.now() - t0) / 1000));
          prepare([b]);
          blkRuns.push(work({ task: 'seq', path: url, format: 'raw', req: MiB }).value);
        }
        const blkSeq = Math.max(...blkRuns);
        const curlSeq = Math.max(...curlRuns);
        addRow({
          id: 'http-seq',
          title: seqTitle,
          unit: 'MB/s',
          blk: blkSeq,
          baseline: curlSeq,
          baselineName: 'curl -o /dev/null',
          goal: { min: 0.8 },
          note: `best of ${S.reps}; blk through openImage + Image.read on @blk/http's defaults`,
        });
        log(`    http-seq ${blkSeq.toFixed(0)} vs curl ${curlSeq.toFixed(0)} MB/s (${fmtRatio(blkSeq / curlSeq)})`);

        // ---- warm random reads of a cow chain: over HTTP (after one full read) vs local files
        const c = chain();
        const ops = QUICK ? 20_000 : 100_000;
        const cacheSize = 4 * chainSize;
        prepare([c, path.join(dir, 'http-base.raw')]);
        const local = work({ task: 'rand', path: c, ops, depth: 1 });
        const remote = work({
          task: 'rand',
          path: `${ng.origin}/http-chain.cow`,
          ops,
          depth: 1,
          warm: true,
          http: { cacheSize },
        });
        addRow({
          id: 'http-rand-warm',
          title: `random 4 KiB reads of a ${chainSize / MiB} MiB cow-over-raw chain over HTTP, warm block cache (qd1)`,
          unit: 'IOPS',
          blk: remote.value,
          baseline: local.value,
          baselineName: 'the same chain from local files',
          goal: { min: 0.5 },
          note: `${ops} reads; the chain read once first with cacheSize ${cacheSize / MiB} MiB`,
        });
        log(`    http-rand-warm ${remote.value.toFixed(0)} vs local ${local.value.toFixed(0)} reads/s`);

        // ---- cold random reads behind a 5 ms proxy: blk (defaults) vs one GET per read
        const proxy = await startProxy(ng.origin, 5);
        try {
          // 4000 reads over 64 MiB: a working set the default cache holds (the rows' point: what the
          // cache and 256 KiB blocks save against a request per read; see packages/http/README.md).
          const coldSize = 64 * MiB;
          fixture('http-cold.raw', (cp) => {
            execFileSync('cp', [base(), cp]);
            fs.truncateSync(cp, coldSize);
            return cp;
          });
          const coldOps = 4000;
          const depth = 8;
          const target = `${proxy.origin}/http-cold.raw`;
          let before = await proxy.count();
          const naive = work({ task: 'naive', url: target, size: coldSize, ops: coldOps, depth });
          const naiveRequests = (await proxy.count()) - before;
          before = await proxy.count();
          const cold = work({ task: 'rand', path: target, format: 'raw', ops: coldOps, depth });
          const blkRequests = (await proxy.count()) - before;
          const fewer = naiveRequests / blkRequests;
          addRow({
            id: 'http-rand-cold',
            title: `cold random 4 KiB reads of a ${coldSize / MiB} MiB raw image over HTTP, 5 ms added per request (qd${depth})`,
            unit: 'reads/s',
            blk: Math.round(cold.value),
            baseline: Math.round(naive.value),
            baselineName: 'one ranged GET per read, no cache',
            goal: { min: 3 },
            note: `${coldOps} reads; requests: blk ${blkRequests}, naive ${naiveRequests} (${fewer.toFixed(1)}× fewer; goal ≥ 5×)`,
          });
          log(
            `    http-rand-cold ${cold.value.toFixed(0)} vs ${naive.value.toFixed(0)} reads/s; requests ${blkRequests} vs ${naiveRequests}`,
          );
        } finally {
          proxy.stop();
        }
      } finally {
        ng.stop();
      }
    },
  };
};
