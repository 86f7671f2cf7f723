/**
 * The small-read fast path (src/small-reads.ts): READ requests decoded straight from a received
 * chunk, read at once where the image can (`Image.readIntoNow`), answered from reused buffers.
 * Each case runs over a stream that shows its received bytes (the fast path) and, where the answer
 * must be the same, over one that does not (the general path): replies, their order constraints
 * and the bounds must not depend on which path took a request.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  DriverRegistry,
  FilterStorage,
  type Image,
  MemoryVfs,
  openImage,
  type Storage,
  type StorageCapabilities,
  storageCapabilities,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import {
  CHUNK,
  CHUNK_FLAG_DONE,
  CMD,
  CMD_FLAG,
  concat,
  NBD_ERR,
  Transmission,
  type TransmissionOptions,
} from '../src/index.js';
import { SocketStream } from '../src/node.js';
import { type End, pipe } from './pipe.js';
import { FilterVfs } from '../../core/test/fixtures/contract-doc.js';
import { assemble, type Reply, req, servePipe, simpleReply, structuredReply } from './wire.js';

const registry = new DriverRegistry([rawDriver]);
const KiB = 1024;
const MiB = 1024 * KiB;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-nbd-small-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Holds storage calls until `open()`. */
class Gate {
  closed = true;
  waiting = 0;
  private waiters: Array<() => void> = [];
  async pass(): Promise<void> {
    if (!this.closed) return;
    this.waiting++;
    await new Promise<void>((r) => this.waiters.push(r));
    this.waiting--;
  }
  open(): void {
    this.closed = false;
    for (const w of this.waiters.splice(0)) w();
  }
}

interface Knobs {
  /** Writes wait for it (a write in flight while later requests arrive). */
  writeGate?: Gate;
  /** Reads through `read` (the asynchronous ones) wait for it. */
  readGate?: Gate;
  /** false: no synchronous read at all (every read of the image waits for a promise). */
  sync?: boolean;
  /** The storage's `limits.syncReadMax`. */
  syncReadMax?: number;
  /** Reads meeting [start, end) fail with EIO. */
  failing?: [number, number];
}

class KnobStorage extends FilterStorage {
  constructor(
    inner: Storage,
    private readonly knobs: Knobs,
  ) {
    super(inner);
  }
  private check(offset: number, length: number): void {
    const f = this.knobs.failing;
    if (f && offset < f[1] && f[0] < offset + length) {
      throw Object.assign(new Error(`EIO: test failure at ${offset}`), { code: 'EIO' });
    }
  }
  override async read(offset: number, into: Uint8Array): Promise<number> {
    this.check(offset, into.length);
    await this.knobs.readGate?.pass();
    return this.next.read(offset, into);
  }
  override readSync(offset: number, into: Uint8Array): number {
    this.check(offset, into.length);
    return this.next.readSync!(offset, into);
  }
  override async write(offset: number, data: Uint8Array): Promise<void> {
    await this.knobs.writeGate?.pass();
    return this.next.write(offset, data);
  }
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    const caps = super.filterCapabilities(below);
    const limits =
      this.knobs.syncReadMax === undefined ? caps.limits : { ...caps.limits, syncReadMax: this.knobs.syncReadMax };
    return storageCapabilities({ ...caps, syncRead: caps.syncRead && this.knobs.sync !== false, limits });
  }
}

/** Byte i of the test image: a pattern that tells offsets apart (a reply from the wrong place shows). */
const pattern = (i: number) => (i * 7 + (i >> 9) * 13) & 0xff;

async function image(size = MiB, knobs: Knobs = {}): Promise<{ image: Image; want: Uint8Array }> {
  const vfs = new MemoryVfs();
  const want = new Uint8Array(size);
  for (let i = 0; i < size; i++) want[i] = pattern(i);
  vfs.put('/a.raw', want.slice());
  return {
    image: await openImage('/a.raw', {
      registry,
      vfs: new FilterVfs(vfs, (s) => new KnobStorage(s, knobs)),
      format: 'raw',
    }),
    want,
  };
}

