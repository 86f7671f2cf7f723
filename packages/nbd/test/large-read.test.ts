/**
 * Large reads (at least 16 KiB, the hole-aware path): a reply without holes is one buffer, its
 * header in room reserved before the data (one write per reply, header and data never split);
 * reused reply buffers carry the right header each time; structured reads of a cow chain across
 * its layers' boundaries hold the chain's bytes, with hole chunks where it reads as zeros.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, createImage, openImage, type Image } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '@blk/cow';
import {
  CHUNK,
  CHUNK_FLAG_DONE,
  CMD,
  type ByteStream,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  Transmission,
} from '../src/index.js';
import { pipe } from './pipe.js';
import { assemble, req, structuredReply } from './wire.js';

const KiB = 1024;
const registry = new DriverRegistry([cowDriver, rawDriver]);

/** A stream fed with `requests`, ending after them; keeps a copy of every write (and hands the buffer back at once). */
class Recorder implements ByteStream {
  readonly writes: Uint8Array[] = [];
  private input: Uint8Array;
  constructor(requests: Uint8Array[]) {
    this.input = Buffer.concat(requests);
  }
  async readExactly(n: number): Promise<Uint8Array | null> {
    if (this.input.length === 0) return null;
    if (this.input.length < n) throw new Error('short');
    const out = this.input.slice(0, n);
    this.input = this.input.subarray(n);
    return out;
  }
  async write(data: Uint8Array, sent?: () => void): Promise<void> {
    this.writes.push(data.slice());
    // Scribbled over once handed back: a reused buffer must be rewritten whole before it is sent again.
    sent?.();
    data.fill(0xa5);
  }
  close(): void {}
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = ((i * 13 + seed) % 255) + 1; // never 0: no zero runs
  return b;
}

/** Puts `bytes` at `path` with its all-zero 64 KiB pieces left as holes (what block status reports as zero). */
function putSparse(vfs: MemoryVfs, path: string, bytes: Uint8Array): void {
  const file = vfs.put(path, new Uint8Array(0));
  for (let o = 0; o < bytes.length; o += 64 * KiB) {
    const part = bytes.subarray(o, o + 64 * KiB);
    if (part.some((b) => b !== 0)) file.writeAt(o, part);
  }
  file.length = bytes.length;
}

async function rawImage(bytes: Uint8Array): Promise<Image> {
  const vfs = new MemoryVfs();
  putSparse(vfs, '/a.raw', bytes);
  return openImage('/a.raw', { registry, vfs, format: 'raw', readOnly: true });
}

async function run(image: Image, structured: boolean, requests: Uint8Array[]): Promise<Uint8Array[]> {
  const stream = new Recorder(requests);
  await new Transmission(stream, image, { structured, contexts: [] }).run();
  return stream.writes;
}

