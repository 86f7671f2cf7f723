/**
 * The transmission phase (Transmission over an in-memory pipe): pipelined requests answered out
 * of order, bounded requests and bytes in flight with backpressure (the server stops reading),
 * atomic replies, hole chunks from block status that a concurrent write cannot falsify, CACHE,
 * FAST_ZERO, NO_HOLE, TRIM, FUA, multi-conn flush across connections, and the limits.
 */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  FilterStorage,
  ForwardingVfs,
  MemoryVfs,
  openImage,
  type Image,
  storageCapabilities,
  type Storage,
  type StorageCapabilities,
  type Vfs,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '@blk/cow';
import { CrashSimVfs } from '@blk/faults';
import {
  CHUNK,
  CMD,
  CMD_FLAG,
  NBD_ERR,
  TFLAG,
  Transmission,
  transmissionFlags,
  type TransmissionOptions,
  type TransmissionState,
} from '../src/index.js';
import { pipe, type End } from './pipe.js';
import { FilterVfs } from '../../core/test/fixtures/contract-doc.js';
import { assemble, req, servePipe, simpleReply, structuredReply, type Reply } from './wire.js';

const registry = new DriverRegistry([cowDriver, rawDriver]);
const MiB = 1024 * 1024;

/** A gate on storage reads/writes whose range meets [gateStart, gateEnd): they wait until `open()`. */
class Gate {
  closed = false;
  waiting = 0;
  private waiters: Array<() => void> = [];
  constructor(
    public start: number,
    public end: number,
  ) {}
  async pass(offset: number, length: number): Promise<void> {
    if (!this.closed || offset >= this.end || offset + length <= this.start) return;
    this.waiting++;
    await new Promise<void>((r) => this.waiters.push(r));
    this.waiting--;
  }
  open(): void {
    this.closed = false;
    for (const w of this.waiters.splice(0)) w();
  }
}

class GatedStorage extends FilterStorage {
  constructor(
    inner: Storage,
    private readonly gate: Gate,
  ) {
    super(inner);
  }
  override async read(offset: number, into: Uint8Array): Promise<number> {
    await this.gate.pass(offset, into.length);
    return this.next.read(offset, into);
  }
  override async write(offset: number, data: Uint8Array): Promise<void> {
    await this.gate.pass(offset, data.length);
    return this.next.write(offset, data);
  }
  // Gating changes no byte: the holes below are still holes.
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    return storageCapabilities({ ...super.filterCapabilities(below), extents: below.extents });
  }
}

/** Every storage opened through `inner` behind the gate. */
const gatedVfs = (inner: Vfs, gate: Gate) => new FilterVfs(inner, (s) => new GatedStorage(s, gate));

async function rawImage(size: number, vfs: Vfs & { put?: unknown } = new MemoryVfs(), fill?: (b: Uint8Array) => void) {
  const mem = vfs instanceof MemoryVfs ? vfs : undefined;
  if (mem) {
    const file = mem.put('/a.raw', new Uint8Array(0));
    const data = new Uint8Array(size);
    fill?.(data);
    // Only the non-zero 64 KiB chunks are stored: the rest is a hole.
    for (let o = 0; o < size; o += 64 * 1024) {
      const part = data.subarray(o, o + 64 * 1024);
      if (part.some((b) => b !== 0)) file.writeAt(o, part);
    }
    file.length = size;
  }
  return openImage('/a.raw', { registry, vfs, format: 'raw' });
}

const serve = (image: Image, state: Partial<TransmissionState> = {}, options: TransmissionOptions = {}) =>
  servePipe(image, state, options);

const flush = () => new Promise((r) => setTimeout(r, 10));

