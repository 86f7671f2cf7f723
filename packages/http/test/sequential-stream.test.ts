/**
 * A sequential reader of an object larger than the cache: once its read-ahead window has grown, the
 * rest comes in one request read straight into its buffers (few requests, every byte once, at most
 * two requests in flight), on both transports; a stream that breaks off is replaced by block
 * requests (right bytes); a reader that jumps away drops the stream; a cache that holds the whole
 * object keeps the scan (no stream).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  fetchTransport,
  HttpStorage,
  type HttpStorageOptions,
  type RangeTransport,
  type TransportRequest,
  type TransportResponse,
} from '@blk/http';
import { nodeTransport } from '@blk/http/node';
import { testTimeScale } from '@blk/faults';
import { TestServer, pattern, sameBytes } from './server.js';

const MiB = 1024 * 1024;
const SIZE = 48 * MiB + 4321;
const DATA = pattern(SIZE, 3);

let server: TestServer;
beforeAll(async () => {
  server = await new TestServer().start();
});
afterAll(() => server.stop());
beforeEach(() => {
  server.reset();
  server.put('/big.img', DATA);
});

/** A stream's range: to the end of the object, longer than any block request (maxRequest, 8 MiB). */
function isStream(range: string | undefined): boolean {
  const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
  return m !== null && Number(m[2]) === SIZE - 1 && Number(m[2]) - Number(m[1]) + 1 > 8 * MiB;
}

/** Reads the whole object in `req`-byte reads; returns the bytes. */
async function scan(s: HttpStorage, req = MiB): Promise<Uint8Array> {
  const out = new Uint8Array(SIZE);
  for (let off = 0; off < SIZE; off += req) await s.read(off, out.subarray(off, Math.min(SIZE, off + req)));
  return out;
}

describe.each([
  ['fetch', () => fetchTransport(globalThis.fetch)],
  ['node sockets', () => nodeTransport()],
])('a sequential scan over %s', (_name, make) => {
  let transport: RangeTransport;
  beforeAll(() => {
    transport = make();
  });
  const open = (o: HttpStorageOptions = {}) =>
    HttpStorage.open(server.url('/big.img'), { cacheSize: 8 * MiB, retryDelay: 1, transport, ...o });

  it('streams the rest in one request once the window has grown: few requests, each byte once', async () => {
    const s = await open();
    expect(sameBytes(await scan(s), DATA)).toBe(true);
    // Open, the read-ahead warm-up (windows of 1, 2, 4, ... blocks up to 8 MiB), then one stream
    // to the end. A request per 8 MiB window (the old way) takes 11.
    expect(server.requests()).toBeLessThanOrEqual(8);
    // One stream, and nothing asked after it but the blocks before it: a block request sent just before
    // the stream may be logged after it (the server logs as it answers; a new connection's first request
    // can be answered after a kept-alive one's), so the log's order alone does not say which came last.
    const streams = server.log.filter((r) => isStream(r.range));
    expect(streams).toHaveLength(1);
    const from = (r: { range?: string }) => Number(/^bytes=(\d+)-/.exec(r.range!)![1]);
    const streamFrom = from(streams[0]!);
    expect(streamFrom).toBeLessThanOrEqual(24 * MiB);
    for (const r of server.log.slice(server.log.indexOf(streams[0]!) + 1)) expect(from(r)).toBeLessThan(streamFrom);
    expect(server.maxInFlight).toBeLessThanOrEqual(2);
    expect(s.stats.bytes).toBe(SIZE); // nothing fetched twice, nothing wasted
    await s.close();
  });

  it('reads that are not a multiple of the block size, two at a time, still stream and stay right', async () => {
    const s = await open();
    const out = new Uint8Array(SIZE);
    const req = 300_007;
    for (let off = 0; off < SIZE; off += 2 * req) {
      await Promise.all([
        s.read(off, out.subarray(off, Math.min(SIZE, off + req))),
        off + req < SIZE ? s.read(off + req, out.subarray(off + req, Math.min(SIZE, off + 2 * req))) : 0,
      ]);
    }
    expect(sameBytes(out, DATA)).toBe(true);
    expect(server.requests()).toBeLessThanOrEqual(10);
    await s.close();
  });

  it('a reader that jumps away drops the stream; what it reads there is right', async () => {
    const s = await open();
    const out = new Uint8Array(16 * MiB);
    for (let off = 0; off < out.length; off += MiB) await s.read(off, out.subarray(off, off + MiB));
    // The stream, whatever the order in which the server answered it and the blocks sent just before it.
    const streams = server.log.filter((r) => isStream(r.range));
    expect(streams).toHaveLength(1);
    const streamed = streams[0]!.range!;
    const far = new Uint8Array(4096);
    await s.read(40 * MiB + 5, far);
    expect(sameBytes(far, DATA.subarray(40 * MiB + 5, 40 * MiB + 5 + 4096))).toBe(true);
    expect(server.log.at(-1)!.range).not.toBe(streamed); // a block request, not the stream
    await s.close();
  });

  it('a cache that holds the whole object keeps the scan: no stream, a second scan costs nothing', async () => {
    const s = await open({ cacheSize: 64 * MiB });
    expect(sameBytes(await scan(s), DATA)).toBe(true);
    expect(server.log.filter((r) => isStream(r.range))).toHaveLength(0);
    server.reset();
    expect(sameBytes(await scan(s), DATA)).toBe(true);
    expect(server.requests()).toBe(0);
    await s.close();
  });
});

