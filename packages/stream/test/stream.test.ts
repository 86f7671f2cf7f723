/**
 * Streams of an image's contents: the merged chain as a web byte stream and a Node Readable
 * (digests equal to `blk convert -O raw` of the same chain), sparse runs that skip holes,
 * bounded memory on a large sparse image, backpressure (a slow consumer does not make the
 * stream read ahead), and images written from web and Node streams.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost as memoryHost, MemoryVfs, type Image, type HostOpenOptions } from '@blk/core';
import { createHost } from '@blk/images';
import { rawDriver } from '@blk/raw';
import {
  createImageFromStream,
  imageDataRuns,
  imageNodeReadable,
  imageNodeWritable,
  imageReadableStream,
  imageSparseStream,
  imageWritableStream,
  writeImageFromStream,
} from '@blk/stream/node';
import { pattern } from '@blk/testkit';
import { BLK, ensureBuilt } from '../../cli/test/helpers.js';

const MiB = 1024 * 1024;
let dir: string;
const host = createHost();
/** The chain top.cow > mid.cow > base.raw: cow records no backing format, so it is named per depth. */
const chain: HostOpenOptions = { readOnly: true, backing: { format: (_ref, depth) => (depth === 1 ? 'cow' : 'raw') } };

function sha(data: Uint8Array | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function digestWeb(stream: ReadableStream<Uint8Array>, byob: boolean): Promise<string> {
  const h = createHash('sha256');
  if (byob) {
    const reader = stream.getReader({ mode: 'byob' });
    let buf = new Uint8Array(300_000); // not a multiple of anything: pieces cross every boundary
    for (;;) {
      const { done, value } = await reader.read(buf);
      if (done) break;
      h.update(value);
      buf = new Uint8Array(value.buffer);
    }
  } else {
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) h.update(chunk);
  }
  return h.digest('hex');
}

