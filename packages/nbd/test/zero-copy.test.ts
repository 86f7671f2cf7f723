/**
 * Zero-copy READ replies (sendfile from @blk/native's worker thread, src/zero-copy-node.ts) over
 * real sockets and files: the bytes on the wire equal the buffered path's byte for byte (simple and
 * structured replies, hole chunks, DF, unaligned and tail reads, small replies queued behind a
 * job); a read holds its range until its file bytes are sent, so a write issued after it (same or
 * other connection) never shows in it; a client that disconnects mid-sendfile or stops reading
 * does not wedge or crash the server.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage, hostSocketSender, openImage, type Image } from '@blk/images';
import {
  CMD,
  CMD_FLAG,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  Transmission,
  type TransmissionOptions,
} from '../src/index.js';
import { type SocketSender, SocketStream } from '../src/node.js';
import { req } from './wire.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-nbd-zc-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const native = hostSocketSender();
const describeNative = native === undefined ? describe.skip : describe;

/** The native sender, counting its jobs and optionally delaying each one's start by `delayMs`. */
function countingSender(delayMs = 0): SocketSender & { jobs: number } {
  const s = {
    jobs: 0,
    sendv(fd: number, data: Uint8Array, plan: Float64Array, done: (errno: number, sent: number) => void) {
      s.jobs++;
      if (delayMs === 0) return native!.sendv(fd, data, plan, done);
      let cancel: (() => void) | undefined;
      let cancelled = false;
      setTimeout(() => {
        if (cancelled) done(125 /* ECANCELED */, 0);
        else cancel = native!.sendv(fd, data, plan, done);
      }, delayMs);
      return () => {
        cancelled = true;
        cancel?.();
      };
    },
  };
  return s;
}

/** Transmission straight over sockets (no handshake), with `sender` or without (the buffered path). */
async function listen(image: Image, structured: boolean, sender?: SocketSender, options: TransmissionOptions = {}) {
  const finished: Promise<unknown>[] = [];
  const transmissions: Transmission[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    const stream = new SocketStream(socket, sender);
    const t = new Transmission(stream, image, { structured, contexts: [] }, options);
    transmissions.push(t);
    finished.push(t.run().then(() => stream.close()));
  });
  const sock = path.join(dir, `s${Math.random().toString(36).slice(2)}.sock`);
  await new Promise<void>((r) => server.listen(sock, r));
  const connect = async () => {
    const s = net.connect(sock);
    await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
    return s;
  };
  const close = async () => {
    await Promise.all(finished);
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { connect, close, transmissions };
}

/** Sends `requests` and DISC, and returns everything the server sent until it closed. */
async function session(socket: net.Socket, requests: Uint8Array[]): Promise<Buffer> {
  const got: Buffer[] = [];
  socket.on('data', (b) => got.push(b));
  const ended = new Promise<void>((r) => socket.once('close', () => r()));
  socket.write(Buffer.concat([...requests, req(CMD.DISC, 0, 0, 999)]));
  await ended;
  return Buffer.concat(got);
}

/**
 * The replies in `wire`, by cookie (each reply's bytes in order: replies of one connection may
 * finish in another order on the two paths, each reply's bytes may not differ). `readLength`: a
 * simple reply's payload length.
 */
function repliesByCookie(wire: Buffer, readLength: (cookie: bigint) => number): Map<bigint, Buffer> {
  const out = new Map<bigint, Buffer[]>();
  for (let p = 0; p < wire.length; ) {
    const magic = wire.readUInt32BE(p);
    let n: number;
    let cookie: bigint;
    if (magic === SIMPLE_REPLY_MAGIC) {
      cookie = wire.readBigUInt64BE(p + 8);
      n = 16 + (wire.readUInt32BE(p + 4) === 0 ? readLength(cookie) : 0);
    } else if (magic === STRUCTURED_REPLY_MAGIC) {
      cookie = wire.readBigUInt64BE(p + 8);
      n = 20 + wire.readUInt32BE(p + 16);
    } else throw new Error(`bad magic at ${p}`);
    if (!out.has(cookie)) out.set(cookie, []);
    out.get(cookie)!.push(wire.subarray(p, p + n));
    p += n;
  }
  return new Map([...out].map(([k, v]) => [k, Buffer.concat(v)]));
}

