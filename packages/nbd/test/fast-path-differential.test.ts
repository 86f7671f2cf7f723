/**
 * Review of the small-read fast path (issue 14): hostile request headers (unknown commands and
 * flags, lengths 0, 2^32-1 and past the maximum, offsets at and past the end up to 2^53-1), split
 * at random byte offsets, get the same replies (cookies, errors, bytes) and the same end of the
 * connection whether the fast path (a stream that shows its chunks) or the general path reads them.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, openImage, type Image } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { concat, encodeRequest, Transmission } from '../src/index.js';
import { pipe } from './pipe.js';
import { assemble, type Reply, simpleReply, structuredReply } from './wire.js';

const registry = new DriverRegistry([rawDriver]);
async function runOnce(
  img: Image,
  peek: boolean,
  structured: boolean,
  bytes: Uint8Array,
  n: number,
  lens: Map<bigint, number>,
  splits: number[],
) {
  const [client, server] = pipe({ peek });
  const t = new Transmission(server, img, { structured, contexts: [] }, { maxInFlight: 4, maxBytesInFlight: 1 << 20 });
  const done = t.run().then((f) => {
    server.close();
    return f;
  });
  void (async () => {
    let p = 0;
    for (const s of splits) {
      if (p >= bytes.length) break;
      await client.write(bytes.subarray(p, p + s));
      p += s;
    }
    if (p < bytes.length) await client.write(bytes.subarray(p));
    client.endWrites();
  })();
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let r: Reply | null;
    try {
      r = structured ? await structuredReply(client) : await simpleReply(client, (c) => lens.get(c) ?? 0);
    } catch (e) {
      throw new Error(`peek ${peek} after ${out.join(' ')}: ${e}`);
    }
    if (r === null) {
      out.push('EOF');
      break;
    }
    let body = '';
    if (r.error === 0 && lens.has(r.cookie)) {
      const d = structured ? assemble(r, Number(lens.get(r.cookie + 1000000n) ?? 0), lens.get(r.cookie)!) : r.payload!;
      body = Buffer.from(d).toString('hex').slice(0, 64) + d.length;
    }
    out.push(`${r.cookie}:${r.error}:${body}`);
  }
  const failure = await done;
  return { out: out.sort(), failure: failure === undefined ? '' : String(failure) };
}
describe('fast vs general path on hostile headers', () => {
  for (let round = 0; round < 200; round++)
    it(`round ${round}`, async () => {
      let seed = round * 977 + 1;
      const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
      const ri = (n: number) => Math.floor(rnd() * n);
      const fileSize = 64 * 1024 + ri(3) * 511;
      const vfs = new MemoryVfs();
      const data = new Uint8Array(fileSize);
      for (let i = 0; i < fileSize; i++) data[i] = (i * 31 + 7) & 0xff;
      vfs.put('/a.raw', data);
      const img = await openImage('/a.raw', { registry, vfs, format: 'raw', readOnly: true });
      const size = img.size;
      const structured = rnd() < 0.5;
      const parts: Uint8Array[] = [];
      const lens = new Map<bigint, number>();
      const N = 40;
      for (let c = 1; c <= N; c++) {
        const k = rnd();
        const type = k < 0.8 ? 0 : [3, 4, 6, 7, 9, 99][ri(6)]!;
        const flags = rnd() < 0.7 ? 0 : [1, 2, 4, 8, 16, 0xffff][ri(6)]!;
        const length = [0, 1, 511, 4096, 16384, 16385, size, 65536, 2 ** 32 - 1, 33 * 1024 * 1024][ri(10)]!;
        const offset = [0, size - 1, size, size - 4096, 2 ** 40, 2 ** 53 - 1, 1, ri(size)][ri(8)]!;
        const b = encodeRequest({ type, flags, cookie: BigInt(c), offset, length: Math.min(length, 2 ** 32 - 1) });
        parts.push(b);
        if (
          type === 0
          && (flags === 0 || flags === 1 || (structured && flags === 4))
          && offset + length <= size
          && length <= 32 * 1024 * 1024
        ) {
          lens.set(BigInt(c), length);
          lens.set(BigInt(c) + 1000000n, offset);
        }
      }
      const all = concat(parts);
      const splits: number[] = [];
      for (let i = 0; i < 30; i++) splits.push(1 + ri(rnd() < 0.5 ? 30 : 300));
      const a = await runOnce(img, true, structured, all, N, lens, splits);
      const b = await runOnce(img, false, structured, all, N, lens, splits);
      expect(a).toEqual(b);
      await img.close();
    }, 20000);
});
