// In-process workloads. Each runs in its own child process (bench/lib/child.mjs)
// so that peak RSS, JIT state and GC of one row do not leak into another.
import * as fs from 'node:fs';
import { loadBlk } from './blk.mjs';
import {
  KiB,
  MiB,
  SECTOR,
  TAG_BASE,
  TAG_OVERLAY,
  checkPattern,
  fillPattern,
  halfRuns,
  inRuns,
  median,
  prng,
} from './util.mjs';

const now = () => performance.now();

/** Which layer a sector's data comes from, for each fixture layout. */
function tagOfLayout(layout, size) {
  if (layout === 'base') return () => TAG_BASE;
  if (layout === 'full') return () => TAG_OVERLAY;
  if (layout === 'half') {
    const runs = halfRuns(size);
    return (s) => (inRuns(runs, s * SECTOR) ? TAG_OVERLAY : TAG_BASE);
  }
  throw new Error(`unknown layout ${layout}`);
}

async function openBlk(path, { io, readOnly = true } = {}) {
  const blk = await loadBlk();
  const options = { readOnly };
  if (io) options.vfs = new blk.NodeVfs({ io });
  return blk.openImage(path, options);
}

/** A reader `read(offset, buf)` for the target, and a closer. */
async function reader(p) {
  if (p.target === 'node-sync') {
    const fd = fs.openSync(p.path, 'r');
    return {
      read: (off, buf) => {
        fs.readSync(fd, buf, 0, buf.length, off);
      },
      close: async () => fs.closeSync(fd),
      sync: true,
    };
  }
  if (p.target === 'node-fh') {
    const fh = await fs.promises.open(p.path, 'r');
    return { read: (off, buf) => fh.read(buf, 0, buf.length, off), close: () => fh.close() };
  }
  if (p.target === 'node-cb') {
    // fs.read with a callback, wrapped in a promise: what blk's io: 'async' storages do per call.
    const fd = fs.openSync(p.path, 'r');
    const read = (off, buf) =>
      new Promise((resolve, reject) => {
        fs.read(fd, buf, 0, buf.length, off, (err, n) => (err ? reject(err) : resolve(n)));
      });
    return { read, close: async () => fs.closeSync(fd) };
  }
  if (p.target === 'blk') {
    const image = await openBlk(p.path, { io: p.io });
    if (image.size !== p.size) throw new Error(`image size ${image.size} != ${p.size}`);
    return { read: (off, buf) => image.readInto(off, buf), close: () => image.close(), image };
  }
  throw new Error(`unknown target ${p.target}`);
}

async function verifySample(r, p, count = 256) {
  const tagOf = tagOfLayout(p.layout, p.size);
  const rnd = prng(99);
  const buf = new Uint8Array(4 * KiB);
  for (let i = 0; i < count; i++) {
    const off = (rnd() % (p.size / buf.length)) * buf.length;
    await r.read(off, buf);
    checkPattern(buf, off, tagOf);
  }
}

export async function readSeq(p) {
  const r = await reader(p);
  const buf = new Uint8Array(p.req);
  const warm = Math.min(p.size, 64 * MiB);
  for (let off = 0; off < warm; off += p.req) await r.read(off, buf);
  // Several passes, the best counts: the first touch of a page-cache page after
  // it was read in costs extra (LRU activation) and is the same for every reader.
  const passes = [];
  for (let pass = 0; pass < (p.passes ?? 1); pass++) {
    const t0 = now();
    if (r.sync) for (let off = 0; off < p.size; off += p.req) r.read(off, buf);
    else for (let off = 0; off < p.size; off += p.req) await r.read(off, buf);
    passes.push((now() - t0) / 1000);
  }
  const seconds = Math.min(...passes);
  if (p.verify) await verifySample(r, p);
  await r.close();
  return { value: p.size / 1e6 / seconds, unit: 'MB/s', seconds, bytes: p.size, passes };
}