/**
 * A sparse raw file of 8 MiB + 1000 bytes (a partial last sector: the image reads it padded):
 * random data, a 1 MiB hole, a 4 KiB hole, and data that is written zeros.
 */
function sparseFile(name: string): string {
  const p = path.join(dir, name);
  const fd = fs.openSync(p, 'w');
  let seed = 7;
  const rnd = (n: number) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      b[i] = seed >>> 24;
    }
    return b;
  };
  fs.writeSync(fd, rnd(2 * MiB), 0, 2 * MiB, 0);
  // [2 MiB, 3 MiB) hole
  fs.writeSync(fd, rnd(MiB), 0, MiB, 3 * MiB);
  // [4 MiB, 4 MiB + 4 KiB) hole
  fs.writeSync(fd, rnd(MiB - 4 * KiB), 0, MiB - 4 * KiB, 4 * MiB + 4 * KiB);
  fs.writeSync(fd, Buffer.alloc(MiB), 0, MiB, 5 * MiB); // written zeros: data
  fs.writeSync(fd, rnd(2 * MiB + 1000), 0, 2 * MiB + 1000, 6 * MiB);
  fs.closeSync(fd);
  return p;
}

/** Reads over every kind of range: holes long and short at the edges, unaligned, the padded tail. */
function readRequests(size: number): Array<{ offset: number; length: number; flags: number }> {
  const r: Array<{ offset: number; length: number; flags: number }> = [];
  const add = (offset: number, length: number, flags = 0) => {
    if (offset + length <= size) r.push({ offset, length, flags });
  };
  add(0, 64 * KiB);
  add(0, 4 * MiB);
  add(0, 4 * MiB, CMD_FLAG.DF);
  add(2 * MiB - 1000, 200 * KiB); // data then a long hole
  add(3 * MiB - 1000, 100 * KiB); // a 1000-byte zero run (sent as data) then data
  add(4 * MiB - 3 * KiB, 64 * KiB); // data, the 4 KiB hole, data
  add(5 * MiB - 7, 2 * MiB + 13); // unaligned, across written zeros
  add(size - 300 * KiB, 300 * KiB); // the tail: past the file's end reads as zeros
  add(12345, 4 * KiB); // small: the buffered fast path, in between
  add(1 * MiB + 3, 128 * KiB + 5);
  add(2 * MiB, MiB); // all hole
  return r;
}