describe('pipelining', () => {
  it('reads requests while earlier ones run and answers them out of order', async () => {
    const gate = new Gate(0, 4096);
    const vfs = new MemoryVfs();
    vfs.put('/a.raw', new Uint8Array(MiB).fill(7));
    const image = await openImage('/a.raw', { registry, vfs: gatedVfs(vfs, gate), format: 'raw' });
    gate.closed = true;
    const { client, done } = serve(image);
    await client.write(req(CMD.READ, 0, 512, 1));
    await client.write(req(CMD.READ, 8192, 512, 2));
    await client.write(req(CMD.READ, 16384, 512, 3));
    const first = await structuredReply(client);
    const second = await structuredReply(client);
    expect([first!.cookie, second!.cookie].sort()).toEqual([2n, 3n]);
    expect(gate.waiting).toBe(1);
    gate.open();
    const third = await structuredReply(client);
    expect(third!.cookie).toBe(1n);
    expect(assemble(third!, 0, 512).every((b) => b === 7)).toBe(true);
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    await image.close();
  });

  it('stop(): requests in flight finish and are answered; no further request is read; run resolves', async () => {
    const gate = new Gate(0, 4096);
    const vfs = new MemoryVfs();
    vfs.put('/a.raw', new Uint8Array(MiB).fill(7));
    const image = await openImage('/a.raw', { registry, vfs: gatedVfs(vfs, gate), format: 'raw' });
    gate.closed = true;
    const { client, server, t, done } = serve(image);
    await client.write(req(CMD.READ, 0, 512, 1));
    await client.write(req(CMD.WRITE, 0, 4, 2));
    await client.write(new Uint8Array([1, 2, 3, 4]));
    await flush();
    expect(t.load.requests).toBe(2);
    t.stop();
    // Sent after stop(): never read, never run.
    await client.write(req(CMD.WRITE, 8192, 4, 3));
    await client.write(new Uint8Array([9, 9, 9, 9]));
    await flush();
    expect(server.closed).toBe(false);
    gate.open();
    const replies = [await structuredReply(client), await structuredReply(client)];
    expect(replies.map((r) => r!.cookie).sort()).toEqual([1n, 2n]);
    expect(replies.every((r) => r!.error === 0)).toBe(true);
    await done;
    expect(server.closed).toBe(true);
    expect(await structuredReply(client)).toBeNull();
    const back = new Uint8Array(4);
    await image.readInto(8192, back);
    expect([...back]).toEqual([7, 7, 7, 7]);
    await image.readInto(0, back);
    expect([...back]).toEqual([1, 2, 3, 4]);
    await image.close();
  });

  it('stop() while at the maxInFlight bound: the request waiting in the stream is not read', async () => {
    const gate = new Gate(0, 4096);
    const vfs = new MemoryVfs();
    vfs.put('/a.raw', new Uint8Array(MiB).fill(7));
    const image = await openImage('/a.raw', { registry, vfs: gatedVfs(vfs, gate), format: 'raw' });
    gate.closed = true;
    const { client, server, t, done } = serve(image, {}, { maxInFlight: 1 });
    await client.write(req(CMD.READ, 0, 512, 1));
    await client.write(req(CMD.READ, 8192, 512, 2));
    await flush();
    expect(server.unread).toBe(28);
    t.stop();
    gate.open();
    expect((await structuredReply(client))!.cookie).toBe(1n);
    await done;
    expect(await structuredReply(client)).toBeNull();
    await image.close();
  });

  it('stop() with nothing in flight ends run at once (the pending header read is dropped)', async () => {
    const image = await rawImage(MiB);
    const { client, t, done } = serve(image);
    await client.write(req(CMD.READ, 0, 512, 1));
    expect((await structuredReply(client))!.cookie).toBe(1n);
    t.stop();
    await done;
    expect(await structuredReply(client)).toBeNull();
    await image.close();
  });

  it('at most maxInFlight requests run; further ones are left unread in the stream (backpressure)', async () => {
    const gate = new Gate(0, MiB);
    const vfs = new MemoryVfs();
    vfs.put('/a.raw', new Uint8Array(MiB));
    const image = await openImage('/a.raw', { registry, vfs: gatedVfs(vfs, gate), format: 'raw' });
    gate.closed = true;
    const { client, server, t, done } = serve(image, {}, { maxInFlight: 4 });
    for (let i = 0; i < 40; i++) await client.write(req(CMD.READ, i * 4096, 4096, i));
    await flush();
    expect(t.load.requests).toBe(4);
    expect(server.unread).toBe(36 * 28);
    gate.open();
    const seen = new Set<bigint>();
    for (let i = 0; i < 40; i++) seen.add((await structuredReply(client))!.cookie);
    expect(seen.size).toBe(40);
    client.endWrites();
    await done;
    await image.close();
  });

  it('the payload bytes held in flight are bounded: write payloads past the budget stay unread', async () => {
    const gate = new Gate(0, 64 * MiB);
    const vfs = new MemoryVfs();
    vfs.put('/a.raw', new Uint8Array(0)).writeAt(64 * MiB - 1, new Uint8Array(1));
    const image = await openImage('/a.raw', { registry, vfs: gatedVfs(vfs, gate), format: 'raw' });
    gate.closed = true;
    const { client, server, t, done } = serve(image, {}, { maxBytesInFlight: 8 * MiB, maxRequest: 4 * MiB });
    const payload = new Uint8Array(4 * MiB).fill(1);
    for (let i = 0; i < 6; i++) {
      await client.write(req(CMD.WRITE, i * 4 * MiB, 4 * MiB, i));
      await client.write(payload);
    }
    await flush();
    expect(t.load.bytes).toBeLessThanOrEqual(8 * MiB);
    expect(t.load.requests).toBe(2);
    expect(server.unread).toBeGreaterThanOrEqual(3 * (4 * MiB + 28));
    gate.open();
    for (let i = 0; i < 6; i++) expect((await simpleReplyOf(client)).error).toBe(0);
    client.endWrites();
    await done;
    await image.close();
  });

  it('replies are atomic: chunks of concurrent multi-chunk replies never interleave', async () => {
    // Alternating data and holes every 64 KiB: each 1 MiB read is 16 chunks.
    const image = await rawImage(16 * MiB, new MemoryVfs(), (b) => {
      for (let o = 0; o < b.length; o += 128 * 1024) b.fill((o >> 17) + 1, o, o + 64 * 1024);
    });
    const { client, done } = serve(image, {}, { readPiece: 256 * 1024 });
    const want = await image.read(0, 16 * MiB);
    for (let i = 0; i < 16; i++) await client.write(req(CMD.READ, i * MiB, MiB, i));
    for (let i = 0; i < 16; i++) {
      const r = (await structuredReply(client))!; // throws on a foreign chunk inside a reply
      const off = Number(r.cookie) * MiB;
      expect(r.chunks.length).toBe(16);
      expect(r.chunks.filter((k) => k.type === CHUNK.OFFSET_HOLE).length).toBe(8);
      expect(Buffer.compare(assemble(r, off, MiB), want.subarray(off, off + MiB))).toBe(0);
    }
    client.endWrites();
    await done;
    await image.close();
  });
});

