// One measurement of bench/groups/http.mjs in a fresh node: reads an image through blk (over HTTP or
// from local files) or through plain ranged fetches, and prints one JSON line { ok, result }.
import * as http from 'node:http';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../../lib/blk.mjs';
import { prng } from '../../lib/util.mjs';

const p = JSON.parse(process.argv[2]);
const dist = (pkg, file = 'index.js') => pathToFileURL(`${ROOT}packages/${pkg}/dist/${file}`).href;
const images = await import(dist('images'));
// The `node` condition's entry, as an application on Node gets it: nodeTransport by default.
const blkHttp = await import(dist('http', 'index.node.js'));
const now = () => performance.now();

function offsets(count, size, bs, seed) {
  const rnd = prng(seed);
  const blocks = Math.floor(size / bs);
  return Array.from({ length: count }, () => (rnd() % blocks) * bs);
}

async function open(path) {
  const vfs = blkHttp.withHttp(images.hostVfs({ lock: 'off' }), p.http ?? {});
  const host = images.createHost({ vfs });
  return host.openImage(path, { readOnly: true, ...(p.format ? { format: p.format } : {}) });
}

/** Runs `fn(i)` for i < count with `depth` at once; returns the seconds taken. */
async function pool(count, depth, fn) {
  let next = 0;
  const t0 = now();
  await Promise.all(
    Array.from({ length: depth }, async () => {
      for (let i = next++; i < count; i = next++) await fn(i);
    }),
  );
  return (now() - t0) / 1000;
}

async function seq() {
  const image = await open(p.path);
  const buf = new Uint8Array(p.req);
  const t0 = now();
  for (let off = 0; off < image.size; off += p.req)
    await image.readInto(off, buf.subarray(0, Math.min(p.req, image.size - off)));
  const seconds = (now() - t0) / 1000;
  const size = image.size;
  await image.close();
  return { value: size / 1e6 / seconds, unit: 'MB/s', seconds };
}

async function rand() {
  const image = await open(p.path);
  const bs = 4096;
  const buf = Array.from({ length: p.depth }, () => new Uint8Array(bs));
  if (p.warm) {
    // Every byte once, sequentially: the chain's blocks are in the cache before the timed reads.
    const big = new Uint8Array(1 << 20);
    for (let off = 0; off < image.size; off += big.length)
      await image.readInto(off, big.subarray(0, Math.min(big.length, image.size - off)));
  }
  const list = offsets(p.ops, image.size, bs, p.seed ?? 1);
  const seconds = await pool(p.ops, p.depth, (i) => image.readInto(list[i], buf[i % p.depth]));
  await image.close();
  return { value: p.ops / seconds, unit: 'reads/s', seconds };
}

/** The naive client: one ranged GET per 4 KiB read, no cache (of the raw base image). */
async function naive() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: p.depth });
  const get = (offset) =>
    new Promise((resolve, reject) => {
      const req = http.get(p.url, { agent, headers: { Range: `bytes=${offset}-${offset + 4095}` } }, (res) => {
        let n = 0;
        res.on('data', (c) => {
          n += c.length;
        });
        res.on('end', () => (n === 4096 ? resolve() : reject(new Error(`short body ${n}`))));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
  const list = offsets(p.ops, p.size, 4096, p.seed ?? 1);
  const seconds = await pool(p.ops, p.depth, (i) => get(list[i]));
  agent.destroy();
  return { value: p.ops / seconds, unit: 'reads/s', seconds, requests: p.ops };
}

try {
  const tasks = { seq, rand, naive };
  const result = await tasks[p.task]();
  console.log(JSON.stringify({ ok: true, result }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: String(err?.stack ?? err) }));
}