const serve = (img: Image, peek: boolean, structured: boolean, options: TransmissionOptions = {}) =>
  servePipe(img, { structured }, options, { peek });

/** Replies until `n` arrived; `lengthOf` gives a successful simple read reply's payload length. */
async function replies(c: End, structured: boolean, n: number, lengthOf: (cookie: bigint) => number) {
  const out = new Map<bigint, Reply>();
  const order: bigint[] = [];
  for (let i = 0; i < n; i++) {
    const r = structured ? await structuredReply(c) : await simpleReply(c, lengthOf);
    expect(r).not.toBeNull();
    out.set(r!.cookie, r!);
    order.push(r!.cookie);
  }
  return { out, order };
}

/** The bytes a successful read reply carries. */
function bytesOf(r: Reply, structured: boolean, offset: number, length: number): Uint8Array {
  expect(r.error).toBe(0);
  return structured ? assemble(r, offset, length) : r.payload!;
}

const settle = () => new Promise((r) => setTimeout(r, 10));
const MODES = [
  { peek: true, structured: true, label: 'fast path, structured replies' },
  { peek: true, structured: false, label: 'fast path, simple replies' },
  { peek: false, structured: true, label: 'general path, structured replies' },
  { peek: false, structured: false, label: 'general path, simple replies' },
];