/**
 * A fetch transport whose streams (ranges to the end) read their body through `read`: `n` counts that
 * stream's reads from 1; `pass()` is the real read, `request` the stream's request.
 */
function streamsReading(
  read: (
    n: number,
    pass: () => ReturnType<TransportResponse['readInto']>,
    request: TransportRequest,
  ) => ReturnType<TransportResponse['readInto']>,
): RangeTransport {
  const inner = fetchTransport(globalThis.fetch);
  return async (request) => {
    const res = await inner(request);
    if (!isStream(request.headers.Range)) return res;
    let reads = 0;
    return {
      status: res.status,
      statusText: res.statusText,
      header: (n) => res.header(n),
      discard: () => res.discard(),
      readInto: (into, progress) => read(++reads, () => res.readInto(into, progress), request),
    };
  };
}

describe('a stream that breaks off', () => {
  it('is replaced by block requests: right bytes, and no stream after two breaks', async () => {
    let streams = 0;
    // Streams (ranges to the end, after the first) break after 3 reads.
    const breaking = streamsReading((n, pass) => {
      if (n === 1) streams++;
      if (n > 3) return Promise.reject(new Error('connection reset'));
      return pass();
    });
    const s = await HttpStorage.open(server.url('/big.img'), { cacheSize: 8 * MiB, transport: breaking });
    expect(sameBytes(await scan(s), DATA)).toBe(true);
    expect(streams).toBe(2);
    await s.close();
  });
});

describe('a stream that stalls', () => {
  it('is dropped after `timeout` ms without bytes, and the read goes the block way', async () => {
    let stalled = 0;
    // Streams deliver their first read, then nothing until the request is aborted.
    const stalling = streamsReading((n, pass, request) => {
      if (n === 1) return pass();
      stalled++;
      return new Promise((_resolve, reject) => {
        request.signal.addEventListener('abort', () => reject(request.signal.reason), { once: true });
      });
    });
    // The limit is also the whole time a block request (up to 8 MiB here) may take: at 300 ms one went
    // past it on a loaded 2-core machine (ETIMEDOUT, measured 0.1-2.7 s per request at a load of 20).
    const timeout = Math.round(1000 * testTimeScale());
    const s = await HttpStorage.open(server.url('/big.img'), { cacheSize: 8 * MiB, transport: stalling, timeout });
    const t0 = performance.now();
    expect(sameBytes(await scan(s), DATA)).toBe(true);
    expect(stalled).toBe(2); // two streams stalled, then block requests only
    expect(performance.now() - t0).toBeGreaterThan(2 * timeout - 50);
    await s.close();
  });
});
