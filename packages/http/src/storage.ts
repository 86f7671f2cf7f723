/**
 * HttpStorage: a read-only `Storage` over one HTTP(S) URL, read with byte
 * ranges through the global `fetch` (Node 20+ and browsers alike).
 *
 * - The first response (a ranged GET of the first block) gives the size (from
 *   Content-Range) and the validator (a strong ETag, else Last-Modified), and
 *   its bytes become the first cached block: opening costs one round trip.
 * - Reads go through a block cache (LRU, `cacheSize` bytes of `blockSize`
 *   blocks); adjacent missing blocks of one read are fetched in one request,
 *   and a sequential reader gets a read-ahead window that doubles up to
 *   `readAhead` bytes (added to the same request). Once the window is whole and the object is
 *   larger than the cache, the rest comes in one request read straight into the reader's buffers
 *   (see `startStream`).
 * - Requests go through a `RangeTransport` (transport.ts): fetch, or on Node sockets (node-transport.ts).
 * - At most `maxInFlight` requests are under way at once; a block being
 *   fetched is awaited, never fetched twice.
 * - Network errors and 5xx/429 answers are retried `retries` times with
 *   exponential backoff from `retryDelay` ms.
 * - Never wrong data: every later request carries `If-Range` and `If-Match`
 *   (or `If-Unmodified-Since`) with the validator; a 200 instead of 206, a
 *   412, another ETag or Last-Modified, a Content-Encoding other than
 *   identity, a Content-Range that is not the one asked for, or a body of
 *   another length is a BlockError `io` (code `ESTALE` when the object
 *   changed), and a request slower than `timeout` ms is `io` with code
 *   `ETIMEDOUT`; the caller's `signal` gives `aborted`.
 */
import { BlockError, storageCapabilities, type Storage, type StorageCapabilities } from '@blk/core/portable';
import { fetchTransport, type RangeTransport, type TransportResponse } from './transport.js';

/** Options of `HttpStorage.open` (and of `HttpVfs`, which hands them on). */
export interface HttpStorageOptions {
  /** Cache and request granularity in bytes (default 256 KiB, `DEFAULT_BLOCK_SIZE`; see the README's sweep). */
  blockSize?: number;
  /** Bytes of blocks kept (default 64 MiB, `DEFAULT_CACHE_SIZE`); at least one block is kept. */
  cacheSize?: number;
  /** Largest read-ahead window of a sequential reader, in bytes (default 8 MiB; 0 turns read-ahead off). */
  readAhead?: number;
  /** Largest request in bytes (default 8 MiB); longer runs are split. */
  maxRequest?: number;
  /** Requests under way at once (default 8). */
  maxInFlight?: number;
  /** Retries of a request after a network error or a 5xx/429 answer (default 3). */
  retries?: number;
  /** First retry delay in ms, doubled each retry (default 100). */
  retryDelay?: number;
  /** Time limit of one request, response and body, in ms (default 30000). Not retried. */
  timeout?: number;
  /** Stops every request: the read fails with `aborted`. */
  signal?: AbortSignal;
  /** Extra request headers (authorization, ...). */
  headers?: Record<string, string>;
  /** The fetch to use (a transport over it); without `fetch` and `transport`, the platform's default transport. */
  fetch?: typeof fetch;
  /**
   * How GETs are sent (default: on Node, `nodeTransport()` of @blk/http/node, set when @blk/http is
   * imported under the `node` condition; elsewhere a transport over the global fetch).
   */
  transport?: RangeTransport;
  /**
   * Called before each request is sent (each retry too) with the method, URL and headers blk
   * chose; returns the headers to send instead (S3's SigV4 signing uses it). `Accept-Encoding`
   * is added afterwards and is never part of what it sees.
   */
  authorize?: (request: HttpRequestInfo) => Promise<Record<string, string>> | Record<string, string>;
  /**
   * Largest object size accepted, in bytes (default 2^50, `DEFAULT_MAX_SIZE`): a server announcing more
   * (or a size that is no safe integer) is refused with `invalid-header` before anything is allocated.
   */
  maxSize?: number;
}

/** What `authorize` is given. */
export interface HttpRequestInfo {
  method: 'GET' | 'HEAD';
  url: string;
  headers: Record<string, string>;
}

