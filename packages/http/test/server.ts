/**
 * An in-process HTTP server for the tests (node:http here only): serves
 * byte arrays with single byte ranges, ETag/Last-Modified, If-Range and
 * If-Match, counts requests, and misbehaves on demand.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

export interface Served {
  data: Uint8Array;
  etag?: string;
  lastModified?: string;
}

export interface Knobs {
  /** Answer 200 with the whole body, ignoring Range. */
  ignoreRange: boolean;
  /** Ignore If-Range and If-Match (a careless server). */
  ignoreConditions: boolean;
  /** Send the body gzipped with Content-Encoding: gzip. */
  gzip: boolean;
  /** Answer the next N requests with 503. */
  fail503: number;
  /** Wait this long before answering. */
  delayMs: number;
  /** Shift the start in Content-Range by this much (a wrong answer). */
  skewRange: number;
  /** Break the connection in the middle of the next N bodies. */
  dropBodies: number;
  /** Announce this total size in Content-Range instead of the real one (a lying or huge object). */
  announceSize: string | undefined;
}

export interface Logged {
  path: string;
  range: string | undefined;
  status: number;
}

export class TestServer {
  readonly files = new Map<string, Served>();
  readonly log: Logged[] = [];
  knobs: Knobs = {
    ignoreRange: false,
    ignoreConditions: false,
    gzip: false,
    fail503: 0,
    delayMs: 0,
    skewRange: 0,
    dropBodies: 0,
    announceSize: undefined,
  };
  inFlight = 0;
  maxInFlight = 0;
  private server!: http.Server;
  origin = '';

  /** `tls`: serve HTTPS with this key and certificate (PEM). */
  async start(host = '127.0.0.1', tls?: { key: string; cert: string }): Promise<this> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      void this.handle(req, res);
    };
    this.server = tls ? https.createServer({ key: tls.key, cert: tls.cert }, handler) : http.createServer(handler);
    await new Promise<void>((resolve) => this.server.listen(0, host, resolve));
    const { port } = this.server.address() as AddressInfo;
    this.origin = `${tls ? 'https' : 'http'}://${host}:${port}`;
    return this;
  }

  url(path: string): string {
    return `${this.origin}${path}`;
  }

  put(path: string, data: Uint8Array, etag: string = `"${path}-${data.length}-1"`, lastModified?: string): void {
    this.files.set(path, { data, etag, ...(lastModified !== undefined ? { lastModified } : {}) });
  }

  requests(path?: string): number {
    return path === undefined ? this.log.length : this.log.filter((l) => l.path === path).length;
  }

  reset(): void {
    this.log.length = 0;
    this.maxInFlight = 0;
    this.knobs = {
      ignoreRange: false,
      ignoreConditions: false,
      gzip: false,
      fail503: 0,
      delayMs: 0,
      skewRange: 0,
      dropBodies: 0,
      announceSize: undefined,
    };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const range = req.headers.range;
    const send = (status: number, headers: Record<string, string>, body?: Uint8Array) => {
      this.log.push({ path, range, status });
      res.writeHead(status, headers);
      res.end(body);
    };
    try {
      if (this.knobs.delayMs > 0) await new Promise((r) => setTimeout(r, this.knobs.delayMs));
      if (res.destroyed) return;
      if (this.knobs.fail503 > 0) {
        this.knobs.fail503--;
        return send(503, { 'Content-Length': '0' });
      }
      const file = this.files.get(path);
      if (!file) return send(404, { 'Content-Length': '0' });
      const validators: Record<string, string> = {};
      if (file.etag !== undefined) validators.ETag = file.etag;
      if (file.lastModified !== undefined) validators['Last-Modified'] = file.lastModified;
      const ifMatch = req.headers['if-match'];
      if (!this.knobs.ignoreConditions && ifMatch !== undefined && ifMatch !== '*' && ifMatch !== file.etag) {
        return send(412, { ...validators, 'Content-Length': '0' });
      }
      const ifRange = req.headers['if-range'];
      const rangeOk =
        this.knobs.ignoreConditions
        || ifRange === undefined
        || ifRange === file.etag
        || (file.lastModified !== undefined && ifRange === file.lastModified);
      const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
      const size = file.data.length;
      const body = (bytes: Uint8Array, headers: Record<string, string>, status: number) => {
        const out = this.knobs.gzip ? new Uint8Array(gzipSync(bytes)) : bytes;
        const h: Record<string, string> = { ...validators, ...headers, 'Content-Length': String(out.length) };
        if (this.knobs.gzip) h['Content-Encoding'] = 'gzip';
        if (this.knobs.dropBodies > 0 && out.length > 1) {
          this.knobs.dropBodies--;
          this.log.push({ path, range, status });
          res.writeHead(status, h);
          res.write(out.subarray(0, out.length >> 1), () => res.destroy());
          return;
        }
        send(status, h, out);
      };
      if (!m || this.knobs.ignoreRange || !rangeOk) return body(file.data, {}, 200);
      const start = Number(m[1]);
      if (start >= size) return send(416, { ...validators, 'Content-Range': `bytes */${size}`, 'Content-Length': '0' });
      const end = Math.min(size - 1, m[2] === '' ? size - 1 : Number(m[2]));
      const shown = start + this.knobs.skewRange;
      return body(
        file.data.subarray(start, end + 1),
        {
          'Content-Range': `bytes ${shown}-${end + this.knobs.skewRange}/${this.knobs.announceSize ?? size}`,
          'Accept-Ranges': 'bytes',
        },
        206,
      );
    } finally {
      this.inFlight--;
    }
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Deterministic bytes: byte i of a file is a function of i and the seed. */
export function pattern(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Byte equality of two arrays (vitest's toEqual walks big typed arrays slowly). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