describe('small reads in one chunk', () => {
  it.each(MODES)('reads after a write in flight to their range wait for it; others do not ($label)', async (m) => {
    const writeGate = new Gate();
    const { image: img, want } = await image(MiB, { writeGate });
    const spy = vi.spyOn(img, 'readIntoNow');
    const { client, done } = serve(img, m.peek, m.structured);
    const two = new Uint8Array(4 * KiB).fill(2);
    const three = new Uint8Array(4 * KiB).fill(3);
    // One chunk: reads before, between and after two writes, overlapping them in part or not at all.
    await client.write(
      concat([
        req(CMD.READ, 0, 4 * KiB, 1),
        req(CMD.WRITE, 0, 4 * KiB, 2),
        two,
        req(CMD.READ, 0, 4 * KiB, 3),
        req(CMD.READ, 2 * KiB, 4 * KiB, 4),
        req(CMD.READ, 64 * KiB, 4 * KiB, 5),
        req(CMD.WRITE, 4 * KiB, 4 * KiB, 6),
        three,
        req(CMD.READ, 0, 8 * KiB, 7),
        req(CMD.READ, 512 * KiB, 512, 8, m.structured ? CMD_FLAG.DF : CMD_FLAG.FUA),
      ]),
    );
    const lengths = new Map<bigint, number>([
      [1n, 4 * KiB],
      [3n, 4 * KiB],
      [4n, 4 * KiB],
      [5n, 4 * KiB],
      [7n, 8 * KiB],
      [8n, 512],
    ]);
    const lengthOf = (c: bigint) => lengths.get(c) ?? 0;
    // The writes wait at the gate: the reads that meet neither of them are answered meanwhile.
    const early = await replies(client, m.structured, 3, lengthOf);
    expect(early.order.sort()).toEqual([1n, 5n, 8n]);
    expect(bytesOf(early.out.get(1n)!, m.structured, 0, 4 * KiB)).toEqual(want.subarray(0, 4 * KiB));
    expect(bytesOf(early.out.get(5n)!, m.structured, 64 * KiB, 4 * KiB)).toEqual(want.subarray(64 * KiB, 68 * KiB));
    expect(bytesOf(early.out.get(8n)!, m.structured, 512 * KiB, 512)).toEqual(
      want.subarray(512 * KiB, 512 * KiB + 512),
    );
    await settle();
    expect(writeGate.waiting).toBeGreaterThan(0);
    writeGate.open();
    const late = await replies(client, m.structured, 5, lengthOf);
    expect(late.order.sort()).toEqual([2n, 3n, 4n, 6n, 7n]);
    expect(late.out.get(2n)!.error).toBe(0);
    expect(late.out.get(6n)!.error).toBe(0);
    expect(bytesOf(late.out.get(3n)!, m.structured, 0, 4 * KiB)).toEqual(two);
    expect(bytesOf(late.out.get(4n)!, m.structured, 2 * KiB, 4 * KiB)).toEqual(
      // Written before it: the first half; the write to the second half came after it in the chunk.
      concat([two.subarray(0, 2 * KiB), want.subarray(4 * KiB, 6 * KiB)]),
    );
    expect(bytesOf(late.out.get(7n)!, m.structured, 0, 8 * KiB)).toEqual(concat([two, three]));
    // The fast path took every read (the general path none): a change that sends them elsewhere shows.
    expect(spy).toHaveBeenCalledTimes(m.peek ? 6 : 0);
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    await img.close();
  });

  it.each(MODES)('reply headers: magic, DONE, OFFSET_DATA, offset, a 64-bit cookie echoed ($label)', async (m) => {
    const { image: img, want } = await image(8 * MiB);
    const { client, done } = serve(img, m.peek, m.structured);
    const cookies = [0xfedcba9876543210n, 0n, 0xffffffffffffffffn, 0x0000000100000000n];
    const offsets = [0, 5 * MiB + 3, 8 * MiB - 4 * KiB, 7];
    const lengths = [4 * KiB, 1, 4 * KiB, 16 * KiB];
    await client.write(concat(cookies.map((c, i) => req(CMD.READ, offsets[i]!, lengths[i]!, c))));
    const got = await replies(client, m.structured, 4, (c) => lengths[cookies.indexOf(c)]!);
    for (let i = 0; i < 4; i++) {
      const r = got.out.get(cookies[i]!)!;
      if (m.structured) {
        expect(r.chunks.length).toBe(1);
        expect(r.chunks[0]!.type).toBe(CHUNK.OFFSET_DATA);
        expect(r.chunks[0]!.flags).toBe(CHUNK_FLAG_DONE);
        expect(r.chunks[0]!.data.length).toBe(8 + lengths[i]!);
      }
      expect(bytesOf(r, m.structured, offsets[i]!, lengths[i]!)).toEqual(
        want.subarray(offsets[i]!, offsets[i]! + lengths[i]!),
      );
    }
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    await img.close();
  });
});