describe('large read replies', () => {
  it('structured, no holes: one write, the chunk header right before the data', async () => {
    const bytes = pattern(1024 * KiB, 3);
    const image = await rawImage(bytes);
    const writes = await run(image, true, [req(CMD.READ, 64 * KiB, 256 * KiB, 77n)]);
    expect(writes).toHaveLength(1);
    const w = writes[0]!;
    expect(w.length).toBe(28 + 256 * KiB);
    const v = new DataView(w.buffer, w.byteOffset, 28);
    expect(v.getUint32(0)).toBe(STRUCTURED_REPLY_MAGIC);
    expect(v.getUint16(4)).toBe(CHUNK_FLAG_DONE);
    expect(v.getUint16(6)).toBe(CHUNK.OFFSET_DATA);
    expect(v.getBigUint64(8)).toBe(77n);
    expect(v.getUint32(16)).toBe(8 + 256 * KiB);
    expect(v.getBigUint64(20)).toBe(BigInt(64 * KiB));
    expect(Buffer.compare(w.subarray(28), bytes.subarray(64 * KiB, 320 * KiB))).toBe(0);
    await image.close();
  });

  it('simple replies: one write, the 16-byte header right before the data', async () => {
    const bytes = pattern(512 * KiB, 5);
    const image = await rawImage(bytes);
    const writes = await run(image, false, [req(CMD.READ, 4096, 100 * KiB, 9n)]);
    expect(writes).toHaveLength(1);
    const w = writes[0]!;
    expect(w.length).toBe(16 + 100 * KiB);
    const v = new DataView(w.buffer, w.byteOffset, 16);
    expect(v.getUint32(0)).toBe(SIMPLE_REPLY_MAGIC);
    expect(v.getUint32(4)).toBe(0);
    expect(v.getBigUint64(8)).toBe(9n);
    expect(Buffer.compare(w.subarray(16), bytes.subarray(4096, 4096 + 100 * KiB))).toBe(0);
    await image.close();
  });

  it('reused reply buffers: each reply has its own header and bytes, with and without holes', async () => {
    const bytes = pattern(1024 * KiB, 7);
    bytes.fill(0, 320 * KiB, 448 * KiB); // a hole: that read is answered with a hole chunk
    const image = await rawImage(bytes);
    const ranges: Array<[number, number]> = [
      [0, 256 * KiB],
      [256 * KiB, 256 * KiB],
      [512 * KiB, 256 * KiB],
      [128 * KiB, 200 * KiB],
      [768 * KiB, 256 * KiB],
    ];
    const [client, server] = pipe();
    const done = new Transmission(server, image, { structured: true, contexts: [] }).run().then(() => server.close());
    for (const [i, [offset, length]] of ranges.entries()) {
      await client.write(req(CMD.READ, offset, length, BigInt(i + 1)));
      const reply = (await structuredReply(client))!;
      expect(reply.cookie).toBe(BigInt(i + 1));
      expect(reply.error).toBe(0);
      expect(Buffer.compare(assemble(reply, offset, length), bytes.subarray(offset, offset + length))).toBe(0);
      if (i === 1) expect(reply.chunks.some((k) => k.type === CHUNK.OFFSET_HOLE)).toBe(true);
    }
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    await image.close();
  });

  it('a cow chain with alternating runs: each 256 KiB read holds the chain bytes across layer boundaries', async () => {
    const vfs = new MemoryVfs();
    const size = 2048 * KiB;
    const base = pattern(size, 11);
    base.fill(0, 896 * KiB, 1024 * KiB); // a hole: where the overlay leaves it visible, a hole chunk
    putSparse(vfs, '/c/base.raw', base);
    await createImage('/c/top.cow', { registry, vfs, format: 'cow', backing: '/c/base.raw' });
    const top = await openImage('/c/top.cow', { registry, vfs });
    const model = base.slice();
    let seed = 1;
    for (let pos = 0; pos < size; ) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const len = Math.min(size - pos, (1 + (seed % 32)) * 4 * KiB);
      if ((seed >> 8) % 2 === 0) {
        const data = pattern(len, pos % 97);
        await top.write(pos, data);
        model.set(data, pos);
      }
      pos += len;
    }
    await top.close();
    const image = await openImage('/c/top.cow', { registry, vfs, readOnly: true });
    const [client, server] = pipe();
    const done = new Transmission(server, image, { structured: true, contexts: [] }).run().then(() => server.close());
    let holes = 0;
    for (let offset = 0, i = 1; offset < size; offset += 256 * KiB - 1000, i++) {
      const length = Math.min(256 * KiB, size - offset);
      await client.write(req(CMD.READ, offset, length, BigInt(i)));
      const reply = (await structuredReply(client))!;
      expect(reply.error).toBe(0);
      expect(Buffer.compare(assemble(reply, offset, length), model.subarray(offset, offset + length))).toBe(0);
      holes += reply.chunks.filter((k) => k.type === CHUNK.OFFSET_HOLE).length;
    }
    expect(holes).toBeGreaterThan(0);
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    await image.close();
  });
});
