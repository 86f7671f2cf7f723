/**
 * Transmission over real sockets and a real file: a client that never reads its replies cannot make the
 * server buffer (bounded memory), a client that disconnects mid-write loses nothing acknowledged,
 * and clients queued behind the connection limit are capped.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage, type Image } from '@blk/images';
import { CMD, Transmission, type TransmissionOptions } from '../src/index.js';
import { NbdServer, SocketStream } from '../src/node.js';
import { req, simpleReply } from './wire.js';

const MiB = 1024 * 1024;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-nbd-io-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A listener whose connections go straight to transmission over `image` (structured replies). */
async function listen(image: Image, options: TransmissionOptions = {}, structured = true) {
  const transmissions = new Set<Transmission>();
  const finished: Promise<void>[] = [];
  const server = net.createServer((socket) => {
    const stream = new SocketStream(socket);
    const t = new Transmission(stream, image, { structured, contexts: [] }, options);
    transmissions.add(t);
    finished.push(t.run().then(() => stream.close()));
  });
  const sock = path.join(dir, `s${Math.random().toString(36).slice(2)}.sock`);
  await new Promise<void>((r) => server.listen(sock, r));
  const connect = async () => {
    const s = net.connect(sock);
    await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
    return { socket: s, stream: new SocketStream(s) };
  };
  const close = async () => {
    await Promise.all(finished);
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { connect, close, transmissions };
}

function fileOf(name: string, size: number, fill: (b: Buffer, offset: number) => void): string {
  const p = path.join(dir, name);
  const fd = fs.openSync(p, 'w');
  const piece = Buffer.alloc(4 * MiB);
  for (let o = 0; o < size; o += piece.length) {
    fill(piece, o);
    fs.writeSync(fd, piece, 0, Math.min(piece.length, size - o), o);
  }
  fs.closeSync(fd);
  return p;
}

describe('bounded memory and disconnects', () => {
  it('a client that sends 32 MiB reads and never reads a reply: the server holds at most its byte budget', async () => {
    const file = fileOf('flood.raw', 64 * MiB, (b) => b.fill(1));
    const image = await openImage(file, { format: 'raw', readOnly: true });
    const srv = await listen(image, { maxBytesInFlight: 64 * MiB });
    const c = await srv.connect();
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let peakHeld = 0;
    // 200 requests of 32 MiB: 6.4 GB if the server read them all.
    for (let i = 0; i < 200; i++) c.socket.write(Buffer.from(req(CMD.READ, (i % 2) * 32 * MiB, 32 * MiB, i)));
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 25));
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
      for (const t of srv.transmissions) peakHeld = Math.max(peakHeld, t.load.bytes);
    }
    console.log(
      `never-reading client: server held at most ${peakHeld / MiB} MiB of payload; array buffers grew ${(peak / MiB).toFixed(0)} MiB`,
    );
    expect(peakHeld).toBeLessThanOrEqual(64 * MiB);
    expect(peak).toBeLessThan(200 * MiB);
    c.socket.destroy();
    await srv.close();
    await image.close();
  });

  it('a client that disconnects in the middle of a write payload loses no acknowledged write', async () => {
    const file = fileOf('disc.raw', 16 * MiB, (b) => b.fill(0));
    const image = await openImage(file, { format: 'raw' });
    const srv = await listen(image, {}, false);
    const c = await srv.connect();
    for (let i = 0; i < 64; i++) {
      await c.stream.write(req(CMD.WRITE, i * 65536, 65536, i));
      await c.stream.write(new Uint8Array(65536).fill(i + 1));
    }
    for (let i = 0; i < 64; i++) expect((await simpleReply(c.stream, () => 0))!.error).toBe(0);
    // Pipelined writes, the last one cut off in its payload.
    for (let i = 64; i < 96; i++) {
      await c.stream.write(req(CMD.WRITE, i * 65536, 65536, i));
      await c.stream.write(new Uint8Array(i === 95 ? 1000 : 65536).fill(i + 1));
    }
    c.socket.destroy();
    await srv.close();
    await image.close();
    const after = await openImage(file, { format: 'raw', readOnly: true });
    for (let i = 0; i < 95; i++) {
      const b = await after.read(i * 65536, 65536);
      // Acknowledged writes (0-63) are all there; unacknowledged ones (64-94, maybe never sent
      // whole: the client's socket was destroyed) are all or nothing, never torn.
      if (i < 64) expect(b.every((x) => x === i + 1)).toBe(true);
      else expect(b.every((x) => x === i + 1) || b.every((x) => x === 0)).toBe(true);
    }
    expect((await after.read(95 * 65536, 65536)).every((x) => x === 0)).toBe(true);
    await after.close();
  });

  it('clients queued behind the connection limit are capped (maxQueued); the rest are disconnected at once', async () => {
    const file = fileOf('queue.raw', MiB, (b) => b.fill(0));
    const image = await openImage(file, { format: 'raw', readOnly: true });
    const sock = path.join(dir, 'q.sock');
    const server = await NbdServer.listen({
      exports: [{ name: '', image }],
      socket: sock,
      shared: 1,
      maxQueued: 2,
      persistent: true,
      handshakeTimeoutMs: 0,
    });
    const sockets: net.Socket[] = [];
    const closed: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      const s = net.connect(sock);
      const k = i;
      closed[k] = false;
      s.on('close', () => {
        closed[k] = true;
      });
      s.on('error', () => undefined);
      sockets.push(s);
      await new Promise((r) => setTimeout(r, 30));
    }
    await new Promise((r) => setTimeout(r, 200));
    // One served, two waiting, two turned away.
    expect(closed).toEqual([false, false, false, true, true]);
    for (const s of sockets) s.destroy();
    await server.close();
    await image.close();
  });
});