export const DEFAULT_BLOCK_SIZE = 256 * 1024;
export const DEFAULT_CACHE_SIZE = 64 * 1024 * 1024;
export const DEFAULT_READ_AHEAD = 8 * 1024 * 1024;
export const DEFAULT_MAX_REQUEST = 8 * 1024 * 1024;
export const DEFAULT_MAX_IN_FLIGHT = 8;
export const DEFAULT_RETRIES = 3;
export const DEFAULT_RETRY_DELAY = 100;
export const DEFAULT_TIMEOUT = 30_000;
export const DEFAULT_MAX_SIZE = 2 ** 50;

/** Request counters, for tests and tuning. */
export interface HttpStats {
  /** HTTP requests sent (retries included). */
  requests: number;
  /** Blocks served from the cache. */
  hits: number;
  /** Blocks fetched. */
  fetchedBlocks: number;
  /** Bytes received in bodies. */
  bytes: number;
  retries: number;
}

interface Config {
  blockSize: number;
  cacheBlocks: number;
  readAheadBlocks: number;
  maxRequestBlocks: number;
  maxInFlight: number;
  retries: number;
  retryDelay: number;
  timeout: number;
  signal: AbortSignal | undefined;
  headers: Record<string, string>;
  transport: RangeTransport;
  authorize: HttpStorageOptions['authorize'];
  maxSize: number;
}

function positiveInt(value: number | undefined, fallback: number, field: string, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new BlockError('invalid-argument', `${field} must be an integer >= ${min}, not ${value}`, { field });
  }
  return value;
}

function config(o: HttpStorageOptions): Config {
  const blockSize = positiveInt(o.blockSize, DEFAULT_BLOCK_SIZE, 'blockSize', 512);
  const cacheSize = positiveInt(o.cacheSize, DEFAULT_CACHE_SIZE, 'cacheSize', 0);
  const readAhead = positiveInt(o.readAhead, DEFAULT_READ_AHEAD, 'readAhead', 0);
  const maxRequest = positiveInt(o.maxRequest, DEFAULT_MAX_REQUEST, 'maxRequest', 1);
  let transport = o.transport ?? (o.fetch ? fetchTransport(o.fetch) : defaultTransport);
  if (transport === undefined) {
    const f = globalThis.fetch;
    if (typeof f !== 'function') throw new BlockError('not-supported', 'no fetch in this environment: pass `fetch`');
    transport = fetchTransport(f.bind(globalThis));
  }
  return {
    blockSize,
    cacheBlocks: Math.max(1, Math.floor(cacheSize / blockSize)),
    readAheadBlocks: Math.floor(readAhead / blockSize),
    maxRequestBlocks: Math.max(1, Math.floor(maxRequest / blockSize)),
    maxInFlight: positiveInt(o.maxInFlight, DEFAULT_MAX_IN_FLIGHT, 'maxInFlight'),
    retries: positiveInt(o.retries, DEFAULT_RETRIES, 'retries', 0),
    retryDelay: positiveInt(o.retryDelay, DEFAULT_RETRY_DELAY, 'retryDelay', 0),
    timeout: positiveInt(o.timeout, DEFAULT_TIMEOUT, 'timeout'),
    signal: o.signal,
    headers: { ...o.headers },
    transport,
    authorize: o.authorize,
    maxSize: positiveInt(o.maxSize, DEFAULT_MAX_SIZE, 'maxSize', 0),
  };
}

/** The transport used when the options name none (and no `fetch`): set by @blk/http's Node entry. */
let defaultTransport: RangeTransport | undefined;

/** Sets the transport HttpStorage uses when the options give neither `transport` nor `fetch` (undefined: fetch). */
export function setDefaultTransport(transport: RangeTransport | undefined): void {
  defaultTransport = transport;
}

/** What the first response told: size, validator, and the bytes it carried (from offset 0). */
interface Head {
  size: number;
  etag: string | undefined;
  lastModified: string | undefined;
  first: Uint8Array;
}

/** An error worth another try (network, 5xx, 429). */
class Retryable extends Error {}

/** A small counting semaphore: at most `n` holders. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];
  constructor(n: number) {
    this.free = n;
  }
  async enter(): Promise<void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  leave(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/** A response whose body is read later, piece by piece (a sequential stream); `close` frees its slot. */
export interface HeldResponse {
  res: TransportResponse;
  /** Stops the request (its connection is dropped): a read under way rejects. */
  abort(reason: Error): void;
  /** Drops the rest of the body and frees the request's slot (once). */
  close(): void;
}

const CONTENT_RANGE = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i;
const UNSATISFIED_RANGE = /^bytes\s+\*\/(\d+)$/i;

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The shared request logic of the first request and the range reads. */
class Requester {
  readonly stats: HttpStats = { requests: 0, hits: 0, fetchedBlocks: 0, bytes: 0, retries: 0 };
  private readonly slots: Slots;