describe('reply buffers', () => {
  /**
   * A server end that keeps each buffer written until a later turn (as a socket does until the
   * kernel takes it), checks that nobody changed its bytes meanwhile, then passes them on and
   * calls `sent`; it records which ArrayBuffers the replies' payloads came in.
   */
  function lazyEnd(inner: End) {
    const seen = new Map<ArrayBufferLike, number>();
    let changed = 0;
    const end: End = {
      get closed() {
        return inner.closed;
      },
      get unread() {
        return inner.unread;
      },
      endWrites: () => inner.endWrites(),
      readAvailable: () => inner.readAvailable(),
      readExactly: (n) => inner.readExactly(n),
      close: () => inner.close(),
      write(data, sent) {
        if (data.length >= 64 * 1024) seen.set(data.buffer, (seen.get(data.buffer) ?? 0) + 1);
        const copy = data.slice();
        setTimeout(() => {
          if (Buffer.compare(copy, data) !== 0) changed++;
          void inner.write(data).finally(() => sent?.());
        }, 1);
        return Promise.resolve();
      },
    };
    return { end, seen, changed: () => changed };
  }

  it('large read replies reuse their buffers once the stream has sent them, never before', async () => {
    // Each 256 KiB holds its own byte: a reply carrying bytes of another read is caught.
    const image = await rawImage(16 * MiB, new MemoryVfs(), (b) => {
      for (let o = 0; o < b.length; o += 256 * 1024) b.fill(1 + ((o >> 18) % 250), o, o + 256 * 1024);
    });
    const want = await image.read(0, 16 * MiB);
    for (const structured of [true, false]) {
      const [client, server] = pipe();
      const lazy = lazyEnd(server);
      const t = new Transmission(lazy.end, image, { structured, contexts: [] });
      const done = t.run().then(() => server.close());
      // Rounds of 8 pipelined reads: later rounds find the buffers of earlier ones sent.
      for (let round = 0; round < 8; round++) {
        for (let i = 0; i < 8; i++) {
          const n = (round * 8 + i) % 64;
          await client.write(req(CMD.READ, n * 256 * 1024, 256 * 1024, n));
        }
        for (let i = 0; i < 8; i++) {
          const r = structured ? (await structuredReply(client))! : (await simpleReply(client, () => 256 * 1024))!;
          const off = Number(r.cookie) * 256 * 1024;
          const bytes = structured ? assemble(r, off, 256 * 1024) : r.payload;
          expect(Buffer.compare(bytes, want.subarray(off, off + 256 * 1024))).toBe(0);
        }
      }
      client.endWrites();
      await done;
      expect(lazy.changed()).toBe(0);
      // 64 replies in far fewer buffers: reused.
      expect(lazy.seen.size).toBeGreaterThan(0);
      expect(lazy.seen.size).toBeLessThanOrEqual(16);
    }
    await image.close();
  });
});

