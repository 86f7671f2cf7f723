/** @blk/nbd/node: NBD over Node sockets (a Unix socket or TCP listener). */
import * as fs from 'node:fs';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { checkExports } from './exports.js';
import { type ByteStream, type ConnectionOptions, NbdConnection, type NbdExport } from './server.js';
import type { StartTlsStream } from './tls-node.js';
import type { FileSpan } from './transmission.js';
import { type SocketSender, ZeroCopyWriter } from './zero-copy-node.js';

export type { SocketSender } from './zero-copy-node.js';
export {
  distinguishedName,
  loadPskCredentials,
  loadX509Credentials,
  type NodeTlsOptions,
  nodeTls,
  type PskCredentials,
  parsePskKeys,
  type StartTlsStream,
  type TlsCredentials,
  TlsCredentialsError,
  type X509Credentials,
} from './tls-node.js';

/** What `write` returns when the socket takes more at once. */
const RESOLVED: Promise<void> = Promise.resolve();
/** Bytes buffered from a socket before it is paused (backpressure towards the client). */
const HIGH_WATER = 4 * 1024 * 1024;

/** A `ByteStream` over a Node socket. */
export class SocketStream implements StartTlsStream {
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

  private detached = false;
  /** `onArrival`'s listener (the transmission's small-read fast path). */
  private arrival: ((ended: boolean) => void) | undefined;
  private readonly onData = (b: Buffer) => {
    this.chunks.push(b);
    this.buffered += b.length;
    if (this.buffered > HIGH_WATER) this.socket.pause();
    this.wake();
    const arrival = this.arrival;
    if (arrival === undefined) return;
    // The replies the listener writes at once (small reads) leave together, in one system call.
    this.socket.cork();
    try {
      arrival(false);
    } finally {
      this.socket.uncork();
    }
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.wake();
    this.arrival?.(true);
  };

  /** Zero-copy replies (zero-copy-node.ts): on plain sockets when a `SocketSender` is given. */
  private readonly zeroCopy: ZeroCopyWriter | undefined;
  /**
   * Present with zero-copy: sends `parts` (bytes, and host file ranges by sendfile from a worker
   * thread) after everything written before, nothing of another call between them.
   */
  readonly sendParts?: (parts: ReadonlyArray<Uint8Array | FileSpan>, sent?: () => void) => Promise<void>;