describeNative('zero-copy replies equal the buffered ones byte for byte', () => {
  for (const structured of [true, false]) {
    it(`${structured ? 'structured' : 'simple'} replies, pipelined, both paths`, async () => {
      const file = sparseFile(`diff-${structured}.raw`);
      const image = await openImage(file, { format: 'raw', readOnly: true });
      const reads = readRequests(image.size);
      const requests = reads.map((r, i) => req(CMD.READ, r.offset, r.length, i + 1, r.flags));
      const lengthOf = (cookie: bigint) => reads[Number(cookie) - 1]?.length ?? 0;
      const sender = countingSender();
      const wires: Buffer[] = [];
      for (const s of [undefined, sender]) {
        const srv = await listen(image, structured, s);
        // Twice: the second round goes while jobs of the first may still run.
        wires.push(await session(await srv.connect(), [...requests, ...requests]));
        await srv.close();
      }
      const [plain, zero] = wires.map((w) => repliesByCookie(w!, lengthOf));
      expect(sender.jobs).toBeGreaterThan(0);
      expect(zero!.size).toBe(reads.length);
      for (const [cookie, bytes] of plain!) expect(zero!.get(cookie)?.equals(bytes), `reply ${cookie}`).toBe(true);
      expect(wires[1]!.length).toBe(wires[0]!.length);
      await image.close();
    });
  }

  it('a cow chain over a sparse raw base (runs alternating between the layers and holes)', async () => {
    const base = path.join(dir, 'chain-base.raw');
    fs.copyFileSync(sparseFile('chain-src.raw'), base);
    fs.truncateSync(base, 8 * MiB);
    const top = path.join(dir, 'chain-top.cow');
    await createImage(top, { format: 'cow', backing: { path: base, format: 'raw' } });
    const writable = await openImage(top);
    for (let i = 0; i < 40; i++) await writable.write(i * 200 * KiB + 4 * KiB, Buffer.alloc(16 * KiB, i + 1));
    await writable.write(2 * MiB + 512 * KiB, Buffer.alloc(64 * KiB, 0xee)); // inside the base's hole
    await writable.close();
    const image = await openImage(top, { readOnly: true });
    const reads = readRequests(image.size);
    const requests = reads.map((r, i) => req(CMD.READ, r.offset, r.length, i + 1, r.flags));
    const sender = countingSender();
    const wires: Buffer[] = [];
    for (const s of [undefined, sender]) {
      const srv = await listen(image, true, s);
      wires.push(await session(await srv.connect(), requests));
      await srv.close();
    }
    const [plain, zero] = wires.map((w) => repliesByCookie(w!, () => 0));
    expect(sender.jobs).toBeGreaterThan(0);
    for (const [cookie, bytes] of plain!) expect(zero!.get(cookie)?.equals(bytes), `reply ${cookie}`).toBe(true);
    await image.close();
  });

  it('small reads too (zeroCopyMin 1), each reply equal, the file bytes right', async () => {
    const file = sparseFile('small.raw');
    const bytes = fs.readFileSync(file);
    const image = await openImage(file, { format: 'raw', readOnly: true });
    const reads: Array<[number, number]> = [];
    for (let i = 0; i < 200; i++) reads.push([(i * 40_961) % (8 * MiB), 1 + ((i * 7919) % (20 * KiB))]);
    const requests = reads.map(([o, n], i) => req(CMD.READ, o, n, i + 1, CMD_FLAG.DF));
    const wires: Buffer[] = [];
    const sender = countingSender();
    for (const s of [undefined, sender]) {
      const srv = await listen(image, true, s, { zeroCopyMin: 1 });
      wires.push(await session(await srv.connect(), requests));
      await srv.close();
    }
    const [plain, zero] = wires.map((w) => repliesByCookie(w!, () => 0));
    expect(sender.jobs).toBeGreaterThan(0);
    for (const [cookie, b] of plain!) {
      expect(zero!.get(cookie)?.equals(b), `reply ${cookie}`).toBe(true);
      const [o, n] = reads[Number(cookie) - 1]!;
      expect(b.subarray(28).equals(bytes.subarray(o, o + n))).toBe(true);
    }
    await image.close();
  });
});

/** A writable raw image of `size` bytes of `fill`. */
async function writableImage(name: string, size: number, fill: number): Promise<Image> {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(size, fill));
  return openImage(p, { format: 'raw' });
}

/** Reads `n` bytes from a socket (resolves with them), as they come. */
function reader(socket: net.Socket) {
  let buf = Buffer.alloc(0);
  let want: { n: number; resolve: (b: Buffer) => void } | undefined;
  const check = () => {
    if (want && buf.length >= want.n) {
      const out = buf.subarray(0, want.n);
      buf = buf.subarray(want.n);
      const w = want;
      want = undefined;
      w.resolve(out);
    }
  };
  socket.on('data', (b) => {
    buf = Buffer.concat([buf, b]);
    check();
  });
  return (n: number) =>
    new Promise<Buffer>((resolve) => {
      want = { n, resolve };
      check();
    });
}