describe('what the fast path declines goes the general way, in order', () => {
  it.each(MODES)(
    'a write payload arriving in later chunks is payload, even when it looks like READ requests ($label)',
    async (m) => {
      const { image: img } = await image(MiB);
      const { client, done } = serve(img, m.peek, m.structured);
      // The payload: two well-formed READ headers (cookies 100, 101), sent in two chunks after the header.
      const payload = concat([req(CMD.READ, 0, 512, 100), req(CMD.READ, 4 * KiB, 512, 101)]);
      await client.write(req(CMD.WRITE, 128 * KiB, payload.length, 1));
      await settle();
      await client.write(payload.subarray(0, 28));
      await settle();
      await client.write(payload.subarray(28));
      await client.write(req(CMD.READ, 128 * KiB, payload.length, 2));
      const got = await replies(client, m.structured, 2, (c) => (c === 2n ? payload.length : 0));
      expect(got.order.sort()).toEqual([1n, 2n]);
      expect(got.out.get(1n)!.error).toBe(0);
      expect(bytesOf(got.out.get(2n)!, m.structured, 128 * KiB, payload.length)).toEqual(payload);
      await client.write(req(CMD.DISC, 0, 0));
      await done;
      await img.close();
    },
  );

  it.each(MODES)('lengths and flags at the edges; errors in the middle of a batch ($label)', async (m) => {
    const size = 2 * MiB;
    const { image: img, want } = await image(size, { failing: [MiB, MiB + 512] });
    const spy = vi.spyOn(img, 'readIntoNow');
    const { client, done } = serve(img, m.peek, m.structured, { sparseReadMin: 8 * KiB });
    // [offset, length, flags, error (0: data)]
    const cases: Array<[number, number, number, number]> = [
      [0, 16 * KiB, m.structured ? CMD_FLAG.DF : 0, 0], // the longest small read (structured: DF, else sparse)
      [4 * KiB, 16 * KiB + 1, 0, 0], // one byte more: the general path
      [3, 8 * KiB, 0, 0], // structured: at sparseReadMin without DF, the sparse path
      [size - 4 * KiB, 4 * KiB, 0, 0], // ends at the end
      [size - 4 * KiB, 4 * KiB + 1, 0, NBD_ERR.EINVAL], // one byte past it
      [2 ** 32 + 512, 512, 0, NBD_ERR.EINVAL], // a high offset word
      [2 ** 53, 512, 0, NBD_ERR.EINVAL], // beyond any safe integer
      [MiB - 512, 1024, 0, NBD_ERR.EIO], // meets the failing range
      [0, 512, CMD_FLAG.NO_HOLE, NBD_ERR.EINVAL], // a flag of another command
      [0, 512, CMD_FLAG.DF, m.structured ? 0 : NBD_ERR.EINVAL], // DF needs structured replies
      [0, 0, 0, 0], // empty
      [9 * KiB, 512, 0, 0], // after all that, still in step
    ];
    await client.write(concat(cases.map(([o, l, f], i) => req(CMD.READ, o, l, i + 1, f))));
    const got = await replies(client, m.structured, cases.length, (c) => {
      const k = cases[Number(c) - 1]!;
      return k[3] === 0 ? k[1] : 0;
    });
    for (const [i, [o, l, , error]] of cases.entries()) {
      const r = got.out.get(BigInt(i + 1))!;
      expect(r.error, `case ${i + 1}`).toBe(error);
      if (error === 0) expect(bytesOf(r, m.structured, o, l), `case ${i + 1}`).toEqual(want.subarray(o, o + l));
      if (error === NBD_ERR.EIO && m.structured) {
        const e = r.chunks[0]!;
        expect(e.type).toBe(CHUNK.ERROR);
        expect(new TextDecoder().decode(e.data.subarray(6))).toMatch(/EIO/);
      }
    }
    // Which ones the fast path took: the 16 KiB one, the 8 KiB one (simple replies: no sparse path),
    // the one ending at the end, the failing one (its error comes from the image), DF (structured
    // replies only), and the last.
    expect(spy).toHaveBeenCalledTimes(m.peek ? 5 : 0);
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    await img.close();
  });

  it('a read past syncReadMax waits for its promise; the reads after it are answered meanwhile', async () => {
    const readGate = new Gate();
    const { image: img, want } = await image(MiB, { readGate, syncReadMax: 4 * KiB });
    for (const structured of [true, false]) {
      readGate.closed = true;
      const { client, done } = serve(img, true, structured);
      await client.write(
        concat([req(CMD.READ, 0, 8 * KiB, 1), req(CMD.READ, 64 * KiB, 4 * KiB, 2), req(CMD.READ, 4 * KiB, 512, 3)]),
      );
      const lengthOf = (c: bigint) => (c === 1n ? 8 * KiB : c === 2n ? 4 * KiB : 512);
      const early = await replies(client, structured, 2, lengthOf);
      expect(early.order.sort()).toEqual([2n, 3n]);
      expect(readGate.waiting).toBe(1);
      readGate.open();
      const late = await replies(client, structured, 1, lengthOf);
      expect(bytesOf(late.out.get(1n)!, structured, 0, 8 * KiB)).toEqual(want.subarray(0, 8 * KiB));
      await client.write(req(CMD.DISC, 0, 0));
      await done;
    }
    await img.close();
  });
});

