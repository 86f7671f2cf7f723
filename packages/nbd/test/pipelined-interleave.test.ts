/**
 * Review of the small-read fast path (issue 14): a client pipelines reads, writes and write-zeroes
 * over overlapping ranges, cut into chunks at random byte offsets (headers and payloads split, runs of
 * 1-byte chunks), with synchronous or asynchronous storage, random in-flight and byte budgets, small
 * read pieces and sparse-read thresholds. Requests are issued in arrival order, so every read must
 * see exactly the writes that arrived before it (a sequential model), whichever path took it.
 */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  FilterStorage,
  MemoryVfs,
  openImage,
  type Storage,
  type StorageCapabilities,
  storageCapabilities,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { CMD, CMD_FLAG, concat } from '../src/index.js';
import { FilterVfs } from '../../core/test/fixtures/contract-doc.js';
import { assemble, req, servePipe, simpleReply, structuredReply } from './wire.js';

const registry = new DriverRegistry([rawDriver]);
let seed = 1;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x80000000;
};
const ri = (n: number) => Math.floor(rnd() * n);

class S extends FilterStorage {
  constructor(
    inner: Storage,
    private sync: boolean,
  ) {
    super(inner);
  }
  override async read(o: number, into: Uint8Array): Promise<number> {
    if (rnd() < 0.5) await new Promise((r) => setTimeout(r, ri(3)));
    return this.next.read(o, into);
  }
  override async write(o: number, d: Uint8Array): Promise<void> {
    if (rnd() < 0.5) await new Promise((r) => setTimeout(r, ri(3)));
    return this.next.write(o, d);
  }
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    const caps = super.filterCapabilities(below);
    return storageCapabilities({ ...caps, syncRead: caps.syncRead && this.sync });
  }
}

describe('pipelined READ/WRITE/WRITE_ZEROES over overlapping ranges, split at random byte offsets', () => {
  for (let round = 0; round < 12; round++) {
    it(`round ${round}`, async () => {
      seed = round * 7919 + 3;
      const size = 512 * 1024;
      const model = new Uint8Array(size);
      for (let i = 0; i < size; i++) model[i] = (i * 7 + (i >> 9)) & 0xff;
      const vfs = new MemoryVfs();
      vfs.put('/a.raw', model.slice());
      const sync = rnd() < 0.6;
      const img = await openImage('/a.raw', {
        registry,
        vfs: new FilterVfs(vfs, (s) => new S(s, sync)),
        format: 'raw',
      });
      const structured = rnd() < 0.5;
      const peek = rnd() < 0.85; // drawn before the options: the rounds keep their random sequences
      const { client, done } = servePipe(
        img,
        { structured },
        {
          maxInFlight: 1 + ri(20),
          maxBytesInFlight: 64 * 1024 + ri(512 * 1024),
          readPiece: 4096 * (1 + ri(8)),
          sparseReadMin: 4096 * (1 + ri(32)),
        },
        { peek },
      );
      const parts: Uint8Array[] = [];
      const expect_ = new Map<bigint, { off: number; len: number; data?: Uint8Array }>();
      const N = 300;
      for (let c = 1; c <= N; c++) {
        const k = rnd();
        const big = rnd() < 0.15;
        const len = big ? 1 + ri(200 * 1024) : rnd() < 0.5 ? 4096 * (1 + ri(4)) : 1 + ri(16 * 1024);
        const off = rnd() < 0.5 ? 4096 * ri(Math.floor((size - len) / 4096)) : ri(size - len);
        const cookie = BigInt(c);
        if (k < 0.6) {
          const flags = structured && rnd() < 0.3 ? CMD_FLAG.DF : rnd() < 0.1 ? CMD_FLAG.FUA : 0;
          parts.push(req(CMD.READ, off, len, cookie, flags));
          expect_.set(cookie, { off, len, data: model.slice(off, off + len) });
        } else if (k < 0.85) {
          const d = new Uint8Array(len);
          for (let i = 0; i < len; i++) d[i] = ri(256);
          parts.push(req(CMD.WRITE, off, len, cookie), d);
          model.set(d, off);
          expect_.set(cookie, { off, len });
        } else {
          parts.push(req(CMD.WRITE_ZEROES, off, len, cookie, rnd() < 0.5 ? CMD_FLAG.NO_HOLE : 0));
          model.fill(0, off, off + len);
          expect_.set(cookie, { off, len });
        }
      }
      const all = concat(parts);
      // random splits
      const sending = (async () => {
        for (let p = 0; p < all.length; ) {
          const n = rnd() < 0.3 ? 1 + ri(40) : 1 + ri(64 * 1024);
          await client.write(all.subarray(p, Math.min(all.length, p + n)));
          p += n;
          if (rnd() < 0.3) await new Promise((r) => setTimeout(r, 0));
        }
      })();
      const lengthOf = (c: bigint) => expect_.get(c)?.data?.length ?? 0;
      for (let i = 0; i < N; i++) {
        const r = structured ? await structuredReply(client) : await simpleReply(client, lengthOf);
        expect(r).not.toBeNull();
        const e = expect_.get(r!.cookie)!;
        expect(r!.error, `cookie ${r!.cookie}`).toBe(0);
        if (e.data) {
          const got = structured ? assemble(r!, e.off, e.len) : r!.payload!;
          if (!Buffer.from(got).equals(Buffer.from(e.data)))
            throw new Error(
              `cookie ${r!.cookie} bytes differ (off ${e.off} len ${e.len}) sync=${sync} structured=${structured}`,
            );
        }
      }
      await sending;
      client.close();
      await done;
      await img.close();
    }, 20000);
  }
});