describeNative('reads and later writes of the same range', () => {
  it('one connection: a read queued behind a slow job never carries a write issued after it', async () => {
    const image = await writableImage('raw-rw.raw', 4 * MiB, 0xaa);
    // Each job starts 100 ms late: without the read's hold on its range, the write would land first.
    const srv = await listen(image, false, countingSender(100));
    const socket = await srv.connect();
    const read = reader(socket);
    const len = 2 * MiB;
    socket.write(
      Buffer.concat([
        req(CMD.READ, MiB, len, 1),
        req(CMD.WRITE, MiB, len, 2),
        Buffer.alloc(len, 0x55),
        req(CMD.READ, MiB, len, 3),
      ]),
    );
    const replies = new Map<bigint, Buffer>();
    for (let i = 0; i < 3; i++) {
      const h = await read(16);
      const cookie = h.readBigUInt64BE(8);
      expect(h.readUInt32BE(4)).toBe(0);
      replies.set(cookie, cookie === 2n ? Buffer.alloc(0) : await read(len));
      // The write is acknowledged only after the first read was answered.
      if (cookie === 2n) expect(replies.has(1n)).toBe(true);
    }
    expect(replies.get(1n)!.equals(Buffer.alloc(len, 0xaa))).toBe(true);
    expect(replies.get(3n)!.equals(Buffer.alloc(len, 0x55))).toBe(true);
    socket.end(req(CMD.DISC, 0, 0, 9));
    await srv.close();
    await image.close();
  });

  it('two connections: a write on another connection issued after the read waits for its bytes to be sent', async () => {
    const image = await writableImage('raw-rw2.raw', 4 * MiB, 0x11);
    const slow = await listen(image, false, countingSender(150));
    const fast = await listen(image, false);
    const a = await slow.connect();
    const b = await fast.connect();
    const readA = reader(a);
    const readB = reader(b);
    const len = 3 * MiB;
    a.write(req(CMD.READ, 0, len, 1));
    // The read is issued (its request arrived, its job is waiting) before the write is sent.
    await new Promise((r) => setTimeout(r, 40));
    let acked = false;
    b.write(Buffer.concat([req(CMD.WRITE, 0, len, 2), Buffer.alloc(len, 0x22)]));
    const ack = readB(16).then((h) => {
      acked = true;
      return h;
    });
    const head = await readA(16);
    expect(head.readUInt32BE(4)).toBe(0);
    const data = await readA(len);
    expect((await ack).readUInt32BE(4)).toBe(0);
    expect(data.equals(Buffer.alloc(len, 0x11))).toBe(true);
    expect(acked).toBe(true);
    // And now the write is in: a read sees it.
    a.write(req(CMD.READ, 0, len, 3));
    await readA(16);
    expect((await readA(len)).equals(Buffer.alloc(len, 0x22))).toBe(true);
    a.end(req(CMD.DISC, 0, 0, 9));
    b.end(req(CMD.DISC, 0, 0, 9));
    await slow.close();
    await fast.close();
    await image.close();
  });
  it('a client that stops reading holds the range of its read 200 ms, not until it reads: a write of another client goes through', async () => {
    const len = 32 * MiB;
    const image = await writableImage('raw-stall-w.raw', len, 0x33);
    const srv = await listen(image, false, native);
    const b = await srv.connect();
    const readB = reader(b);
    b.pause(); // reads nothing: the job waits for the socket, gives EAGAIN after 200 ms
    b.write(req(CMD.READ, 0, len, 1));
    await new Promise((r) => setTimeout(r, 400));
    const a = await srv.connect();
    const readA = reader(a);
    a.write(Buffer.concat([req(CMD.WRITE, 4 * MiB, 64 * KiB, 2), Buffer.alloc(64 * KiB, 0x44)]));
    // Old code: the write waited for B's read to be sent, i.e. for as long as B reads nothing.
    const ack = await Promise.race([readA(16), new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000))]);
    expect(ack, 'the write was not acknowledged while the other client stalls').toBeDefined();
    expect(ack!.readUInt32BE(4)).toBe(0);
    // B's reply still carries what the range held when its read was issued.
    b.resume();
    expect((await readB(16)).readUInt32BE(4)).toBe(0);
    expect((await readB(len)).equals(Buffer.alloc(len, 0x33))).toBe(true);
    a.write(req(CMD.READ, 4 * MiB, 64 * KiB, 3));
    await readA(16);
    expect((await readA(64 * KiB)).equals(Buffer.alloc(64 * KiB, 0x44))).toBe(true);
    a.end(req(CMD.DISC, 0, 0, 9));
    b.end(req(CMD.DISC, 0, 0, 9));
    await srv.close();
    await image.close();
  });
});

