/** @blk/nbd/node: NBD over Node sockets (a Unix socket or TCP listener). */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { type ByteStream, type ConnectionOptions, NbdConnection, type NbdExport } from './server.js';

/** Bytes buffered from a socket before it is paused (backpressure towards the client). */
const HIGH_WATER = 4 * 1024 * 1024;

/** A `ByteStream` over a Node socket. */
export class SocketStream implements ByteStream {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private failure: Error | undefined;
  private waiter: (() => void) | undefined;
  private drained: Promise<void> | undefined;
  /** Writes made in this turn of the event loop. */
  private turn = 0;
  private readonly endTurn = () => {
    if (this.turn >= 2) this.socket.uncork();
    this.turn = 0;
  };

  constructor(private readonly socket: net.Socket) {
    socket.setNoDelay?.(true);
    socket.on('data', (b: Buffer) => {
      this.chunks.push(b);
      this.buffered += b.length;
      if (this.buffered > HIGH_WATER) socket.pause();
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', (e) => {
      this.failure = e;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  async readExactly(n: number): Promise<Uint8Array | null> {
    while (this.buffered < n) {
      if (this.failure) throw this.failure;
      if (this.ended) {
        if (this.buffered === 0) return null;
        throw new Error('connection ended inside a message');
      }
      this.socket.resume();
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) {
      // Inside one received chunk: a view of it, no copy (Node never reuses a chunk it delivered).
      const view = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      if (this.buffered <= HIGH_WATER) this.socket.resume();
      return new Uint8Array(view.buffer, view.byteOffset, n);
    }
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, n - o);
      out.set(c.subarray(0, take), o);
      o += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.buffered -= n;
    if (this.buffered <= HIGH_WATER) this.socket.resume();
    return out;
  }

  write(data: Uint8Array): Promise<void> {
    if (this.socket.destroyed) return Promise.reject(new Error('connection closed'));
    // Writes made in one turn (the replies of the requests one 'data' event carried, a reply's
    // header and payload) leave together: the first goes at once, from the second on the socket is
    // corked until the turn ends (one writev for the rest, not a system call each).
    if (this.turn === 0) process.nextTick(this.endTurn);
    if (++this.turn === 2) this.socket.cork();
    const ok = this.socket.write(data, (e) => {
      if (e) this.failure ??= e;
    });
    if (ok) return Promise.resolve();
    // One wait for 'drain' shared by every write made while the socket is full (many replies may
    // be waiting at once: one listener each would pile up).
    this.drained ??= new Promise<void>((resolve, reject) => {
      const onDrain = () => {
        this.socket.off('close', onClose);
        this.drained = undefined;
        resolve();
      };
      const onClose = () => {
        this.socket.off('drain', onDrain);
        this.drained = undefined;
        reject(new Error('connection closed'));
      };
      this.socket.once('drain', onDrain);
      this.socket.once('close', onClose);
    });
    return this.drained;
  }

  close(): void {
    this.socket.end();
    this.socket.destroySoon?.();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}

export interface ListenOptions extends ConnectionOptions {
  exports: readonly NbdExport[];
  /** A Unix socket path, or a TCP host and port. */
  socket?: string;
  host?: string;
  port?: number;
  /** Most clients at once (qemu-nbd -e; default 1); further ones wait until one leaves. */
  shared?: number;
  /**
   * Most clients waiting for a slot at once, over the whole server (default 16); a client past
   * that is disconnected at once (a waiting client holds a socket and nothing else).
   */
  maxQueued?: number;
  /** Keep serving after the last client leaves (qemu-nbd -t). */
  persistent?: boolean;
}

/** A listening NBD server; `closed` resolves once it has stopped (see `close`). */
export class NbdServer {
  private readonly server: net.Server;
  private readonly connections = new Set<NbdConnection>();
  private readonly waiting: net.Socket[] = [];
  private served = 0;
  private stopping = false;
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  private constructor(private readonly options: ListenOptions) {
    this.closed = new Promise((r) => {
      this.resolveClosed = r;
    });
    this.server = net.createServer((socket) => this.accept(socket));
  }

  /** Listens as `options` say; resolves once clients can connect. */
  static async listen(options: ListenOptions): Promise<NbdServer> {
    const s = new NbdServer(options);
    if (options.socket !== undefined) {
      // A stale socket file of an earlier server is replaced (as QEMU's unix_listen does); nothing else is.
      const st = fs.lstatSync(options.socket, { throwIfNoEntry: false });
      if (st?.isSocket()) fs.unlinkSync(options.socket);
    }
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      const done = () => {
        s.server.off('error', reject);
        resolve();
      };
      if (options.socket !== undefined) s.server.listen(options.socket, done);
      else s.server.listen(options.port ?? 10809, options.host, done);
    });
    return s;
  }

  /** The TCP port listened on (for port 0). */
  get port(): number | undefined {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a.port : undefined;
  }

  private accept(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= (this.options.shared ?? 1)) {
      // As qemu-nbd, which stops accepting: the client waits (unanswered) until a slot frees;
      // but only so many wait (each holds a file descriptor).
      if (this.waiting.length >= (this.options.maxQueued ?? 16)) {
        socket.destroy();
        return;
      }
      this.waiting.push(socket);
      socket.once('close', () => {
        const i = this.waiting.indexOf(socket);
        if (i >= 0) this.waiting.splice(i, 1);
      });
      return;
    }
    this.served++;
    const conn = new NbdConnection(new SocketStream(socket), this.options.exports, this.options);
    this.connections.add(conn);
    void conn.run().then(() => {
      this.connections.delete(conn);
      const next = this.waiting.shift();
      if (next && !this.stopping) this.accept(next);
      else if (this.connections.size === 0 && !this.options.persistent && this.served > 0) void this.close();
    });
  }

  /** Stops listening, drops every connection, removes the socket file; resolves when stopped. */
  async close(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      for (const c of this.connections) c.close();
      for (const w of this.waiting.splice(0)) w.destroy();
      await new Promise<void>((r) => this.server.close(() => r()));
      if (this.options.socket !== undefined) fs.rmSync(this.options.socket, { force: true });
      this.resolveClosed();
    }
    return this.closed;
  }
}