export async function readRand(p) {
  const r = await reader(p);
  const bs = p.bs ?? 4 * KiB;
  const blocks = p.size / bs;
  const rnd = prng(p.seed ?? 1);
  const offsets = new Float64Array(p.ops);
  for (let i = 0; i < p.ops; i++) offsets[i] = (rnd() % blocks) * bs;
  const warmOps = Math.min(20000, p.ops >> 3);
  const depth = p.depth ?? 1;
  const bufs = Array.from({ length: depth }, () => new Uint8Array(bs));
  const deadline = (t0) => t0 + (p.maxSeconds ?? 2) * 1000;
  // Warm-up on other offsets (the last ones of the list, read in reverse).
  for (let i = 0; i < warmOps; i++) await r.read(offsets[p.ops - 1 - i], bufs[0]);
  let done = 0;
  const t0 = now();
  const end = deadline(t0);
  if (r.sync) {
    const buf = bufs[0];
    while (done < p.ops) {
      const stop = Math.min(p.ops, done + 4096);
      for (; done < stop; done++) r.read(offsets[done], buf);
      if (now() > end) break;
    }
  } else if (depth === 1) {
    const buf = bufs[0];
    while (done < p.ops) {
      const stop = Math.min(p.ops, done + 4096);
      for (; done < stop; done++) await r.read(offsets[done], buf);
      if (now() > end) break;
    }
  } else {
    let next = 0;
    let stopped = false;
    const worker = async (buf) => {
      while (!stopped) {
        const i = next++;
        if (i >= p.ops) return;
        await r.read(offsets[i], buf);
        done++;
        if ((i & 4095) === 0 && now() > end) stopped = true;
      }
    };
    await Promise.all(bufs.map(worker));
  }
  const seconds = (now() - t0) / 1000;
  if (p.verify) await verifySample(r, p);
  await r.close();
  return { value: done / seconds, unit: 'IOPS', seconds, ops: done };
}

/** Pre-filled request buffer (pattern of virtual offset 0; every request writes the same bytes). */
function writeBuffer(len) {
  const buf = new Uint8Array(len);
  fillPattern(buf, 0, TAG_OVERLAY ^ 0x5a5a);
  return buf;
}

async function writer(p) {
  if (p.target === 'node-sync' || p.target === 'node-fh') {
    const fd = fs.openSync(p.path, 'w+');
    if (p.truncate) fs.ftruncateSync(fd, p.size);
    if (p.target === 'node-sync') {
      return {
        sync: true,
        write: (off, buf) => {
          fs.writeSync(fd, buf, 0, buf.length, off);
        },
        flush: async () => fs.fdatasyncSync(fd),
        close: async () => fs.closeSync(fd),
      };
    }
    fs.closeSync(fd);
    const fh = await fs.promises.open(p.path, 'r+');
    return {
      write: (off, buf) => fh.write(buf, 0, buf.length, off),
      flush: () => fh.datasync(),
      close: () => fh.close(),
    };
  }
  if (p.target === 'blk') {
    const blk = await loadBlk();
    await blk.createImage(p.path, { format: 'cow', backing: p.backing, overwrite: true });
    const image = await openBlk(p.path, { io: p.io, readOnly: false });
    if (image.format !== 'cow') throw new Error(`created image opened as ${image.format}`);
    return {
      write: (off, buf) => image.write(off, buf),
      flush: () => image.flush(),
      close: () => image.close(),
      image,
    };
  }
  throw new Error(`unknown target ${p.target}`);
}

export async function writeSeq(p) {
  const w = await writer(p);
  const buf = writeBuffer(p.req);
  // p.shift: every request starts that many bytes past a request boundary (1: unaligned writes); the last that fits is the last.
  const shift = p.shift ?? 0;
  const count = Math.floor((p.size - shift) / p.req);
  const t0 = now();
  if (w.sync) for (let i = 0; i < count; i++) w.write(shift + i * p.req, buf);
  else for (let i = 0; i < count; i++) await w.write(shift + i * p.req, buf);
  const t1 = now();
  await w.flush();
  const t2 = now();
  if (w.image) {
    const back = new Uint8Array(p.req);
    for (const i of [0, count - 1, Math.floor(count / 2)]) {
      await w.image.readInto(shift + i * p.req, back);
      if (Buffer.compare(back, buf) !== 0) throw new Error(`read-back mismatch at ${shift + i * p.req}`);
    }
  }
  const tc = now();
  await w.close();
  const closeMs = now() - tc;
  const seconds = (t2 - t0) / 1000;
  const bytes = count * p.req;
  return {
    value: bytes / 1e6 / seconds,
    unit: 'MB/s',
    seconds,
    bytes,
    extra: { writeSeconds: (t1 - t0) / 1000, flushSeconds: (t2 - t1) / 1000, closeMs },
  };
}