describeNative('clients that go away', () => {
  it('a client that disconnects mid-sendfile: the connection ends, the server serves the next one', async () => {
    const file = path.join(dir, 'big.raw');
    fs.writeFileSync(file, Buffer.alloc(32 * MiB, 3));
    const image = await openImage(file, { format: 'raw', readOnly: true });
    const sender = countingSender();
    const srv = await listen(image, true, sender);
    for (let round = 0; round < 3; round++) {
      const s = await srv.connect();
      let got = 0;
      const gone = new Promise<void>((r) => s.once('close', () => r()));
      s.on('data', (b: Buffer) => {
        got += b.length;
        if (got > MiB) s.destroy();
      });
      s.on('error', () => undefined);
      s.write(Buffer.concat([req(CMD.READ, 0, 32 * MiB, 1), req(CMD.READ, 0, 32 * MiB, 2)]));
      await gone;
    }
    const ok = await srv.connect();
    const wire = await session(ok, [req(CMD.READ, 5 * MiB, MiB, 7)]);
    expect(wire.length).toBe(28 + MiB);
    expect(wire.subarray(28).equals(Buffer.alloc(MiB, 3))).toBe(true);
    expect(sender.jobs).toBeGreaterThanOrEqual(4);
    await srv.close();
    await image.close();
  });

  it('a client that pauses reading for a second: the job gives its thread back and resumes, every byte right', async () => {
    const file = path.join(dir, 'pause.raw');
    const content = Buffer.alloc(32 * MiB);
    for (let i = 0; i < content.length; i += 4096) content.writeUInt32BE(i, i);
    fs.writeFileSync(file, content);
    const image = await openImage(file, { format: 'raw', readOnly: true });
    const sender = countingSender();
    const srv = await listen(image, false, sender);
    const s = await srv.connect();
    s.pause();
    const wire = session(s, [req(CMD.READ, 0, 32 * MiB, 1)]);
    await new Promise((r) => setTimeout(r, 1000));
    s.resume();
    const got = await wire;
    expect(got.length).toBe(16 + 32 * MiB);
    expect(got.subarray(16).equals(content)).toBe(true);
    // EAGAIN after 200 ms without progress, then resumed: more than one job for one reply.
    expect(sender.jobs).toBeGreaterThan(1);
    await srv.close();
    await image.close();
  });

  it('a client that stops reading: closing the stream cancels the waiting job and the transmission ends', async () => {
    const file = path.join(dir, 'stall.raw');
    fs.writeFileSync(file, Buffer.alloc(32 * MiB, 4));
    const image = await openImage(file, { format: 'raw', readOnly: true });
    const streams: SocketStream[] = [];
    const runs: Promise<unknown>[] = [];
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      const stream = new SocketStream(socket, native);
      streams.push(stream);
      runs.push(new Transmission(stream, image, { structured: true, contexts: [] }).run());
    });
    const sock = path.join(dir, 'stall.sock');
    await new Promise<void>((r) => server.listen(sock, r));
    const c = net.connect(sock);
    c.on('error', () => undefined);
    await new Promise<void>((r) => c.once('connect', () => r()));
    c.pause(); // never reads: the socket fills, the job waits in poll
    c.write(req(CMD.READ, 0, 32 * MiB, 1));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    streams[0]!.close();
    await runs[0];
    expect(Date.now() - t0).toBeLessThan(3000);
    c.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await image.close();
  });
});