  /**
   * @param url what requests go to
   * @param path what errors name (the URL the user gave: `s3://bucket/key` for S3)
   */
  constructor(
    readonly url: string,
    readonly cfg: Config,
    readonly path: string = url,
  ) {
    this.slots = new Slots(cfg.maxInFlight);
  }

  error(message: string, code: string, cause?: unknown): BlockError {
    return new BlockError('io', message, { path: this.path, code, ...(cause !== undefined ? { cause } : {}) });
  }

  /** Sends one GET with these headers, retrying as configured; `check` reads the response (its throw of Retryable retries). */
  async get<T>(headers: Record<string, string>, check: (res: TransportResponse) => Promise<T>): Promise<T> {
    await this.slots.enter();
    try {
      return (await this.attempts(headers, check, false)) as T;
    } finally {
      this.slots.leave();
    }
  }

  /**
   * Like `get`, but the answer (checked by `check`, its body unread) is handed over: it keeps its
   * slot and connection until `close`. The time limit covers the head; the caller times its reads.
   */
  async hold(headers: Record<string, string>, check: (res: TransportResponse) => Promise<void>): Promise<HeldResponse> {
    await this.slots.enter();
    try {
      return (await this.attempts(headers, check, true)) as HeldResponse;
    } catch (err) {
      this.slots.leave();
      throw err;
    }
  }

  /** Sends the request, retrying as configured; `check` reads the response (its throw of Retryable retries). */
  private async attempts<T>(
    headers: Record<string, string>,
    check: (res: TransportResponse) => Promise<T>,
    hold: boolean,
  ): Promise<T | HeldResponse> {
    {
      for (let attempt = 0; ; attempt++) {
        const user = this.cfg.signal;
        if (user?.aborted) throw new BlockError('aborted', 'the request was aborted', { path: this.path });
        const stop = new AbortController();
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          stop.abort(new Error(`no complete answer within ${this.cfg.timeout} ms`));
        }, this.cfg.timeout);
        const signal = user ? AbortSignal.any([user, stop.signal]) : stop.signal;
        let kept = false;
        try {
          this.stats.requests++;
          let res: TransportResponse;
          let sent: Record<string, string> = { ...this.cfg.headers, ...headers };
          if (this.cfg.authorize) sent = await this.cfg.authorize({ method: 'GET', url: this.url, headers: sent });
          try {
            res = await this.cfg.transport({
              url: this.url,
              headers: { ...sent, 'Accept-Encoding': 'identity' },
              signal,
            });
          } catch (err) {
            const tls = tlsProblem(err);
            if (tls !== undefined) {
              throw this.error(
                `TLS: the server's certificate is not trusted (${tls}); trust its authority with a fetch that knows it `
                  + '(tlsFetch({ ca }) from @blk/http/node), or NODE_EXTRA_CA_CERTS=FILE for the blk command',
                'EPROTO',
                err,
              );
            }
            throw new Retryable('network', { cause: err });
          }
          if (res.status >= 500 || res.status === 429) {
            await res.discard().catch(() => undefined);
            throw new Retryable(`HTTP ${res.status}`);
          }
          try {
            const out = await check(res);
            if (!hold) return out;
            kept = true;
            let closed = false;
            const held: HeldResponse = {
              res,
              abort: (reason) => stop.abort(reason),
              close: () => {
                if (closed) return;
                closed = true;
                res.discard().catch(() => undefined);
                this.slots.leave();
              },
            };
            return held;
          } finally {
            // A body left unread (an error above) must not hold the connection.
            if (!kept) await res.discard().catch(() => undefined);
          }
        } catch (err) {
          if (user?.aborted)
            throw new BlockError('aborted', 'the request was aborted', { path: this.path, cause: err });
          if (timedOut) {
            throw this.error(`no complete answer within ${this.cfg.timeout} ms`, 'ETIMEDOUT', err);
          }
          if (!(err instanceof Retryable)) {
            if (err instanceof BlockError) throw err;
            // The body broke off (connection reset mid-transfer): worth another try.
            if (attempt >= this.cfg.retries) throw this.error(`request failed: ${String(err)}`, 'EIO', err);
          } else if (attempt >= this.cfg.retries) {
            const cause = err.cause ?? err;
            throw this.error(`request failed after ${attempt + 1} attempts: ${err.message}`, 'EIO', cause);
          }
          this.stats.retries++;
          await sleep(this.cfg.retryDelay * 2 ** attempt, user).catch((reason: unknown) => {
            throw new BlockError('aborted', 'the request was aborted', { path: this.path, cause: reason });
          });
        } finally {
          clearTimeout(timer);
        }
      }
    }
  }

  /** Refuses a compressed body: its bytes are not the object's. */
  checkEncoding(res: TransportResponse): void {
    const enc = res.header('content-encoding');
    if (enc !== null && enc.trim().toLowerCase() !== 'identity' && enc.trim() !== '') {
      throw this.error(
        `the server sent the body with Content-Encoding ${enc}: ranges of it are not the object's bytes`,
        'EIO',
      );
    }
  }

  /** A status that is no answer: 404, 403, 412, other 4xx (an S3 error code in the body is named). */
  async checkStatus(res: TransportResponse): Promise<void> {
    if (res.status < 400 || res.status === 416) return;
    const code = await errorCode(res);
    const why = code !== undefined ? `: ${code}` : '';
    if (res.status === 404 || res.status === 410) throw this.error(`not found (HTTP ${res.status}${why})`, 'ENOENT');
    if (res.status === 401 || res.status === 403) {
      throw this.error(`access denied (HTTP ${res.status}${why})`, 'EACCES');
    }
    if (res.status === 412) {
      throw this.error(`the object changed (HTTP 412${why}: the validator no longer matches)`, 'ESTALE');
    }
    throw this.error(`HTTP ${res.status} ${res.statusText}${why}`, 'EIO');
  }

  /**
   * The body, read into `into`, which it must fill exactly (a longer body is refused once it passes
   * the end; a shorter one too: both are worth another try).
   */
  async body(res: TransportResponse, into: Uint8Array, progress?: (got: number) => void): Promise<Uint8Array> {
    const { got, more } = await res.readInto(into, progress);
    this.stats.bytes += got;
    if (more || got !== into.length) {
      throw new Retryable(
        `the body has ${more ? 'more than ' : ''}${got} bytes, not the ${into.length} of its Content-Range`,
      );
    }
    return into;
  }
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);

