#!/usr/bin/env node
/**
 * EXPERIMENT: nbdcopy URI null: of a page-cached raw image through nbdkit file, the Node floor server
 * (fs.readSync + socket.write, bench/lib/nbd-floor-server.mjs) and the same server replying with
 * @blk/native's sendv (sendfile from a libuv worker thread, ./server.mjs), interleaved, ROUNDS rounds.
 * With BLK_SERVE_CLI set (packages/cli/dist/bin.js), `blk serve` is measured too (BLK_NATIVE_IO as in
 * the environment).
 *
 *   node bench/experiments/nbd-sendfile/compare.mjs [SIZE_MIB=1024] [ROUNDS=5]
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const MiB = 1 << 20;
const sizeMiB = Number(process.argv[2] ?? 1024);
const rounds = Number(process.argv[3] ?? 5);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-sendfile-exp-'));
const file = path.join(dir, 'base.raw');
{
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < sizeMiB; i++) {
    chunk.fill(i & 0xff);
    fs.writeSync(fd, chunk);
  }
  fs.closeSync(fd);
}
const here = new URL('.', import.meta.url).pathname;
const servers = [
  { key: 'nbdkit file', argv: ['nbdkit', '-f', '-r', '-U', 'SOCK', 'file', file] },
  { key: 'floor copy', argv: [process.execPath, `${here}server.mjs`, '--mode', 'copy', '--multi-conn', 'SOCK', file] },
  { key: 'floor sendfile', argv: [process.execPath, `${here}server.mjs`, '--multi-conn', 'SOCK', file] },
];
if (process.env.BLK_SERVE_CLI) {
  const blk = (key, env) => ({
    key,
    env,
    argv: [
      process.execPath,
      process.env.BLK_SERVE_CLI,
      'serve',
      '-t',
      '-e',
      '16',
      '-r',
      '-f',
      'raw',
      '-k',
      'SOCK',
      file,
    ],
  });
  servers.push(blk('blk serve', {}));
  if (process.env.BLK_COMPARE_OFF) servers.push(blk('blk serve native off', { BLK_NATIVE_IO: 'off' }));
}
let serial = 0;
async function start({ argv, env }) {
  const sock = path.join(dir, `s${++serial}.sock`);
  const child = spawn(
    argv[0],
    argv.slice(1).map((a) => (a === 'SOCK' ? sock : a)),
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, ...env },
    },
  );
  for (let i = 0; ; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(sock);
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) break;
    if (i > 500) throw new Error(`${argv[0]} did not listen`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    uri: `nbd+unix:///?socket=${sock}`,
    stop: () =>
      new Promise((r) => {
        child.once('exit', r);
        child.kill('SIGTERM');
      }),
  };
}
const samples = Object.fromEntries(servers.map((s) => [s.key, []]));
spawnSync('cat', [file], { stdio: ['ignore', 'ignore', 'ignore'] }); // page cache
for (let round = 0; round < rounds; round++) {
  for (const s of servers) {
    const srv = await start(s);
    const t0 = performance.now();
    const r = spawnSync('nbdcopy', [srv.uri, 'null:'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const secs = (performance.now() - t0) / 1000;
    await srv.stop();
    if (r.status !== 0) throw new Error(`${s.key}: nbdcopy: ${r.stderr}`);
    samples[s.key].push(sizeMiB / secs);
  }
}
const base = Math.max(...samples['nbdkit file']);
console.log(
  `load: ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}; ${sizeMiB} MiB, ${rounds} rounds interleaved`,
);
for (const [k, v] of Object.entries(samples)) {
  const best = Math.max(...v);
  console.log(
    `${k.padEnd(22)} best ${best.toFixed(0).padStart(5)} MiB/s  ${(best / base).toFixed(2)}x nbdkit   [${v.map((x) => x.toFixed(0)).join(' ')}]`,
  );
}
fs.rmSync(dir, { recursive: true, force: true });