async function simpleReplyOf(c: End): Promise<Reply> {
  return (await simpleReply(c, () => 0))!;
}

describe('hole chunks from block status', () => {
  it("a hole chunk cannot lie about a write issued before the read (status taken under the read's tracked place)", async () => {
    // The write is held in the storage; a status taken beside the read (untracked) would still
    // see a hole there, while the read, ordered after the write, returns its data.
    const gate = new Gate(MiB, MiB + 256 * 1024);
    const vfs = new MemoryVfs();
    vfs.put('/a.raw', new Uint8Array(0)).length = 4 * MiB;
    const image = await openImage('/a.raw', { registry, vfs: gatedVfs(vfs, gate), format: 'raw' });
    const a = serve(image);
    const b = serve(image);
    gate.closed = true;
    const data = new Uint8Array(256 * 1024).fill(0x5a);
    await b.client.write(req(CMD.WRITE, MiB, data.length, 2));
    await b.client.write(data);
    await flush();
    expect(gate.waiting).toBe(1);
    await a.client.write(req(CMD.READ, MiB - 64 * 1024, 512 * 1024, 1));
    await flush();
    gate.open();
    expect((await simpleReplyOf(b.client)).error).toBe(0);
    const r = (await structuredReply(a.client))!;
    const bytes = assemble(r, MiB - 64 * 1024, 512 * 1024);
    expect(bytes.subarray(64 * 1024, 64 * 1024 + 256 * 1024).every((x) => x === 0x5a)).toBe(true);
    expect(r.chunks.map((k) => k.type)).toEqual([CHUNK.OFFSET_HOLE, CHUNK.OFFSET_DATA, CHUNK.OFFSET_HOLE]);
    a.client.endWrites();
    b.client.endWrites();
    await Promise.all([a.done, b.done]);
    await image.close();
  });

  it('a cow overlay over a raw base: unallocated zero ranges of the chain are holes, backing data is data', async () => {
    const vfs = new MemoryVfs();
    const base = vfs.put('/base.raw', new Uint8Array(0));
    base.writeAt(0, new Uint8Array(128 * 1024).fill(3));
    base.writeAt(4 * MiB - 1, new Uint8Array(1));
    const { createImage } = await import('@blk/core');
    await createImage('/top.cow', { registry, vfs, format: 'cow', backing: { path: '/base.raw', format: 'raw' } });
    const image = await openImage('/top.cow', { registry, vfs });
    await image.write(512 * 1024, new Uint8Array(64 * 1024).fill(9));
    const { client, done } = serve(image);
    await client.write(req(CMD.READ, 0, MiB, 1));
    const r = (await structuredReply(client))!;
    const kinds = r.chunks.map((k) => [k.type, Number(new DataView(k.data.buffer, k.data.byteOffset).getBigUint64(0))]);
    expect(kinds).toEqual([
      [CHUNK.OFFSET_DATA, 0],
      [CHUNK.OFFSET_HOLE, 128 * 1024],
      [CHUNK.OFFSET_DATA, 512 * 1024],
      [CHUNK.OFFSET_HOLE, 576 * 1024],
    ]);
    expect(Buffer.compare(assemble(r, 0, MiB), await image.read(0, MiB))).toBe(0);
    // DF: one data chunk, holes as zeros.
    await client.write(req(CMD.READ, 0, MiB, 2, CMD_FLAG.DF));
    const df = (await structuredReply(client))!;
    expect(df.chunks.map((k) => k.type)).toEqual([CHUNK.OFFSET_DATA]);
    expect(Buffer.compare(assemble(df, 0, MiB), await image.read(0, MiB))).toBe(0);
    client.endWrites();
    await done;
    await image.close();
  });
});