/** The code of a certificate verification failure in a fetch error's causes (not worth a retry). */
function tlsProblem(err: unknown): string | undefined {
  for (
    let e: unknown = err, i = 0;
    e !== null && typeof e === 'object' && i < 5;
    e = (e as { cause?: unknown }).cause, i++
  ) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TLS_CODES.has(code)) return code;
  }
  return undefined;
}

/** The first 4 KiB of an error body, for an S3-style `<Code>` (the rest is dropped unread). */
async function errorCode(res: TransportResponse): Promise<string | undefined> {
  const buf = new Uint8Array(4096);
  let got: number;
  try {
    ({ got } = await res.readInto(buf));
  } catch {
    return undefined;
  }
  const text = new TextDecoder().decode(buf.subarray(0, got));
  const m = /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(text);
  return m?.[1];
}

/** The validator of a response: a strong ETag, else Last-Modified. */
function validatorOf(res: TransportResponse): { etag: string | undefined; lastModified: string | undefined } {
  const etag = res.header('etag') ?? undefined;
  return {
    etag: etag !== undefined && !etag.startsWith('W/') ? etag : undefined,
    lastModified: res.header('last-modified') ?? undefined,
  };
}

/** The first request: `bytes=0-(blockSize-1)`; the size from Content-Range. */
async function fetchHead(req: Requester): Promise<Head> {
  const want = req.cfg.blockSize;
  return req.get({ Range: `bytes=0-${want - 1}` }, async (res) => {
    await req.checkStatus(res);
    req.checkEncoding(res);
    const { etag, lastModified } = validatorOf(res);
    const range = res.header('content-range') ?? '';
    if (res.status === 416) {
      const m = UNSATISFIED_RANGE.exec(range.trim());
      if (m && Number(m[1]) === 0) return { size: 0, etag, lastModified, first: new Uint8Array(0) };
      if (m && (!Number.isSafeInteger(Number(m[1])) || Number(m[1]) > req.cfg.maxSize)) {
        throw new BlockError('invalid-header', `the server announces a size of ${m[1]} bytes, more than accepted`, {
          path: req.path,
          field: 'Content-Range',
        });
      }
      throw req.error(`HTTP 416 with Content-Range "${range}"`, 'EIO');
    }
    if (res.status !== 206) {
      throw new BlockError(
        'not-supported',
        `the server ignores byte ranges (HTTP ${res.status} to a Range request): download the file first`,
        { path: req.path },
      );
    }
    const m = CONTENT_RANGE.exec(range.trim());
    if (!m || m[3] === '*' || Number(m[1]) !== 0) {
      throw req.error(`Content-Range "${range}" is not the range asked for (bytes 0-${want - 1}/size)`, 'EIO');
    }
    const size = Number(m[3]);
    const end = Number(m[2]);
    if (!Number.isSafeInteger(size) || size > req.cfg.maxSize) {
      throw new BlockError(
        'invalid-header',
        `the server announces a size of ${m[3]} bytes, more than the ${req.cfg.maxSize} accepted (option maxSize)`,
        { path: req.path, field: 'Content-Range' },
      );
    }
    if (end !== Math.min(want, size) - 1) {
      throw req.error(`Content-Range "${range}" is not the range asked for (bytes 0-${want - 1}/size)`, 'EIO');
    }
    const first = await req.body(res, new Uint8Array(end + 1));
    return { size, etag, lastModified, first };
  });
}

