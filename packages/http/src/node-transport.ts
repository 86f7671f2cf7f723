/**
 * nodeTransport: HTTP/1.1 GETs over node:net / node:tls sockets, kept alive per origin, with the body
 * read by the socket straight into the caller's buffer (`onread` with a buffer chosen before each
 * read), so that a body costs no allocation and no copy in JavaScript. Node's fetch (undici) hands a
 * body over as a web stream of 64 KiB chunks and reaches a third to a half of curl on loopback; this
 * reaches curl (see packages/http/README.md). Bodies framed by Content-Length go straight in;
 * chunked bodies and bodies ended by the connection's close are supported (copied).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { RangeTransport, TransportResponse } from './transport.js';

export interface NodeTransportOptions {
  /** PEM certificate(s) of the authorities to trust (replacing the default list, as node:tls does). */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** Client certificate and key (PEM), for servers that ask for one. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Default true; false accepts any certificate (tests only). */
  rejectUnauthorized?: boolean;
  /** Redirects followed (default 5). */
  maxRedirects?: number;
  /** Idle connections kept per origin (default 16). */
  maxIdle?: number;
}

/** Largest response head accepted: a longer one is a broken or hostile server. */
const MAX_HEAD = 64 * 1024;
/** Where bytes go when no caller's buffer is waiting for them (the head, chunk sizes, leftovers). */
const SCRATCH = 64 * 1024;
/** An idle connection is closed after this long (servers close theirs after 5 s to 75 s). */
const IDLE_MS = 4000;

const toBuffer = (v: string | Uint8Array) => (typeof v === 'string' ? v : Buffer.from(v));

class HttpProtocolError extends Error {}

/** A parsed response head. */
interface Head {
  status: number;
  statusText: string;
  headers: Map<string, string>;
}