describe('commands', () => {
  it('CACHE reads the range through the image (bounded) and changes nothing; past the end is EINVAL', async () => {
    const reads: Array<[number, number]> = [];
    class Counting extends FilterStorage {
      override read(offset: number, into: Uint8Array): Promise<number> {
        reads.push([offset, into.length]);
        return this.next.read(offset, into);
      }
    }
    const vfs = new MemoryVfs();
    vfs.put('/a.raw', new Uint8Array(8 * MiB).fill(4));
    const counting = new (class extends ForwardingVfs {
      override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
        return new Counting(await this.inner.open(path, options));
      }
    })(vfs);
    const image = await openImage('/a.raw', { registry, vfs: counting, format: 'raw' });
    expect(transmissionFlags(image) & TFLAG.SEND_CACHE).toBeTruthy();
    const { client, done } = serve(image, {}, { cacheMax: 2 * MiB });
    reads.length = 0;
    await client.write(req(CMD.CACHE, MiB, 6 * MiB, 1));
    expect((await simpleReplyOf(client)).error).toBe(0);
    const bytes = reads.reduce((n, [o, l]) => n + (o >= MiB ? l : 0), 0);
    expect(bytes).toBe(2 * MiB); // bounded by cacheMax
    await client.write(req(CMD.CACHE, 8 * MiB - 512, 1024, 2));
    expect((await structuredReply(client))!.error).toBe(NBD_ERR.EINVAL);
    client.endWrites();
    await done;
    expect((await image.read(0, 8 * MiB)).every((b) => b === 4)).toBe(true);
    await image.close();
  });

  it('FAST_ZERO fails at once with ENOTSUP where zeroing needs a buffer, and changes nothing; without it zeroing works', async () => {
    // MemoryStorage has no zeroRange: raw's zeroing is emulated.
    const image = await rawImage(MiB, new MemoryVfs(), (b) => b.fill(1));
    expect(image.capabilities.writeZeroes).not.toBe('native');
    expect(transmissionFlags(image) & TFLAG.SEND_FAST_ZERO).toBeTruthy();
    const { client, done } = serve(image);
    await client.write(req(CMD.WRITE_ZEROES, 0, 64 * 1024, 1, CMD_FLAG.FAST_ZERO));
    expect((await structuredReply(client))!.error).toBe(NBD_ERR.ENOTSUP);
    expect((await image.read(0, 64 * 1024)).every((b) => b === 1)).toBe(true);
    await client.write(req(CMD.WRITE_ZEROES, 0, 64 * 1024, 2, CMD_FLAG.NO_HOLE | CMD_FLAG.FUA));
    expect((await simpleReplyOf(client)).error).toBe(0);
    expect((await image.read(0, 64 * 1024)).every((b) => b === 0)).toBe(true);
    await client.write(req(CMD.WRITE_ZEROES, MiB - 512, 1024, 3));
    expect((await structuredReply(client))!.error).toBe(NBD_ERR.ENOSPC);
    client.endWrites();
    await done;
    await image.close();
  });

  it('TRIM of a cow overlay lets the range fall through; NO_HOLE zeroing of an overlay reads zeros over backing data', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/base.raw', new Uint8Array(MiB).fill(2));
    const { createImage } = await import('@blk/core');
    await createImage('/top.cow', { registry, vfs, format: 'cow', backing: { path: '/base.raw', format: 'raw' } });
    const image = await openImage('/top.cow', { registry, vfs });
    const { client, done } = serve(image, { structured: false });
    await client.write(req(CMD.WRITE, 0, 4096, 1));
    await client.write(new Uint8Array(4096).fill(8));
    expect((await simpleReplyOf(client)).error).toBe(0);
    await client.write(req(CMD.TRIM, 0, 4096, 2, CMD_FLAG.FUA));
    expect((await simpleReplyOf(client)).error).toBe(0);
    expect((await image.read(0, 4096)).every((b) => b === 2)).toBe(true);
    await client.write(req(CMD.WRITE_ZEROES, 8192, 4096, 3));
    expect((await simpleReplyOf(client)).error).toBe(0);
    expect((await image.read(8192, 4096)).every((b) => b === 0)).toBe(true);
    client.endWrites();
    await done;
    await image.close();
  });

  it('multi-conn: a flush on one connection makes the writes acknowledged on another durable', async () => {
    for (const flushFirst of [true, false]) {
      const vfs = new CrashSimVfs();
      vfs.put('/a.raw', new Uint8Array(MiB));
      vfs.syncAll();
      const image = await openImage('/a.raw', { registry, vfs, format: 'raw' });
      expect(transmissionFlags(image) & TFLAG.CAN_MULTI_CONN).toBeTruthy();
      const a = serve(image, { structured: false });
      const b = serve(image, { structured: false });
      await a.client.write(req(CMD.WRITE, 4096, 4096, 1));
      await a.client.write(new Uint8Array(4096).fill(0x77));
      expect((await simpleReplyOf(a.client)).error).toBe(0);
      if (flushFirst) {
        await b.client.write(req(CMD.FLUSH, 0, 0, 2));
        expect((await simpleReplyOf(b.client)).error).toBe(0);
      }
      const after = vfs.crash({ mode: 'power-loss', keep: 'none' });
      const bytes = new Uint8Array(4096);
      after.file('/a.raw').readAt(4096, bytes);
      expect(bytes.every((x) => x === 0x77)).toBe(flushFirst);
      a.client.endWrites();
      b.client.endWrites();
      await Promise.all([a.done, b.done]);
      await image.close();
    }
  });
});