  /** `sender`: zero-copy replies (@blk/native's `nativeSocketSender()`); never for a TLS socket. */
  constructor(
    private readonly socket: net.Socket,
    sender?: SocketSender,
  ) {
    if (sender !== undefined && !('encrypted' in socket)) {
      const zc = new ZeroCopyWriter(socket, sender);
      this.zeroCopy = zc;
      this.sendParts = (parts, sent) => zc.enqueue(parts, sent);
    }
    socket.setNoDelay?.(true);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', (e) => {
      this.failure = e;
      this.wake();
      this.arrival?.(true);
    });
  }

  peek(): Uint8Array | undefined {
    return this.chunks[0];
  }

  skip(n: number): void {
    const first = this.chunks[0]!;
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    if (this.buffered <= HIGH_WATER && this.socket.isPaused()) this.socket.resume();
  }

  onArrival(listener: ((ended: boolean) => void) | undefined): void {
    this.arrival = listener;
    if (this.ended || this.failure !== undefined) listener?.(true);
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

  write(data: Uint8Array, sent?: () => void): Promise<void> {
    if (this.socket.destroyed) return Promise.reject(new Error('connection closed'));
    // Behind a zero-copy reply being sent or waiting: queued after it, to keep the wire order.
    if (this.zeroCopy?.holding) return this.zeroCopy.enqueue([data], sent);
    // Writes made in one turn (the replies of the requests one 'data' event carried, a reply's
    // header and payload) leave together: the first goes at once, from the second on the socket is
    // corked until the turn ends (one writev for the rest, not a system call each).
    if (this.turn === 0) process.nextTick(this.endTurn);
    if (++this.turn === 2) this.socket.cork();
    // The callback runs once libuv is done with `data` (written, or dropped with the socket).
    const done = (e?: Error | null) => {
      if (e) this.failure ??= e;
      sent?.();
    };
    const ok = this.socket.write(data, this.zeroCopy ? this.zeroCopy.trackWrite(done) : done);
    if (ok) return RESOLVED;
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

  /** STARTTLS (tls-node.ts): hands the socket over, unread; refused when plaintext is already queued. */
  detachForTls(): net.Socket {
    if (this.buffered > 0 || this.socket.readableLength > 0) {
      throw new Error('data sent behind NBD_OPT_STARTTLS before its reply');
    }
    this.detached = true;
    this.socket.off('data', this.onData);
    this.socket.pause();
    return this.socket;
  }

  wrapTls(secure: tls.TLSSocket): ByteStream {
    return new SocketStream(secure);
  }

  close(): void {
    if (this.detached) {
      // Mid-STARTTLS (or replaced by the TLS stream): nothing of ours to flush.
      this.socket.destroy();
      return;
    }
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
  /** Most clients served at once (qemu-nbd -e; default 1). With 1, no export announces multi-conn. */
  shared?: number;
  /**
   * Clients beyond `shared` wait for a free slot, at most this many over the whole server (default 16),
   * each at most `queueTimeoutMs`; any other is disconnected at once.
   */
  maxQueued?: number;
  /** Milliseconds a client waits for a slot before it is disconnected (default 60 s; 0: no limit). */
  queueTimeoutMs?: number;
  /** Keep serving after the last client leaves (qemu-nbd -t). */
  persistent?: boolean;
  /** Hears connections come and go (info) and what went wrong with them (error), one line each. */
  log?: (level: 'error' | 'info', message: string) => void;
  /**
   * Zero-copy replies on plain (not TLS) connections: large reads of data in host files (raw
   * images, raw layers of a chain) are sent by sendfile from a worker thread (src/zero-copy-node.ts).
   * Pass @blk/native's `nativeSocketSender()`; without it, replies are read and written as before.
   */
  zeroCopy?: SocketSender;
}

interface Waiting {
  socket: net.Socket;
  id: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** A listening NBD server; `closed` resolves once it has stopped (see `close`). */
export class NbdServer {
  private readonly server: net.Server;
  private readonly connections = new Set<NbdConnection>();
  private readonly waiting: Waiting[] = [];
  private readonly exports: readonly NbdExport[];
  private served = 0;
  private nextId = 1;
  private stopping = false;
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  private constructor(private readonly options: ListenOptions) {
    this.closed = new Promise((r) => {
      this.resolveClosed = r;
    });
    // As qemu-nbd: multi-conn is announced only where a client may open several connections at once.
    this.exports =
      (options.shared ?? 1) > 1 ? options.exports : options.exports.map((e) => ({ ...e, multiConn: false }));
    this.server = net.createServer((socket) => this.accept(socket));
  }

  /** Listens as `options` say; resolves once clients can connect. */
  static async listen(options: ListenOptions): Promise<NbdServer> {
    checkExports(options.exports);
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

  private log(level: 'error' | 'info', message: string): void {
    this.options.log?.(level, message);
  }

  private accept(socket: net.Socket, id = this.nextId++): void {
    // A socket error (a reset) must never become an uncaught exception; SocketStream reports it once adopted.
    socket.on('error', () => undefined);
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const peer = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : 'the socket';
    if (this.connections.size >= (this.options.shared ?? 1)) {
      if (this.waiting.length >= (this.options.maxQueued ?? 16)) {
        this.log(
          'error',
          `client ${id} from ${peer} refused: ${this.connections.size} served and ${this.waiting.length} waiting`,
        );
        socket.destroy();
        return;
      }
      // As qemu-nbd, which stops accepting: the client waits (unanswered) until a slot frees; not forever.
      const limit = this.options.queueTimeoutMs ?? 60_000;
      const w: Waiting = { socket, id, timer: undefined };
      if (limit > 0) {
        w.timer = setTimeout(() => {
          this.log('error', `client ${id} from ${peer} dropped: no free slot within ${limit / 1000} s`);
          socket.destroy();
        }, limit);
      }
      this.waiting.push(w);
      socket.once('close', () => {
        if (w.timer !== undefined) clearTimeout(w.timer);
        const i = this.waiting.indexOf(w);
        if (i >= 0) this.waiting.splice(i, 1);
      });
      return;
    }
    this.served++;
    this.log('info', `client ${id} connected from ${peer}`);
    const conn = new NbdConnection(new SocketStream(socket, this.options.zeroCopy), this.exports, {
      ...this.options,
      log: (level, message) => this.log(level, `client ${id}: ${message}`),
    });
    this.connections.add(conn);
    void conn.run().then(() => {
      this.connections.delete(conn);
      this.log('info', `client ${id} disconnected`);
      const next = this.stopping ? undefined : this.waiting.shift();
      if (next) {
        if (next.timer !== undefined) clearTimeout(next.timer);
        this.accept(next.socket, next.id);
      } else if (this.connections.size === 0 && !this.options.persistent && this.served > 0) void this.close();
      if (this.stopping && this.connections.size === 0) this.drained?.();
    });
  }

  private drained: (() => void) | undefined;

  /**
   * Stops the server: no new connection is accepted, waiting ones are dropped, clients in the handshake are
   * disconnected, and each client in transmission gets the reply to the request being served before its
   * connection closes; after `graceMs` (default 10 s) the remaining connections are cut. Removes the socket
   * file. Resolves when stopped.
   */
  async close(options: { graceMs?: number } = {}): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      const listening = new Promise<void>((r) => this.server.close(() => r()));
      for (const w of this.waiting.splice(0)) {
        if (w.timer !== undefined) clearTimeout(w.timer);
        w.socket.destroy();
      }
      if (this.connections.size > 0) {
        const drained = new Promise<void>((r) => {
          this.drained = r;
        });
        for (const c of this.connections) c.stop();
        const grace = options.graceMs ?? 10_000;
        const timer = setTimeout(() => {
          if (this.connections.size > 0) this.log('error', `${this.connections.size} client(s) cut off at shutdown`);
          for (const c of this.connections) c.close();
        }, grace);
        await drained;
        clearTimeout(timer);
      }
      await listening;
      // libuv unlinks the socket file when the listener closes (as qemu-nbd unlinks it at exit); whatever
      // is left at the path is removed only if it is a socket.
      if (this.options.socket !== undefined) {
        if (fs.lstatSync(this.options.socket, { throwIfNoEntry: false })?.isSocket()) fs.rmSync(this.options.socket);
      }
      this.resolveClosed();
    }
    return this.closed;
  }

  /** Cuts every connection now (a second SIGINT): in-flight requests are abandoned. */
  abort(): void {
    for (const c of this.connections) c.close();
    void this.close();
  }
}