/** A sequential reader's stream: one request from `start` to the end of the object. */
interface SeqStream {
  start: number;
  /** The next byte its body delivers. */
  pos: number;
  /** Where the last read queued on it ends: a read there is the reader going on. */
  queued: number;
  held: Promise<HeldResponse>;
  /** Its reads, one after another. */
  chain: Promise<unknown>;
  dead: boolean;
}

/**
 * A read-only Storage over an HTTP(S) URL. Open with `HttpStorage.open(url,
 * options)` (one request); `stats` counts what it did.
 */
export class HttpStorage implements Storage {
  readonly readOnly = true;
  readonly capabilities: StorageCapabilities;
  readonly path: string;
  /** The validator every later request must match (ETag, else Last-Modified). */
  readonly etag: string | undefined;
  readonly lastModified: string | undefined;
  private readonly length: number;
  private readonly req: Requester;
  private readonly cfg: Config;
  /** Cached blocks, least recently used first. */
  private readonly cache = new Map<number, Uint8Array>();
  /** Blocks being fetched. */
  private readonly pending = new Map<number, Promise<Uint8Array>>();
  private closed = false;
  /** A sequential reader's stream (see startStream), and how many broke off (two: no more). */
  private stream: SeqStream | undefined;
  private streamFailures = 0;
  /** Where the last read ended, and the read-ahead window (blocks) a sequential reader has earned. */
  private lastEnd = -1;
  private window = 0;

  private constructor(req: Requester, head: Head) {
    this.req = req;
    this.cfg = req.cfg;
    this.path = req.path;
    this.length = head.size;
    this.etag = head.etag;
    this.lastModified = head.lastModified;
    const bs = this.cfg.blockSize;
    this.capabilities = storageCapabilities({
      remote: true,
      limits: { requestAlignment: 1, preferredTransfer: bs, maxTransfer: this.cfg.maxRequestBlocks * bs },
    });
    for (let i = 0; i * bs < head.first.length; i++) {
      this.remember(i, head.first.subarray(i * bs, Math.min(head.first.length, (i + 1) * bs)));
    }
  }