describe('bounds of the fast path', () => {
  it('one chunk of 12 reads with maxInFlight 4: 4 run, the rest stay unread in the stream', async () => {
    const readGate = new Gate();
    const { image: img, want } = await image(MiB, { readGate, sync: false });
    const { client, server, t, done } = serve(img, true, true, { maxInFlight: 4 });
    await client.write(concat(Array.from({ length: 12 }, (_, i) => req(CMD.READ, i * 4 * KiB, 4 * KiB, i + 1))));
    await settle();
    expect(t.load.requests).toBe(4);
    expect(server.unread).toBe(8 * 28);
    readGate.open();
    const got = await replies(client, true, 12, () => 0);
    for (let i = 0; i < 12; i++) {
      expect(bytesOf(got.out.get(BigInt(i + 1))!, true, i * 4 * KiB, 4 * KiB)).toEqual(
        want.subarray(i * 4 * KiB, (i + 1) * 4 * KiB),
      );
    }
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    await img.close();
  });

  it('the byte budget: reads past maxBytesInFlight wait (unread) until replies free it', async () => {
    const readGate = new Gate();
    const { image: img } = await image(MiB, { readGate, sync: false });
    const { client, server, t, done } = serve(img, true, true, {
      maxRequest: 16 * KiB,
      maxBytesInFlight: 16 * KiB,
    });
    await client.write(concat(Array.from({ length: 5 }, (_, i) => req(CMD.READ, i * 8 * KiB, 8 * KiB, i + 1))));
    await settle();
    expect(t.load).toEqual({ requests: 2, bytes: 16 * KiB });
    // The third header is read (by the general path, which then waits for room); the rest are not.
    expect(server.unread).toBe(2 * 28);
    readGate.open();
    const got = await replies(client, true, 5, () => 0);
    expect([...got.out.values()].every((r) => r.error === 0)).toBe(true);
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    await img.close();
  });

  it('a client that closes right after a batch: the reads in flight finish, run resolves, nothing throws', async () => {
    const readGate = new Gate();
    const { image: img } = await image(MiB, { readGate, syncReadMax: 512 });
    const { client, t, done } = serve(img, true, true);
    // Synchronous 512-byte reads and gated 4 KiB ones, then the client is gone.
    await client.write(
      concat(Array.from({ length: 16 }, (_, i) => req(CMD.READ, i * 4 * KiB, i % 2 ? 512 : 4 * KiB, i + 1))),
    );
    client.close();
    await settle();
    expect(t.load.requests).toBe(8);
    readGate.open();
    await done;
    expect(t.load).toEqual({ requests: 0, bytes: 0 });
    await img.close();
  });
});

describe('reply buffers of small reads', () => {
  it('are reused once the stream has sent them, never before', async () => {
    const { image: img, want } = await image(MiB);
    const [client, server] = pipe();
    const seen = new Set<ArrayBufferLike>();
    let changed = 0;
    // A server end that keeps each reply until a later turn (as a socket may), checks that its bytes
    // did not change meanwhile, then passes it on and calls `sent`.
    const lazy: End = {
      ...server,
      peek: server.peek,
      skip: server.skip,
      onArrival: server.onArrival,
      readExactly: (n) => server.readExactly(n),
      close: () => server.close(),
      write(data, sent) {
        seen.add(data.buffer);
        const copy = data.slice();
        setTimeout(() => {
          if (Buffer.compare(copy, data) !== 0) changed++;
          void server.write(data).finally(() => sent?.());
        }, 1);
        return Promise.resolve();
      },
    };
    const t = new Transmission(lazy, img, { structured: true, contexts: [] });
    const done = t.run().then(() => server.close());
    for (let round = 0; round < 10; round++) {
      const at = (i: number) => ((round * 8 + i) % 200) * 4 * KiB;
      await client.write(concat(Array.from({ length: 8 }, (_, i) => req(CMD.READ, at(i), 4 * KiB, i))));
      const got = await replies(client, true, 8, () => 0);
      for (let i = 0; i < 8; i++) {
        expect(bytesOf(got.out.get(BigInt(i))!, true, at(i), 4 * KiB)).toEqual(want.subarray(at(i), at(i) + 4 * KiB));
      }
    }
    await client.write(req(CMD.DISC, 0, 0));
    await done;
    expect(changed).toBe(0);
    // 80 replies in far fewer buffers.
    expect(seen.size).toBeLessThanOrEqual(24);
    await img.close();
  });
});