describe('limits and bad requests', () => {
  it('bad requests get the protocol errors and the connection stays usable', async () => {
    const image = await rawImage(MiB, new MemoryVfs(), (b) => b.fill(6));
    const { client, server, done } = serve(image, { structured: true, contexts: ['base:allocation'] });
    const cases: Array<[Uint8Array, number]> = [
      [req(99, 0, 0, 1), NBD_ERR.EINVAL], // unknown command
      [req(CMD.READ, 0, 512, 2, 0x100), NBD_ERR.EINVAL], // unknown flag
      [req(CMD.READ, 0, 512, 3, CMD_FLAG.NO_HOLE), NBD_ERR.EINVAL], // flag of another command
      [req(CMD.READ, MiB - 256, 512, 4), NBD_ERR.EINVAL], // past the end
      [req(CMD.READ, 2 ** 53, 512, 5), NBD_ERR.EINVAL], // offset beyond any export
      [req(CMD.READ, 0, 32 * MiB + 1, 6), NBD_ERR.EOVERFLOW], // over the maximum
      [req(CMD.TRIM, MiB, 512, 7), NBD_ERR.EINVAL],
      [req(CMD.BLOCK_STATUS, 0, 0, 8), NBD_ERR.EINVAL],
      [req(CMD.BLOCK_STATUS, 0, MiB + 1, 9), NBD_ERR.EINVAL],
      [req(CMD.WRITE_ZEROES, 0, 512, 10, CMD_FLAG.REQ_ONE), NBD_ERR.EINVAL],
    ];
    for (const [r, error] of cases) {
      await client.write(r);
      const reply = (await structuredReply(client))!;
      expect(reply.error).toBe(error);
    }
    // A write past the end: its payload is drained, the connection stays in step.
    await client.write(req(CMD.WRITE, MiB - 256, 512, 11));
    await client.write(new Uint8Array(512).fill(1));
    expect((await structuredReply(client))!.error).toBe(NBD_ERR.ENOSPC);
    // A write over the maximum (but within the drain bound): EOVERFLOW, drained without being kept.
    await client.write(req(CMD.WRITE, 0, 32 * MiB + 4096, 12));
    for (let i = 0; i < 32; i++) await client.write(new Uint8Array(MiB).fill(9));
    await client.write(new Uint8Array(4096).fill(9));
    expect((await structuredReply(client))!.error).toBe(NBD_ERR.EOVERFLOW);
    expect(server.unread).toBe(0);
    // Still in step: a read and a block status.
    await client.write(req(CMD.READ, 0, 512, 13));
    expect(assemble((await structuredReply(client))!, 0, 512).every((b) => b === 6)).toBe(true);
    await client.write(req(CMD.BLOCK_STATUS, 0, MiB, 14));
    const bs = (await structuredReply(client))!;
    expect(bs.chunks.map((k) => k.type)).toEqual([CHUNK.BLOCK_STATUS]);
    // A write far beyond the maximum is not drained: the connection is dropped.
    await client.write(req(CMD.WRITE, 0, 0xffffffff, 15));
    expect(await structuredReply(client)).toBeNull();
    client.endWrites();
    await done;
    expect((await image.read(0, MiB)).every((b) => b === 6)).toBe(true);
    await image.close();
  });
});