function parseHead(text: string): Head {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m) throw new HttpProtocolError(`not an HTTP/1.x status line: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HttpProtocolError(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const had = headers.get(name);
    headers.set(name, had === undefined ? value : `${had}, ${value}`);
  }
  return { status: Number(m[1]), statusText: m[2] ?? '', headers };
}

/** How the body ends. */
type Framing = { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };

/**
 * One connection. Between requests it reads into `scratch` (bytes then are an error); a response's
 * head is read into scratch, then the socket pauses until the caller gives a buffer for the body.
 */
class Connection {
  readonly socket: net.Socket;
  private readonly scratch = Buffer.allocUnsafe(SCRATCH);
  /** Bytes read past the head and not yet handed on. */
  private leftover: Uint8Array = new Uint8Array(0);
  private headParts: Buffer[] = [];
  private headBytes = 0;
  /** The caller's body buffer and how far it is filled. */
  private sink: { into: Uint8Array; got: number; progress?: ((got: number) => void) | undefined } | undefined;
  private framing: Framing = { kind: 'none' };
  /** Chunked decoding: bytes left in the current chunk, or -1 when a size line is awaited; the size line so far. */
  private chunkLeft = -1;
  private chunkLine = '';
  private chunkTrailer = false;
  private state: 'connecting' | 'idle' | 'head' | 'paused' | 'body' | 'dead' = 'connecting';
  private onHead: ((head: Head) => void) | undefined;
  private onBodyDone: ((more: boolean) => void) | undefined;
  private onFail: ((err: Error) => void) | undefined;
  /** A reused connection that the server closed before answering: the request may go again. */
  reused = false;
  private gen = 0;
  private answered = false;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  keepAlive = true;

  constructor(
    url: URL,
    tlsOptions: tls.ConnectionOptions,
    private readonly release: (c: Connection) => void,
  ) {
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (url.protocol === 'https:') {
      // node:tls has no `onread`: chunks come as 'data' and are copied.
      this.socket = tls.connect({ ...tlsOptions, host, port, ...(net.isIP(host) ? {} : { servername: host }) });
      this.socket.on('data', (chunk: Buffer) => {
        if (!this.onRead(chunk.length, chunk, false)) this.socket.pause();
      });
    } else {
      const onread = {
        buffer: () => this.nextBuffer(),
        callback: (n: number, buf: Uint8Array) => this.onRead(n, buf, buf !== this.scratch),
      };
      this.socket = net.connect({ host, port, onread });
    }
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => this.fail(new Error('the connection closed')));
  }

  /** Sends a request; resolves with the head. */
  request(path: string, host: string, headers: Record<string, string>): Promise<Head> {
    let text = `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new TypeError(`header ${name} holds a line break`);
      if (name.toLowerCase() === 'host') continue;
      text += `${name}: ${value}\r\n`;
    }
    text += '\r\n';
    this.state = 'head';
    this.gen++;
    this.answered = false;
    this.headParts = [];
    this.headBytes = 0;
    this.leftover = new Uint8Array(0);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    return new Promise((resolve, reject) => {
      this.onHead = resolve;
      this.onFail = reject;
      this.socket.write(text);
    });
  }

  /** Where the next read goes: the rest of the caller's buffer, else scratch. */
  private nextBuffer(): Uint8Array {
    const s = this.sink;
    if (this.state === 'body' && s && this.framing.kind === 'length') {
      const room = Math.min(s.into.length - s.got, this.framing.left);
      if (room > 0) return s.into.subarray(s.got, s.got + room);
    }
    return this.scratch;
  }

  /** `n` bytes read into `buf`: in place in the caller's buffer, or to be handled. False pauses the socket. */
  private onRead(n: number, buf: Uint8Array, inPlace: boolean): boolean {
    this.answered = true;
    if (inPlace && this.state === 'body' && this.sink) {
      // Read in place into the caller's buffer.
      this.sink.got += n;
      if (this.framing.kind === 'length') this.framing.left -= n;
      this.sink.progress?.(this.sink.got);
      this.checkBodyDone();
      return !this.isPaused();
    }
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, n);
    if (this.state === 'head') return this.takeHead(bytes);
    if (this.state === 'body') {
      this.takeBody(bytes);
      return !this.isPaused();
    }
    if (this.state === 'paused') {
      // Only possible when the socket had bytes queued before it stopped: keep them.
      this.leftover = concat(this.leftover, bytes);
      return false;
    }
    // Idle (or dead): a server has nothing to say between requests.
    this.keepAlive = false;
    this.socket.destroy();
    return false;
  }

  private takeHead(bytes: Uint8Array): boolean {
    // The head ends at the first CRLFCRLF, maybe across reads.
    this.headParts.push(Buffer.from(bytes)); // copied: scratch is reused by the next read
    this.headBytes += bytes.length;
    const all = Buffer.concat(this.headParts);
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.headBytes > MAX_HEAD) this.fail(new HttpProtocolError(`a response head longer than ${MAX_HEAD} bytes`));
      return true;
    }
    this.headParts = [];
    let head: Head;
    try {
      head = parseHead(all.subarray(0, end).toString('latin1'));
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    const rest = all.subarray(end + 4);
    if (head.status >= 100 && head.status < 200) {
      // An interim answer (100 Continue, 103 Early Hints): the real one follows.
      this.headBytes = 0;
      return rest.length > 0 ? this.takeHead(rest) : true;
    }
    const length = head.headers.get('content-length');
    const te = head.headers.get('transfer-encoding');
    const connection = (head.headers.get('connection') ?? '').toLowerCase();
    if (connection.includes('close')) this.keepAlive = false;
    if (head.status === 204 || head.status === 304) this.framing = { kind: 'none' };
    else if (te !== undefined && te.toLowerCase() !== 'identity') {
      if (!/(^|,)\s*chunked\s*$/i.test(te)) {
        this.fail(new HttpProtocolError(`Transfer-Encoding ${te} is not supported`));
        return false;
      }
      this.framing = { kind: 'chunked' };
      this.chunkLeft = -1;
      this.chunkLine = '';
      this.chunkTrailer = false;
    } else if (length !== undefined) {
      const n = Number(length);
      if (!/^\d+$/.test(length) || !Number.isSafeInteger(n)) {
        this.fail(new HttpProtocolError(`bad Content-Length ${JSON.stringify(length)}`));
        return false;
      }
      this.framing = { kind: 'length', left: n };
    } else {
      this.framing = { kind: 'close' };
      this.keepAlive = false;
    }
    this.leftover = new Uint8Array(rest); // a copy, for the same reason
    this.state = 'paused';
    this.onHead?.(head);
    this.onHead = undefined;
    // No body expected: the connection is free at once (the caller may never ask for the body).
    if (this.framing.kind === 'none' || (this.framing.kind === 'length' && this.framing.left === 0)) {
      this.state = 'body';
      this.finishBody(false);
      return true;
    }
    return false; // pause until the caller gives a buffer
  }

  /** (A method: TypeScript narrows a field read across the calls that change it.) */
  private isPaused(): boolean {
    return this.state === 'paused';
  }

  /** Which request the connection serves (a response of an earlier one no longer touches it). */
  get generation(): number {
    return this.gen;
  }

  /** Reads the next bytes of the body into `into` (again and again: a body may be read piece by piece). */
  readInto(gen: number, into: Uint8Array, progress?: (got: number) => void): Promise<{ got: number; more: boolean }> {
    if (gen !== this.gen || this.state === 'idle') return Promise.resolve({ got: 0, more: false }); // the body ended
    if (this.state !== 'paused') return Promise.reject(new Error(`the body cannot be read now (${this.state})`));
    return new Promise((resolve, reject) => {
      const sink = { into, got: 0, progress };
      this.sink = sink;
      this.onFail = reject;
      this.onBodyDone = (more) => resolve({ got: sink.got, more });
      this.state = 'body';
      const early = this.leftover;
      this.leftover = new Uint8Array(0);
      if (early.length > 0) this.takeBody(early);
      if (this.state === 'body') this.socket.resume();
    });
  }

  /** Bytes of the body that arrived in scratch: copied into the sink (decoding chunks). */
  private takeBody(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length && this.state === 'body') {
      const f = this.framing;
      const s = this.sink!;
      const dataHere = f.kind === 'length' || f.kind === 'close' || (f.kind === 'chunked' && this.chunkLeft > 0);
      if (dataHere && s.got === s.into.length) {
        // A body byte and no room for it: the rest waits for the next call.
        this.pauseFull(bytes.subarray(at));
        return;
      }
      if (f.kind === 'length' || f.kind === 'close') {
        let n = Math.min(s.into.length - s.got, bytes.length - at);
        if (f.kind === 'length') n = Math.min(n, f.left);
        this.put(bytes.subarray(at, at + n));
        if (f.kind === 'length') f.left -= n;
        at += n;
        if (f.kind === 'length' && f.left === 0) this.finishBody(false);
        continue;
      }
      if (f.kind !== 'chunked') break;
      if (this.chunkLeft > 0) {
        const n = Math.min(this.chunkLeft, bytes.length - at, s.into.length - s.got);
        this.put(bytes.subarray(at, at + n));
        this.chunkLeft -= n;
        at += n;
        if (this.chunkLeft === 0) this.chunkLeft = -2; // the CRLF after the data
        continue;
      }
      // A line: a chunk's size, the CRLF after its data, or a trailer line.
      const nl = bytes.indexOf(10, at);
      const part = Buffer.from(bytes.buffer, bytes.byteOffset + at, (nl < 0 ? bytes.length : nl + 1) - at).toString(
        'latin1',
      );
      this.chunkLine += part;
      at += part.length;
      if (this.chunkLine.length > 4096) return this.fail(new HttpProtocolError('a chunk size line too long'));
      if (nl < 0) continue;
      const line = this.chunkLine.replace(/\r?\n$/, '');
      this.chunkLine = '';
      if (this.chunkLeft === -2) {
        if (line !== '') return this.fail(new HttpProtocolError('no CRLF after a chunk'));
        this.chunkLeft = -1;
      } else if (this.chunkTrailer) {
        if (line === '') this.finishBody(false);
      } else {
        const m = /^([0-9a-fA-F]{1,12})(;.*)?$/.exec(line);
        if (!m) return this.fail(new HttpProtocolError(`bad chunk size line ${JSON.stringify(line.slice(0, 40))}`));
        const size = Number.parseInt(m[1]!, 16);
        if (size === 0) this.chunkTrailer = true;
        else this.chunkLeft = size;
      }
    }
    // Every byte taken: a full buffer of a body that goes on is the caller's now.
    if (at === bytes.length) this.checkBodyDone();
    if (at < bytes.length && this.state !== 'body') {
      // Bytes past the body: a server that talks out of turn; the connection is not reused.
      this.keepAlive = false;
      if (this.state === 'idle') this.fail(new HttpProtocolError('bytes past the end of a body'));
    }
  }

  private put(bytes: Uint8Array): void {
    const s = this.sink!;
    s.into.set(bytes, s.got);
    s.got += bytes.length;
    if (bytes.length > 0) s.progress?.(s.got);
  }

  /** The caller's buffer is full and the body goes on: `rest` (wire bytes) waits, the socket pauses. */
  private pauseFull(rest: Uint8Array): void {
    this.leftover = new Uint8Array(rest); // a copy: it may lie in scratch
    const done = this.onBodyDone;
    this.onBodyDone = undefined;
    this.onFail = undefined;
    this.sink = undefined;
    this.state = 'paused';
    done?.(true);
  }

  private checkBodyDone(): void {
    if (this.state !== 'body') return;
    const f = this.framing;
    if (f.kind === 'length' && f.left === 0) this.finishBody(false);
    else if (f.kind === 'length' && this.sink && this.sink.got === this.sink.into.length)
      this.pauseFull(new Uint8Array(0));
  }

  private finishBody(more: boolean): void {
    const done = this.onBodyDone;
    this.onBodyDone = undefined;
    this.onFail = undefined;
    this.sink = undefined;
    this.framing = { kind: 'none' };
    if (this.keepAlive && !more) {
      this.state = 'idle';
      this.reused = true;
      this.release(this);
      this.socket.resume();
    } else {
      this.state = 'dead';
      this.socket.destroy();
    }
    done?.(more);
  }

  private onEnd(): void {
    if (this.state === 'body' && this.framing.kind === 'close') {
      this.keepAlive = false;
      this.finishBody(false);
      return;
    }
    this.fail(
      new Error(
        this.state === 'body' || this.state === 'paused'
          ? 'the connection closed mid-body'
          : 'the server closed the connection',
      ),
    );
  }

  /** Ends the connection; a request or body under way rejects with `err`. */
  fail(err: Error): void {
    if (this.state === 'dead' && !this.onFail) return;
    const wasIdle = this.state === 'idle';
    this.state = 'dead';
    this.keepAlive = false;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.socket.destroy();
    const reject = this.onFail;
    this.onFail = undefined;
    this.onHead = undefined;
    this.onBodyDone = undefined;
    if (reject) {
      // A reused connection closed before any byte of the answer: the request may be sent again.
      reject(this.reused && !this.answered ? Object.assign(err, { staleConnection: true }) : err);
    }
    if (wasIdle) this.release(this);
  }

  /** Drops the body unread: the connection cannot be reused. */
  discard(gen: number): void {
    if (gen === this.gen && (this.state === 'paused' || this.state === 'body')) {
      this.onFail = undefined;
      this.onBodyDone = undefined;
      this.fail(new Error('discarded'));
    }
  }

  get alive(): boolean {
    return this.state !== 'dead' && !this.socket.destroyed;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * A transport for HttpStorage's `transport` option over node:net / node:tls (https: with these TLS
 * settings), with keep-alive connections per origin. The default transport of @blk/http on Node.
 */