/** A cow chain of three layers on disk (raw base, two cow overlays), with data in each layer. */
async function makeChain(): Promise<string> {
  const base = path.join(dir, 'base.raw');
  await host.createImage(base, { format: 'raw', size: 6 * MiB + 1234 });
  const b = await host.openImage(base, { format: 'raw' });
  await b.write(0, pattern(MiB + 7, 1));
  await b.write(4 * MiB, pattern(200_000, 2));
  await b.close();
  const mid = path.join(dir, 'mid.cow');
  await host.createImage(mid, { format: 'cow', backing: base });
  const m = await host.openImage(mid);
  await m.write(512 * 1024 + 3, pattern(70_000, 3));
  await m.write(5 * MiB, pattern(4096, 4));
  await m.close();
  const top = path.join(dir, 'top.cow');
  await host.createImage(top, { format: 'cow', backing: { path: mid, format: 'cow' } });
  const t = await host.openImage(top, { backing: { format: chain.backing!.format! } });
  await t.write(100, pattern(1000, 5));
  await t.write(6 * MiB, pattern(1234, 6));
  await t.close();
  return top;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-stream-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('reading a cow chain as a stream', () => {
  it('gives the bytes of `blk convert -O raw`: web byte stream (BYOB and default readers) and Node Readable', async () => {
    ensureBuilt();
    const top = await makeChain();
    const out = path.join(dir, 'merged.raw');
    const r = spawnSync(process.execPath, [BLK, 'convert', '--source-backing-format', 'cow', '-O', 'raw', top, out], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const expected = sha(fs.readFileSync(out));
    const image = await host.openImage(top, chain);
    try {
      expect(await digestWeb(imageReadableStream(image, { chunkSize: 256 * 1024 }), true)).toBe(expected);
      expect(await digestWeb(imageReadableStream(image), false)).toBe(expected);
      const h = createHash('sha256');
      await pipeline(imageNodeReadable(image, { chunkSize: 100_000 }), h);
      expect(h.digest('hex')).toBe(expected);
      // A sub-range.
      const part = await digestWeb(imageReadableStream(image, { start: 1000, end: 3 * MiB + 5 }), false);
      expect(part).toBe(sha(fs.readFileSync(out).subarray(1000, 3 * MiB + 5)));
    } finally {
      await image.close();
    }
  });

  it('sparse runs skip holes and rebuild the image exactly; Node sparse Readable yields the same runs', async () => {
    const top = path.join(dir, 'top.cow');
    const image = await host.openImage(top, chain);
    try {
      const whole = await image.read(0, image.size);
      const rebuilt = new Uint8Array(image.size);
      let bytes = 0;
      const runs: Array<[number, number]> = [];
      const reader = imageSparseStream(image, { chunkSize: 64 * 1024 }).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        rebuilt.set(value.data, value.offset);
        bytes += value.data.length;
        runs.push([value.offset, value.data.length]);
      }
      expect(sha(rebuilt)).toBe(sha(whole));
      // The base's hole between 1 MiB + 7 and 4 MiB (but for what the overlays wrote) is skipped.
      expect(bytes).toBeLessThan(image.size / 2);
      expect(runs.some(([o, n]) => o < 2 * MiB + 1 && o + n > 2 * MiB)).toBe(false);
      const fromNode: Array<[number, number]> = [];
      for await (const run of imageNodeReadable(image, { sparse: true, chunkSize: 64 * 1024 })) {
        fromNode.push([run.offset, run.data.length]);
      }
      expect(fromNode).toEqual(runs);
    } finally {
      await image.close();
    }
  });

  it('refuses a range outside the image and a bad chunk size', async () => {
    const image = await host.openImage(path.join(dir, 'top.cow'), chain);
    try {
      expect(() => imageReadableStream(image, { end: image.size + 1 })).toThrow(/outside/);
      expect(() => imageNodeReadable(image, { chunkSize: 0 })).toThrow(/chunk size/);
    } finally {
      await image.close();
    }
  });
});

describe('bounded memory and backpressure', () => {
  it('streams a 64 GiB sparse image: sparse mode reads only its data, bytes mode keeps memory flat', async () => {
    const big = path.join(dir, 'big.raw');
    await host.createImage(big, { format: 'raw', size: 64 * 1024 * MiB });
    const img = await host.openImage(big, { format: 'raw' });
    await img.write(0, pattern(4096, 7));
    await img.write(40 * 1024 * MiB, pattern(8192, 8));
    await img.close();
    const image = await host.openImage(big, { format: 'raw', readOnly: true });
    try {
      const seen: Array<[number, number]> = [];
      for await (const run of imageDataRuns(image)) seen.push([run.offset, run.data.length]);
      expect(seen).toEqual([
        [0, 4096],
        [40 * 1024 * MiB, 8192],
      ]);
      // 384 MiB of the bytes stream (mostly a hole): external memory stays within a few chunks.
      const before = process.memoryUsage().arrayBuffers;
      let peak = 0;
      let total = 0;
      const stream = imageNodeReadable(image, { end: 384 * MiB, chunkSize: MiB });
      for await (const chunk of stream) {
        total += (chunk as Buffer).length;
        if (total % (32 * MiB) === 0) peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
      }
      expect(total).toBe(384 * MiB);
      expect(peak).toBeLessThan(64 * MiB);
    } finally {
      await image.close();
    }
  });

  it('a slow consumer does not make the web or Node stream read ahead (bytes read <= consumed + highWaterMark + 1 chunk)', async () => {
    const vfs = new MemoryVfs();
    const mem = memoryHost({ drivers: [rawDriver], vfs });
    await mem.createImage('/a.raw', { format: 'raw', size: 64 * MiB });
    const image = await mem.openImage('/a.raw', { format: 'raw', readOnly: true });
    let read = 0;
    const spy = image.readInto.bind(image);
    (image as { readInto: Image['readInto'] }).readInto = (offset, into, o) => {
      read += into.length;
      return spy(offset, into, o);
    };
    const chunk = 256 * 1024;
    const settle = () => new Promise((r) => setTimeout(r, 30));
    try {
      // Web: highWaterMark 0, default reader.
      const reader = imageReadableStream(image, { chunkSize: chunk }).getReader();
      let consumed = 0;
      for (let i = 0; i < 5; i++) {
        const { value } = await reader.read();
        consumed += value!.length;
        await settle();
        expect(read).toBeLessThanOrEqual(consumed + chunk);
      }
      await reader.cancel();
      // Web with a read-ahead of 1 MiB.
      read = 0;
      const ahead = imageReadableStream(image, { chunkSize: chunk, highWaterMark: MiB }).getReader();
      await settle();
      consumed = 0;
      for (let i = 0; i < 3; i++) {
        consumed += (await ahead.read()).value!.length;
        await settle();
        expect(read).toBeLessThanOrEqual(consumed + MiB + chunk);
      }
      expect(read).toBeGreaterThan(consumed); // it does read ahead, up to the mark
      await ahead.cancel();
      // Node: paused consumer.
      read = 0;
      const node = imageNodeReadable(image, { chunkSize: chunk, highWaterMark: 2 * chunk });
      node.pause();
      node.on('data', () => undefined);
      node.pause();
      await settle();
      await settle();
      expect(read).toBeLessThanOrEqual(2 * chunk + chunk);
      node.destroy();
    } finally {
      await image.close();
    }
  });
});

describe('writing an image from a stream', () => {
  it('creates a raw image of unknown size from a Node Readable and a cow overlay from a web stream of runs', async () => {
    const content = new Uint8Array(3 * MiB + 333);
    content.set(pattern(MiB, 9), 0);
    content.set(pattern(1000, 10), 2 * MiB + 17); // between: zeros
    const src = Readable.from(
      (function* () {
        for (let i = 0; i < content.length; i += 77_777) yield Buffer.from(content.subarray(i, i + 77_777));
      })(),
    );
    const out = path.join(dir, 'from-stream.raw');
    const r = await createImageFromStream(host, out, src, { format: 'raw' });
    expect(r.bytes).toBe(content.length);
    expect(r.zeroBytes).toBeGreaterThan(0);
    expect(fs.statSync(out).size).toBe(content.length);
    expect(sha(fs.readFileSync(out))).toBe(sha(content));

    // Copy the cow chain's data runs into a fresh cow overlay over an empty raw base: same bytes.
    const top = await host.openImage(path.join(dir, 'top.cow'), chain);
    const base = path.join(dir, 'empty.raw');
    await host.createImage(base, { format: 'raw', size: top.size });
    const copy = path.join(dir, 'copy.cow');
    await host.createImage(copy, { format: 'cow', backing: base });
    const target = await host.openImage(copy);
    await writeImageFromStream(target, imageSparseStream(top));
    expect(sha(await target.read(0, target.size))).toBe(sha(await top.read(0, top.size)));
    await target.close();

    // A web WritableStream and a Node Writable as pipe targets.
    const w1 = path.join(dir, 'w1.raw');
    await host.createImage(w1, { format: 'raw', size: top.size });
    const t1 = await host.openImage(w1, { format: 'raw' });
    await imageReadableStream(top).pipeTo(imageWritableStream(t1));
    expect(sha(await t1.read(0, t1.size))).toBe(sha(await top.read(0, top.size)));
    await t1.close();
    const w2 = path.join(dir, 'w2.raw');
    await host.createImage(w2, { format: 'raw', size: top.size });
    const t2 = await host.openImage(w2, { format: 'raw' });
    await pipeline(imageNodeReadable(top), imageNodeWritable(t2));
    expect(sha(await t2.read(0, t2.size))).toBe(sha(await top.read(0, top.size)));
    await t2.close();
    await top.close();
  });

  it('a source that fails half-way leaves no image behind; an aborted Node stream errors with aborted', async () => {
    const out = path.join(dir, 'broken.raw');
    async function* broken() {
      yield pattern(MiB, 1);
      throw new Error('source broke');
    }
    await expect(createImageFromStream(host, out, broken(), { format: 'raw' })).rejects.toThrow('source broke');
    expect(fs.existsSync(out)).toBe(false);
    const image = await host.openImage(path.join(dir, 'top.cow'), chain);
    try {
      const ac = new AbortController();
      const r = imageNodeReadable(image, { chunkSize: 4096, signal: ac.signal });
      const seen = (async () => {
        for await (const _ of r) ac.abort();
      })();
      await expect(seen).rejects.toMatchObject({ kind: 'aborted' });
      const web = imageReadableStream(image, { signal: AbortSignal.abort() });
      await expect(web.getReader().read()).rejects.toMatchObject({ kind: 'aborted' });
    } finally {
      await image.close();
    }
  });

  it('a stream longer than a fixed-size image fails with out-of-range', async () => {
    const p = path.join(dir, 'small.raw');
    await host.createImage(p, { format: 'raw', size: 4096 });
    const image = await host.openImage(p, { format: 'raw' });
    try {
      await expect(writeImageFromStream(image, [new Uint8Array(4097).fill(1)])).rejects.toMatchObject({
        kind: 'out-of-range',
      });
    } finally {
      await image.close();
    }
  });
});