  /** Opens `url`: one ranged GET, which gives the size, the validator and the first block. */
  static async open(url: string, options: HttpStorageOptions = {}): Promise<HttpStorage> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new BlockError('invalid-argument', 'not a URL', { path: url });
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new BlockError('not-supported', `${parsed.protocol} URLs are not HTTP(S)`, { path: url });
    }
    return HttpStorage.openAt(url, url, options);
  }

  /**
   * Opens the object at the http(s) URL `url`, naming it `path` in errors and `this.path` (S3Storage
   * gives the `s3://` URL). No check of `url`'s scheme: for callers that built it.
   */
  static async openAt(url: string, path: string, options: HttpStorageOptions = {}): Promise<HttpStorage> {
    const req = new Requester(url, config(options), path);
    return new HttpStorage(req, await fetchHead(req));
  }

  /** The object's size in bytes, as the first response gave it. */
  get contentLength(): number {
    return this.length;
  }

  /** Requests made, cache hits, bytes received. */
  get stats(): Readonly<HttpStats> {
    return this.req.stats;
  }

  async size(): Promise<number> {
    this.checkOpen();
    return this.length;
  }

  async read(offset: number, into: Uint8Array): Promise<number> {
    this.checkOpen();
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new BlockError('out-of-range', `bad read offset ${offset}`, { path: this.path, offset });
    }
    const end = Math.min(this.length, offset + into.length);
    if (end <= offset) return 0;
    // Sequential access earns a read-ahead window that doubles, up to the option's size.
    const sequential = offset === this.lastEnd && this.cfg.readAheadBlocks > 0;
    this.window = sequential ? Math.min(this.cfg.readAheadBlocks, Math.max(1, this.window * 2)) : 0;
    this.lastEnd = end;
    const stream = this.stream;
    if (stream !== undefined) {
      if (offset === stream.queued) {
        await this.readFromStream(stream, offset, into.subarray(0, end - offset));
        return end - offset;
      }
      if (offset < stream.queued && end > stream.queued) {
        // The head of this read is cached or coming in blocks, the rest is the stream's.
        const split = stream.queued - offset;
        await Promise.all([
          this.readBlocks(offset, offset + split, into) ?? Promise.resolve(),
          this.readFromStream(stream, stream.queued, into.subarray(split, end - offset)),
        ]);
        return end - offset;
      }
      // Ahead of the stream, or a reader that is no longer sequential: the stream is of no use.
      if (offset > stream.queued || !sequential) this.endStream(stream);
    }
    const slow = this.readBlocks(offset, end, into);
    if (slow !== undefined) await slow;
    return end - offset;
  }

  /**
   * Bytes [offset, end) through the block cache (fetching what is missing), into `into` from its start.
   * All cached: done at once (undefined; a warm random reader pays no promise); else a promise.
   */
  private readBlocks(offset: number, end: number, into: Uint8Array): Promise<void> | undefined {
    const bs = this.cfg.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    // Fast path: every block cached (a warm cache): copy, no promise per block.
    let cached = true;
    for (let i = first; i <= last && cached; i++) cached = this.cache.has(i);
    if (cached) {
      for (let i = first; i <= last; i++) {
        const data = this.cache.get(i)!;
        this.cache.delete(i);
        this.cache.set(i, data);
        this.copyBlock(i, data, offset, end, into);
      }
      this.req.stats.hits += last - first + 1;
      this.readAheadFrom(last);
      return undefined;
    }
    const blocks = this.blocks(first, last);
    this.readAheadFrom(last);
    return (async () => {
      for (let i = first; i <= last; i++) this.copyBlock(i, await blocks.get(i)!, offset, end, into);
    })();
  }

  /**
   * A sequential reader whose window has grown to `readAhead` gets one request from the first block
   * after the cached and coming ones to the end of the object, read straight into its buffers as it
   * asks (no block cache, no copy, no request per window; the socket's flow control holds the server
   * back while the reader is busy), the way curl reads a file. Not for a reader that has read little.
   */
  private startStream(last: number): boolean {
    if (this.window < this.cfg.readAheadBlocks || this.streamFailures >= 2 || this.closed) return false;
    // A cache that holds the whole object keeps what a scan reads, for the reads after it (a stream
    // bypasses the cache); a smaller one would only be flushed by the scan.
    if (this.cfg.cacheBlocks * this.cfg.blockSize >= this.length) return false;
    const bs = this.cfg.blockSize;
    let next = last + 1;
    while (next * bs < this.length && (this.cache.has(next) || this.pending.has(next))) next++;
    const from = next * bs;
    // Too little left to be worth a connection of its own: read-ahead does it.
    if (this.length - from < 2 * this.cfg.readAheadBlocks * bs) return false;
    const to = this.length - 1;
    const held = this.req.hold(this.rangeHeaders(from, to), (res) => this.checkRangeAnswer(res, from, to));
    held.catch(() => undefined); // the reads that wait for it see the error
    this.stream = { start: from, pos: from, queued: from, held, chain: Promise.resolve(), dead: false };
    return true;
  }

  /** Reads `dst.length` bytes at `offset` (= stream.queued) from the stream, after the reads queued before. */
  private async readFromStream(stream: SeqStream, offset: number, dst: Uint8Array): Promise<void> {
    stream.queued = offset + dst.length;
    const run = stream.chain.then(async () => {
      if (stream.dead) throw new Error('the stream was closed');
      const held = await stream.held;
      const timer = setTimeout(() => held.abort(new Error(`no bytes within ${this.cfg.timeout} ms`)), this.cfg.timeout);
      try {
        const { got, more } = await held.res.readInto(dst);
        this.req.stats.bytes += got;
        stream.pos += got;
        if (got !== dst.length) throw new Error(`the body ended ${dst.length - got} bytes early`);
        if (!more) this.endStream(stream);
      } finally {
        clearTimeout(timer);
      }
    });
    stream.chain = run.catch(() => undefined);
    try {
      await run;
    } catch (err) {
      this.endStream(stream);
      // A typed error of the request (the object changed, ...) is the reader's; a stream that broke
      // off (network, a stall) is dropped and this read goes the block way, with its retries.
      if (err instanceof BlockError) throw err;
      this.streamFailures++;
      await this.readBlocks(offset, offset + dst.length, dst);
    }
  }

  private endStream(stream: SeqStream): void {
    stream.dead = true;
    if (this.stream === stream) this.stream = undefined;
    stream.held.then(
      (h) => h.close(),
      () => undefined,
    );
  }

  private copyBlock(i: number, data: Uint8Array, offset: number, end: number, into: Uint8Array): void {
    const blockStart = i * this.cfg.blockSize;
    const from = Math.max(offset, blockStart);
    const to = Math.min(end, blockStart + data.length);
    if (to < from) throw this.req.error(`block ${i} is shorter than the object`, 'EIO');
    into.set(data.subarray(from - blockStart, to - blockStart), from - offset);
  }

  /**
   * A sequential reader's window: blocks after `last` that are neither cached nor being fetched are
   * fetched now (in runs, not awaited), so that the next reads find them on the way or arrived.
   */
  private readAheadFrom(last: number): void {
    if (this.window <= 0 || this.stream !== undefined) return;
    if (this.startStream(last)) return;
    const lastBlock = Math.floor((this.length - 1) / this.cfg.blockSize);
    // The first block ahead that is neither cached nor coming; fetched (a whole window from there, in
    // one run) only once the reader is within half a window of it, so that requests stay window-sized.
    let next = last + 1;
    const horizon = Math.min(lastBlock, last + this.window);
    while (next <= horizon && (this.cache.has(next) || this.pending.has(next))) next++;
    if (next > horizon || next - last > Math.max(1, this.window >> 1)) return;
    const limit = Math.min(lastBlock, next + this.window - 1);
    let stop = next;
    while (stop < limit && !this.cache.has(stop + 1) && !this.pending.has(stop + 1)) stop++;
    this.fetchRun(next, stop);
  }

  /** A promise per block of [first, last]: cached, pending, or fetched now in coalesced requests. */
  private blocks(first: number, last: number): Map<number, Promise<Uint8Array>> {
    const out = new Map<number, Promise<Uint8Array>>();
    const lastBlock = Math.floor((this.length - 1) / this.cfg.blockSize);
    let runStart = -1;
    const flush = (to: number) => {
      if (runStart < 0) return;
      let stop = to;
      // Read-ahead joins the request that reaches the last block asked for.
      if (to === last && this.stream === undefined) {
        const limit = Math.min(lastBlock, last + this.window);
        while (stop < limit && !this.cache.has(stop + 1) && !this.pending.has(stop + 1)) stop++;
      }
      this.fetchRun(runStart, stop);
      runStart = -1;
    };
    for (let i = first; i <= last; i++) {
      const cached = this.cache.get(i);
      if (cached) {
        flush(i - 1);
        this.cache.delete(i);
        this.cache.set(i, cached);
        this.req.stats.hits++;
        out.set(i, Promise.resolve(cached));
        continue;
      }
      const pending = this.pending.get(i);
      if (pending !== undefined) {
        flush(i - 1);
        out.set(i, pending);
        continue;
      }
      if (runStart < 0) runStart = i;
    }
    flush(last);
    for (let i = first; i <= last; i++) if (!out.has(i)) out.set(i, this.pending.get(i)!);
    return out;
  }

  /** Fetches blocks [a, b] (split by maxRequest), registering a pending promise for each. */
  private fetchRun(a: number, b: number): void {
    for (let start = a; start <= b; start += this.cfg.maxRequestBlocks) {
      const stop = Math.min(b, start + this.cfg.maxRequestBlocks - 1);
      // One promise per block, settled as soon as its bytes have arrived (a reader of the first block
      // of a long request does not wait for the whole body).
      const settle: Array<{ resolve: (d: Uint8Array) => void; reject: (e: unknown) => void; done: boolean }> = [];
      for (let i = start; i <= stop; i++) {
        let resolve!: (d: Uint8Array) => void;
        let reject!: (e: unknown) => void;
        const p = new Promise<Uint8Array>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        p.catch(() => undefined); // awaited by the reader; not an unhandled rejection when only read-ahead
        this.pending.set(i, p);
        settle.push({ resolve, reject, done: false });
      }
      const onBlock = (i: number, data: Uint8Array) => {
        const s = settle[i - start]!;
        if (s.done) return; // a retry delivers it again: the first copy stands (same validator)
        s.done = true;
        if (this.pending.get(i) !== undefined) this.pending.delete(i);
        if (!this.closed) this.remember(i, data);
        s.resolve(data);
      };
      this.fetchBlocks(start, stop, onBlock).then(
        () => undefined,
        (err: unknown) => {
          for (let i = start; i <= stop; i++) {
            const s = settle[i - start]!;
            if (s.done) continue;
            s.done = true;
            this.pending.delete(i);
            s.reject(err);
          }
        },
      );
    }
  }

  private async fetchBlocks(a: number, b: number, onBlock: (i: number, data: Uint8Array) => void): Promise<void> {
    const bs = this.cfg.blockSize;
    const from = a * bs;
    const to = Math.min(this.length, (b + 1) * bs) - 1;
    let next = a;
    await this.req.get(this.rangeHeaders(from, to), async (res) => {
      await this.checkRangeAnswer(res, from, to);
      const data = new Uint8Array(to - from + 1);
      return this.req.body(res, data, (got) => {
        // Blocks complete so far go out now.
        while (next <= b && (got >= (next - a + 1) * bs || got === data.length)) {
          const k = next - a;
          onBlock(next, data.subarray(k * bs, Math.min(data.length, (k + 1) * bs)));
          next++;
        }
      });
    });
    this.req.stats.fetchedBlocks += b - a + 1;
  }

  /** A range request's headers: the range and the validator it must still match. */
  private rangeHeaders(from: number, to: number | undefined): Record<string, string> {
    const headers: Record<string, string> = { Range: `bytes=${from}-${to ?? ''}` };
    const validator = this.etag ?? this.lastModified;
    if (validator !== undefined) headers['If-Range'] = validator;
    if (this.etag !== undefined) headers['If-Match'] = this.etag;
    else if (this.lastModified !== undefined) headers['If-Unmodified-Since'] = this.lastModified;
    return headers;
  }

  /** Refuses (typed) an answer that is not bytes [from, to] of the object opened. */
  private async checkRangeAnswer(res: TransportResponse, from: number, to: number): Promise<void> {
    await this.req.checkStatus(res);
    if (res.status !== 206) {
      throw this.req.error(
        `HTTP ${res.status} instead of 206 to a range request: the object changed or the server ignores ranges`,
        res.status === 200 ? 'ESTALE' : 'EIO',
      );
    }
    this.req.checkEncoding(res);
    const { etag, lastModified } = validatorOf(res);
    if (this.etag !== undefined && etag !== undefined && etag !== this.etag) {
      throw this.req.error(`the object changed (ETag ${etag}, opened as ${this.etag})`, 'ESTALE');
    }
    if (
      this.etag === undefined
      && this.lastModified !== undefined
      && lastModified !== undefined
      && lastModified !== this.lastModified
    ) {
      throw this.req.error(
        `the object changed (Last-Modified ${lastModified}, opened as ${this.lastModified})`,
        'ESTALE',
      );
    }
    const range = res.header('content-range') ?? '';
    const m = CONTENT_RANGE.exec(range.trim());
    if (!m || Number(m[1]) !== from || Number(m[2]) !== to || (m[3] !== '*' && Number(m[3]) !== this.length)) {
      const changed = m !== null && m[3] !== '*' && Number(m[3]) !== this.length;
      throw this.req.error(
        `Content-Range "${range}" does not match the request (bytes ${from}-${to}/${this.length})`,
        changed ? 'ESTALE' : 'EIO',
      );
    }
  }

  private remember(index: number, data: Uint8Array): void {
    this.cache.delete(index);
    this.cache.set(index, data);
    while (this.cache.size > this.cfg.cacheBlocks) {
      const oldest = this.cache.keys().next().value as number;
      this.cache.delete(oldest);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new BlockError('closed', 'the storage is closed', { path: this.path });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.stream) this.endStream(this.stream);
    this.cache.clear();
  }
}

/** Opens `url` as a read-only storage (`HttpStorage.open`). */
export function openHttp(url: string, options?: HttpStorageOptions): Promise<HttpStorage> {
  return HttpStorage.open(url, options);
}

/** For HttpVfs: a stat's first request, handed to the open that follows it. */
export async function probeUrl(url: string, options: HttpStorageOptions): Promise<HttpStorage> {
  return HttpStorage.open(url, options);
}