export function nodeTransport(options: NodeTransportOptions = {}): RangeTransport {
  const tlsOptions: tls.ConnectionOptions = {
    ...(options.ca !== undefined
      ? { ca: Array.isArray(options.ca) ? options.ca.map(toBuffer) : toBuffer(options.ca) }
      : {}),
    ...(options.cert !== undefined ? { cert: toBuffer(options.cert) } : {}),
    ...(options.key !== undefined ? { key: toBuffer(options.key) } : {}),
    rejectUnauthorized: options.rejectUnauthorized !== false,
  };
  const maxRedirects = options.maxRedirects ?? 5;
  const maxIdle = options.maxIdle ?? 16;
  const idle = new Map<string, Connection[]>();

  const release = (origin: string) => (c: Connection) => {
    const list = idle.get(origin) ?? [];
    const at = list.indexOf(c);
    if (at >= 0) list.splice(at, 1);
    if (c.alive && list.length < maxIdle) {
      list.push(c);
      if (c.idleTimer) clearTimeout(c.idleTimer);
      c.idleTimer = setTimeout(() => c.fail(new Error('idle')), IDLE_MS);
      c.idleTimer.unref?.();
      c.socket.unref();
    } else if (c.alive) c.fail(new Error('too many idle connections'));
    if (list.length > 0) idle.set(origin, list);
    else idle.delete(origin);
  };

  const take = (url: URL): Connection => {
    const list = idle.get(url.origin);
    while (list && list.length > 0) {
      const c = list.pop()!;
      if (c.alive) {
        c.socket.ref();
        return c;
      }
    }
    return new Connection(url, tlsOptions, release(url.origin));
  };

  const once = async (url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<TransportResponse> => {
    for (let attempt = 0; ; attempt++) {
      const conn = take(url);
      const onAbort = () => conn.fail(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      let head: Head;
      try {
        head = await conn.request(url.pathname + url.search, url.host, headers);
      } catch (err) {
        signal.removeEventListener('abort', onAbort);
        // A kept-alive connection the server had closed: once more on a new one.
        if ((err as { staleConnection?: boolean }).staleConnection && attempt === 0 && !signal.aborted) continue;
        throw err;
      }
      const done = () => signal.removeEventListener('abort', onAbort);
      const gen = conn.generation;
      return {
        status: head.status,
        statusText: head.statusText,
        header: (name) => head.headers.get(name.toLowerCase()) ?? null,
        async readInto(into, progress) {
          try {
            const r = await conn.readInto(gen, into, progress);
            if (!r.more) done();
            return r;
          } catch (err) {
            done();
            throw err;
          }
        },
        async discard() {
          done();
          conn.discard(gen);
        },
      };
    }
  };

  return async ({ url, headers, signal }) => {
    let target = new URL(url);
    let sent = headers;
    for (let hop = 0; ; hop++) {
      if (target.protocol !== 'http:' && target.protocol !== 'https:') {
        throw new TypeError(`cannot follow a redirect to ${target.protocol}`);
      }
      const res = await once(target, sent, signal);
      const location = res.header('location');
      if (![301, 302, 303, 307, 308].includes(res.status) || location === null) return res;
      await res.discard();
      if (hop >= maxRedirects) throw new TypeError(`more than ${maxRedirects} redirects`);
      const next = new URL(location, target);
      if (next.origin !== target.origin) {
        // As fetch does: credentials do not follow a request to another origin.
        sent = Object.fromEntries(Object.entries(sent).filter(([n]) => n.toLowerCase() !== 'authorization'));
      }
      target = next;
    }
  };
}
