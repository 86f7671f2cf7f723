/**
 * nodeTransport against a raw TCP server that writes its answers by hand: bodies framed by
 * Content-Length (in small pieces), chunked, ended by the connection's close; an interim 100; a body
 * read piece by piece; keep-alive reuse, and a kept-alive connection the server closed meanwhile;
 * a redirect to another origin (Authorization dropped); a broken head; a body cut short.
 */
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeTransport } from '@blk/http/node';
import type { TransportResponse } from '@blk/http';

type Handler = (req: { path: string; headers: Record<string, string> }, socket: net.Socket) => void;

/** A server that hands each parsed request head to `handler` (which writes the answer itself). */
class RawServer {
  handler: Handler = () => undefined;
  connections = 0;
  readonly sockets = new Set<net.Socket>();
  private server = net.createServer((socket) => {
    this.connections++;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    let buf = '';
    socket.on('data', (c) => {
      buf += c.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const [line, ...rest] = buf.slice(0, end).split('\r\n');
        buf = buf.slice(end + 4);
        const headers: Record<string, string> = {};
        for (const h of rest) headers[h.slice(0, h.indexOf(':')).toLowerCase()] = h.slice(h.indexOf(':') + 1).trim();
        this.handler({ path: line!.split(' ')[1]!, headers }, socket);
      }
    });
    socket.on('error', () => undefined);
  });
  port = 0;
  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }
  url(p: string): string {
    return `http://127.0.0.1:${this.port}${p}`;
  }
  stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const BODY = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7 + 3) & 255));

let server: RawServer;
let other: RawServer;
beforeAll(async () => {
  server = await new RawServer().start();
  other = await new RawServer().start();
});
afterAll(async () => {
  await server.stop();
  await other.stop();
});

const get = (url: string, headers: Record<string, string> = {}, transport = nodeTransport()) =>
  transport({ url, headers, signal: new AbortController().signal });

async function all(res: TransportResponse, size: number): Promise<Buffer> {
  const into = new Uint8Array(size);
  const { got, more } = await res.readInto(into);
  expect(more).toBe(false);
  return Buffer.from(into.subarray(0, got));
}

/** Writes `data` in pieces of `n` bytes, a tick apart. */
async function dribble(socket: net.Socket, data: Buffer, n: number): Promise<void> {
  for (let i = 0; i < data.length; i += n) {
    socket.write(data.subarray(i, i + n));
    await new Promise((r) => setImmediate(r));
  }
}

describe('nodeTransport', () => {
  it('reads a Content-Length body sent in small pieces, after an interim 100, and reuses the connection', async () => {
    server.handler = (_req, s) => {
      void dribble(
        s,
        Buffer.concat([
          Buffer.from(
            `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial\r\nContent-Length: ${BODY.length}\r\nETag: "x"\r\n\r\n`,
          ),
          BODY,
        ]),
        777,
      );
    };
    const t = nodeTransport();
    const before = server.connections;
    for (let i = 0; i < 3; i++) {
      const res = await get(server.url('/a'), {}, t);
      expect(res.status).toBe(206);
      expect(res.header('ETAG')).toBe('"x"');
      expect((await all(res, BODY.length + 10)).equals(BODY)).toBe(true);
    }
    expect(server.connections - before).toBe(1);
  });

  it('reads a body piece by piece (more: true until its end), and a chunked one, and one ended by close', async () => {
    server.handler = (_req, s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${BODY.length}\r\n\r\n`);
      s.write(BODY);
    };
    const res = await get(server.url('/p'));
    const parts: Buffer[] = [];
    for (;;) {
      const into = new Uint8Array(30_001);
      const { got, more } = await res.readInto(into);
      parts.push(Buffer.from(into.subarray(0, got)));
      if (!more) break;
    }
    expect(parts.map((p) => p.length)).toEqual([30_001, 30_001, 30_001, 9_997]);
    expect(Buffer.concat(parts).equals(BODY)).toBe(true);

    server.handler = (_req, s) => {
      const chunks = [BODY.subarray(0, 10), BODY.subarray(10, 70_000), BODY.subarray(70_000)];
      const wire = Buffer.concat([
        Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'),
        ...chunks.flatMap((c) => [Buffer.from(`${c.length.toString(16)};ext=1\r\n`), c, Buffer.from('\r\n')]),
        Buffer.from('0\r\nX-Trailer: 1\r\n\r\n'),
      ]);
      void dribble(s, wire, 1000);
    };
    expect((await all(await get(server.url('/c')), BODY.length)).equals(BODY)).toBe(true);

    server.handler = (_req, s) => {
      s.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n'), BODY]));
    };
    expect((await all(await get(server.url('/e')), BODY.length)).equals(BODY)).toBe(true);
  });

  it('sends again on a new connection when a kept-alive one was closed by the server', async () => {
    server.handler = (_req, s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    };
    const t = nodeTransport();
    expect((await all(await get(server.url('/k'), {}, t), 2)).toString()).toBe('ok');
    for (const s of server.sockets) s.destroy(); // the server drops its idle connections
    await new Promise((r) => setTimeout(r, 20));
    expect((await all(await get(server.url('/k'), {}, t), 2)).toString()).toBe('ok');
  });

  it('follows a redirect to another origin without the Authorization header', async () => {
    let seen: Record<string, string> = {};
    other.handler = (req, s) => {
      seen = req.headers;
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes');
    };
    server.handler = (_req, s) => {
      s.write(`HTTP/1.1 302 Found\r\nLocation: ${other.url('/there')}\r\nContent-Length: 0\r\n\r\n`);
    };
    const res = await get(server.url('/r'), { Authorization: 'secret', Range: 'bytes=0-2' });
    expect((await all(res, 3)).toString()).toBe('yes');
    expect(seen.authorization).toBeUndefined();
    expect(seen.range).toBe('bytes=0-2');
  });

  it('rejects a broken head, a body cut short, and a header holding a line break', async () => {
    server.handler = (_req, s) => {
      s.write('HTTP/1.1 2xx nonsense\r\n\r\n');
    };
    await expect(get(server.url('/b'))).rejects.toThrow(/status line/);
    server.handler = (_req, s) => {
      s.end(`HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n${'x'.repeat(40)}`);
    };
    const res = await get(server.url('/s'));
    await expect(res.readInto(new Uint8Array(100))).rejects.toThrow(/closed/);
    await expect(get(server.url('/h'), { 'X-Bad': 'a\r\nInjected: 1' })).rejects.toThrow(/line break/);
  });

  it('stops on the signal: the pending read rejects', async () => {
    server.handler = (_req, s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n${'y'.repeat(10)}`); // and nothing more
    };
    const controller = new AbortController();
    const res = await nodeTransport()({ url: server.url('/slow'), headers: {}, signal: controller.signal });
    const pending = res.readInto(new Uint8Array(1000));
    setTimeout(() => controller.abort(new Error('stop')), 30);
    await expect(pending).rejects.toThrow(/stop/);
  });
});