export async function writeRand(p) {
  const w = await writer({ ...p, truncate: true });
  const bs = p.bs ?? 4 * KiB;
  const buf = writeBuffer(bs);
  const rnd = prng(p.seed ?? 2);
  const offsets = new Float64Array(p.count);
  for (let i = 0; i < p.count; i++) offsets[i] = (rnd() % (p.size / bs)) * bs;
  const t0 = now();
  if (w.sync) for (let i = 0; i < p.count; i++) w.write(offsets[i], buf);
  else for (let i = 0; i < p.count; i++) await w.write(offsets[i], buf);
  const t1 = now();
  await w.flush();
  const t2 = now();
  if (w.image) {
    const back = new Uint8Array(bs);
    for (let i = 0; i < p.count; i += Math.max(1, p.count >> 6)) {
      await w.image.readInto(offsets[i], back);
      if (Buffer.compare(back, buf) !== 0) throw new Error(`read-back mismatch at ${offsets[i]}`);
    }
  }
  await w.close();
  const seconds = (t2 - t0) / 1000;
  return {
    value: p.count / seconds,
    unit: 'IOPS',
    seconds,
    ops: p.count,
    extra: { writeSeconds: (t1 - t0) / 1000, flushSeconds: (t2 - t1) / 1000 },
  };
}

/** Time of `openImage` (first in a fresh process, then warm), plus info(). */
export async function openInfo(p) {
  const t0 = now();
  const blk = await loadBlk();
  const importMs = now() - t0;
  const times = [];
  let info;
  for (let i = 0; i < p.n; i++) {
    const t = now();
    const image = await blk.openImage(p.path, { readOnly: true });
    times.push(now() - t);
    info = image.info();
    await image.close();
  }
  const warm = times.slice(1);
  return {
    value: times[0],
    unit: 'ms',
    firstMs: times[0],
    warmMedianMs: warm.length ? median(warm) : times[0],
    importMs,
    info: { format: info.format, size: info.size },
  };
}

/** Measures a no-op: the cost of a child process itself (for calibration). */
export async function noop() {
  return { value: 0, unit: 'ms' };
}

/**
 * Walks `Image.map()` over the whole image at `p.path` and times it; counts the
 * block status calls each layer of the chain answered (depth 0 = top), and checks
 * that the runs tile the image and that `p.expectData` runs hold data. Untimed
 * walks first (JIT and caches warm), so that walks of 1,000 and 10,000 runs
 * compare at the same steady cost per run.
 */
export async function mapWalk(p) {
  const blk = await loadBlk();
  const image = await blk.openImage(p.path, { readOnly: true });
  const calls = [];
  for (const [depth, layer] of image.chain().entries()) {
    calls.push(0);
    const status = layer.status.bind(layer);
    layer.status = (...args) => {
      calls[depth]++;
      return status(...args);
    };
  }
  const walk = async () => {
    let runs = 0,
      dataRuns = 0,
      pos = 0;
    for await (const r of image.map()) {
      if (r.start !== pos) throw new Error(`map: run at ${r.start}, expected ${pos}`);
      pos += r.length;
      runs++;
      if (r.data) dataRuns++;
    }
    if (pos !== image.size) throw new Error(`map covered ${pos} of ${image.size} bytes`);
    if (p.expectData !== undefined && dataRuns !== p.expectData)
      throw new Error(`map found ${dataRuns} data runs, expected ${p.expectData}`);
    return runs;
  };
  // Untimed walks (two or more, 100,000 runs in all): every walk is then timed with optimised code.
  for (let walked = 0, n = 0; n < 200 && (n < 2 || walked < 100_000); n++) walked += await walk();
  calls.fill(0);
  const t0 = now();
  const runs = await walk();
  const seconds = (now() - t0) / 1000;
  await image.close();
  return { value: seconds, unit: 's', seconds, runs, calls };
}