describe('over a socket', () => {
  it('SocketStream corks the writes its arrival listener makes: the replies of one chunk leave together', async () => {
    const events: string[] = [];
    const socket = Object.assign(new EventEmitter(), {
      corked: 0,
      setNoDelay() {},
      isPaused: () => false,
      pause() {},
      resume() {},
      cork() {
        this.corked++;
      },
      uncork() {
        this.corked--;
        if (this.corked === 0) events.push('flush');
      },
      write(_b: Uint8Array, cb?: (e?: Error) => void) {
        events.push(this.corked > 0 ? 'write corked' : 'write');
        cb?.();
        return true;
      },
      destroyed: false,
    });
    const stream = new SocketStream(socket as unknown as net.Socket);
    stream.onArrival((ended) => {
      if (ended) return;
      void stream.write(new Uint8Array(4));
      void stream.write(new Uint8Array(4));
      stream.skip(stream.peek()!.length);
    });
    socket.emit('data', Buffer.alloc(28));
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual(['write corked', 'write corked', 'flush']);
  });

  it('pipelined reads over a Unix socket, one write of many requests, then a client that vanishes mid-batch', async () => {
    const file = path.join(dir, 'a.raw');
    const want = new Uint8Array(MiB);
    for (let i = 0; i < MiB; i++) want[i] = pattern(i);
    fs.writeFileSync(file, want);
    const img = await openImage(file, { registry, format: 'raw', readOnly: true });
    const finished: Array<Promise<unknown>> = [];
    const server = net.createServer((socket) => {
      const stream = new SocketStream(socket);
      finished.push(
        new Transmission(stream, img, { structured: false, contexts: [] }).run().then((e) => {
          stream.close();
          return e;
        }),
      );
    });
    const sock = path.join(dir, 's.sock');
    await new Promise<void>((r) => server.listen(sock, r));
    const connect = async () => {
      const s = net.connect(sock);
      await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
      return { socket: s, stream: new SocketStream(s) };
    };
    // 64 reads in one write: every reply right.
    const a = await connect();
    const at = (i: number) => ((i * 37) % 256) * 4 * KiB;
    await a.stream.write(concat(Array.from({ length: 64 }, (_, i) => req(CMD.READ, at(i), 4 * KiB, i))));
    for (let n = 0; n < 64; n++) {
      const r = (await simpleReply(a.stream, () => 4 * KiB))!;
      const i = Number(r.cookie);
      expect(r.error).toBe(0);
      expect(Buffer.compare(r.payload!, want.subarray(at(i), at(i) + 4 * KiB))).toBe(0);
    }
    a.socket.end();
    // 256 reads and half a header, then the client is gone before reading a reply.
    const b = await connect();
    await b.stream.write(
      concat([
        ...Array.from({ length: 256 }, (_, i) => req(CMD.READ, at(i), 4 * KiB, i)),
        req(CMD.READ, 0, 512).subarray(0, 10),
      ]),
    );
    b.socket.destroy();
    const outcomes = await Promise.all(finished);
    expect(outcomes.length).toBe(2);
    await new Promise<void>((r) => server.close(() => r()));
    await img.close();
  });
});
