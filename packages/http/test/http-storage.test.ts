import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fetchTransport, HttpStorage, type HttpStorageOptions, type RangeTransport } from '@blk/http';
import { nodeTransport } from '@blk/http/node';
import { TestServer, pattern, sameBytes } from './server.js';

const SIZE = 1024 * 1024 + 123; // not a multiple of the block size
const DATA = pattern(SIZE, 7);
const BS = 4096;

let server: TestServer;
beforeAll(async () => {
  server = await new TestServer().start();
});
afterAll(() => server.stop());
beforeEach(async () => {
  // Answers an earlier test left delayed (its timeout test) must not count as this test's requests.
  for (let i = 0; i < 300 && server.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
  server.reset();
  server.put('/disk.img', DATA);
});

// Every test runs over both transports: fetch (browsers; Node's undici) and Node's own sockets.
let transport: RangeTransport;
const open = (o: HttpStorageOptions = {}) =>
  HttpStorage.open(server.url('/disk.img'), { blockSize: BS, retryDelay: 1, transport, ...o });

async function read(s: HttpStorage, offset: number, length: number): Promise<Uint8Array> {
  const into = new Uint8Array(length);
  const n = await s.read(offset, into);
  return into.subarray(0, n);
}

describe.each([
  ['fetch', () => fetchTransport(globalThis.fetch)],
  ['node sockets', () => nodeTransport()],
])('HttpStorage over %s', (_name, make) => {
  beforeAll(() => {
    transport = make();
  });
  it('opens with one ranged GET: size, validator, capabilities, and the first block cached', async () => {
    const s = await open();
    expect(server.requests()).toBe(1);
    expect(server.log[0]!.range).toBe(`bytes=0-${BS - 1}`);
    expect(await s.size()).toBe(SIZE);
    expect(s.etag).toBe(`"/disk.img-${SIZE}-1"`);
    expect(s.capabilities).toMatchObject({ write: false, flush: false, remote: true, syncRead: false });
    expect(s.readOnly).toBe(true);
    expect(sameBytes(await read(s, 10, 100), DATA.subarray(10, 110))).toBe(true);
    expect(server.requests()).toBe(1); // a cache hit
    expect(s.stats.hits).toBe(1);
  });

  it('coalesces adjacent missing blocks into one request, and serves repeats from the cache', async () => {
    const s = await open({ readAhead: 0 });
    const got = await read(s, 5 * BS + 17, 10 * BS); // blocks 5..15: one request
    expect(sameBytes(got, DATA.subarray(5 * BS + 17, 15 * BS + 17))).toBe(true);
    expect(server.requests()).toBe(2);
    expect(server.log[1]!.range).toBe(`bytes=${5 * BS}-${16 * BS - 1}`);
    // Cached block 10 splits the run: 3..9 and 11..12 are two requests.
    await read(s, 10 * BS, 1);
    server.reset();
    await read(s, 20 * BS, 3 * BS); // 20..22 missing: one request
    expect(server.requests()).toBe(1);
    expect(sameBytes(await read(s, 20 * BS, 3 * BS), DATA.subarray(20 * BS, 23 * BS))).toBe(true);
    expect(server.requests()).toBe(1);
  });

  it('reads the tail, past the end and at the end', async () => {
    const s = await open();
    expect(sameBytes(await read(s, SIZE - 50, 100), DATA.subarray(SIZE - 50))).toBe(true);
    expect(await read(s, SIZE + 10, 100)).toHaveLength(0);
  });

  it('reads ahead for a sequential reader: far fewer requests than reads, right bytes', async () => {
    const s = await open({ readAhead: 64 * 1024 });
    const out = new Uint8Array(SIZE);
    let reads = 0;
    for (let off = 0; off < SIZE; off += BS) {
      await s.read(off, out.subarray(off, Math.min(SIZE, off + BS)));
      reads++;
    }
    expect(sameBytes(out, DATA)).toBe(true);
    // 257 reads; the window doubles to 16 blocks: about 257/17 requests.
    expect(server.requests()).toBeLessThan(25);
    expect(reads).toBe(257);
    // Without read-ahead every block is a request.
    server.reset();
    const plain = await open({ readAhead: 0 });
    for (let off = 0; off < 16 * BS; off += BS) await plain.read(off, new Uint8Array(BS));
    expect(server.requests()).toBe(16); // open + 15 misses
  });

  it('keeps at most maxInFlight requests under way, and one fetch per block for concurrent readers', async () => {
    const s = await open({ maxInFlight: 2, readAhead: 0 });
    server.reset();
    server.knobs.delayMs = 20;
    const offsets = Array.from({ length: 12 }, (_, i) => (3 + i * 7) * BS);
    const results = await Promise.all(offsets.map((o) => read(s, o, BS)));
    results.forEach((r, i) => {
      expect(sameBytes(r, DATA.subarray(offsets[i]!, offsets[i]! + BS))).toBe(true);
    });
    expect(server.maxInFlight).toBeLessThanOrEqual(2);
    expect(server.requests()).toBe(12);
    server.reset();
    await Promise.all([read(s, 200 * BS, BS), read(s, 200 * BS, BS), read(s, 200 * BS + 5, 9)]);
    expect(server.requests()).toBe(1);
  });

  it('evicts the least recently used blocks beyond cacheSize', async () => {
    const s = await open({ cacheSize: 4 * BS, readAhead: 0 });
    for (let b = 10; b < 16; b++) await read(s, b * BS, 1);
    server.reset();
    await read(s, 15 * BS, 1); // still cached
    expect(server.requests()).toBe(0);
    await read(s, 10 * BS, 1); // evicted
    expect(server.requests()).toBe(1);
  });

  it('retries 5xx answers with backoff, then succeeds', async () => {
    server.knobs.fail503 = 2;
    const s = await open();
    expect(s.stats.retries).toBe(2);
    server.knobs.fail503 = 3;
    expect(sameBytes(await read(s, 100 * BS, 10), DATA.subarray(100 * BS, 100 * BS + 10))).toBe(true);
    expect(s.stats.retries).toBe(5);
  });

  it('retries a body broken off mid-transfer, and returns the right bytes', async () => {
    const s = await open({ readAhead: 0 });
    server.knobs.dropBodies = 2;
    const got = await read(s, 70 * BS, 5 * BS);
    expect(sameBytes(got, DATA.subarray(70 * BS, 75 * BS))).toBe(true);
    expect(s.stats.retries).toBe(2);
  });

  it('gives up after `retries` with a typed io error', async () => {
    const s = await open({ retries: 2 });
    server.reset();
    server.knobs.fail503 = 100;
    await expect(read(s, 50 * BS, 10)).rejects.toMatchObject({ name: 'BlockError', kind: 'io', code: 'EIO' });
    expect(server.requests()).toBe(3);
  });

  it('refuses a server that ignores ranges (200 to the first request)', async () => {
    server.knobs.ignoreRange = true;
    await expect(open()).rejects.toMatchObject({ kind: 'not-supported' });
  });

  it('fails, never returns other bytes, when the object changes mid-read (If-Match: 412)', async () => {
    const s = await open({ readAhead: 0 });
    server.put('/disk.img', pattern(SIZE, 8), '"v2"');
    await expect(read(s, 40 * BS, 10)).rejects.toMatchObject({ kind: 'io', code: 'ESTALE' });
    expect(server.log.at(-1)!.status).toBe(412);
  });

  it('fails when the object changes on a server that ignores the conditions (ETag compared)', async () => {
    const s = await open({ readAhead: 0 });
    server.knobs.ignoreConditions = true;
    server.put('/disk.img', pattern(SIZE, 8), '"v2"');
    await expect(read(s, 40 * BS, 10)).rejects.toMatchObject({ kind: 'io', code: 'ESTALE' });
  });

  it('fails when the object changes with only Last-Modified (If-Range gives 200)', async () => {
    server.files.set('/lm.img', { data: DATA, lastModified: 'Sun, 06 Dec 2026 10:00:00 GMT' });
    const s = await HttpStorage.open(server.url('/lm.img'), { blockSize: BS, readAhead: 0, transport });
    expect(s.etag).toBeUndefined();
    expect(sameBytes(await read(s, 30 * BS, 4), DATA.subarray(30 * BS, 30 * BS + 4))).toBe(true);
    server.files.set('/lm.img', { data: pattern(SIZE, 9), lastModified: 'Sun, 06 Dec 2026 11:00:00 GMT' });
    await expect(read(s, 60 * BS, 4)).rejects.toMatchObject({ kind: 'io', code: 'ESTALE' });
  });

  it('fails when a later answer is 200 instead of 206', async () => {
    const s = await open({ readAhead: 0 });
    server.knobs.ignoreRange = true;
    await expect(read(s, 40 * BS, 10)).rejects.toMatchObject({ kind: 'io' });
  });

  it('refuses a compressed body, at open and later', async () => {
    server.knobs.gzip = true;
    await expect(open()).rejects.toMatchObject({ kind: 'io', message: expect.stringContaining('gzip') });
    server.knobs.gzip = false;
    const s = await open({ readAhead: 0 });
    server.knobs.gzip = true;
    await expect(read(s, 40 * BS, 10)).rejects.toMatchObject({ kind: 'io', message: expect.stringContaining('gzip') });
  });

  it('refuses a Content-Range that is not the one asked for', async () => {
    const s = await open({ readAhead: 0 });
    server.knobs.skewRange = 512;
    await expect(read(s, 40 * BS, 10)).rejects.toMatchObject({
      kind: 'io',
      message: expect.stringContaining('Content-Range'),
    });
  });

  it('times out a slow answer with io ETIMEDOUT, and stops on the caller’s AbortSignal', async () => {
    // The limit holds for the open's own request too (answered at once): 600 ms leaves a loaded machine
    // room for it (150 ms left little), and stays well below the 2 s the server then waits.
    const s = await open({ timeout: 600, readAhead: 0 });
    server.knobs.delayMs = 2000;
    await expect(read(s, 40 * BS, 10)).rejects.toMatchObject({ kind: 'io', code: 'ETIMEDOUT' });
    const controller = new AbortController();
    server.knobs.delayMs = 0;
    const t = await open({ signal: controller.signal, readAhead: 0 });
    server.knobs.delayMs = 2000;
    const pending = read(t, 40 * BS, 10);
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toMatchObject({ kind: 'aborted' });
  });

  it('maps 404 to io ENOENT, an empty file to size 0, and refuses use after close', async () => {
    await expect(HttpStorage.open(server.url('/missing'), { transport })).rejects.toMatchObject({
      kind: 'io',
      code: 'ENOENT',
    });
    server.put('/empty', new Uint8Array(0));
    const e = await HttpStorage.open(server.url('/empty'), { transport });
    expect(await e.size()).toBe(0);
    const s = await open();
    await s.close();
    await expect(read(s, 0, 1)).rejects.toMatchObject({ kind: 'closed' });
  });
});
