/**
 * Review of chain reads issued together (issue 14): over a cow overlay whose runs alternate with
 * its backing file, a read whose last backing run fails at once while the earlier ones are still
 * under way is answered with an error only once every read of the request is over (its reply
 * buffer is reused: a late read would write into the next reply), and the reads after it on the
 * same connection (reused buffers) carry the right bytes: fast path and general path, structured
 * and simple replies, synchronous or not, one-piece and piece-by-piece large reads.
 */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  FilterStorage,
  ForwardingVfs,
  MemoryVfs,
  createImage,
  openImage,
  type Storage,
  type StorageCapabilities,
  storageCapabilities,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '@blk/cow';
import { CMD, Transmission } from '../src/index.js';
import { pipe } from './pipe.js';
import { assemble, req, simpleReply, structuredReply } from './wire.js';

const KiB = 1024;
const registry = new DriverRegistry([cowDriver, rawDriver]);
let outstanding = 0;
let failAt: [number, number] = [0, 0];
let syncOk = true;
class Slow extends FilterStorage {
  override async read(o: number, into: Uint8Array): Promise<number> {
    if (o < failAt[1] && failAt[0] < o + into.length) throw Object.assign(new Error('EIO test'), { code: 'EIO' });
    outstanding++;
    await new Promise((r) => setTimeout(r, 5));
    const n = await this.next.read(o, into);
    outstanding--;
    return n;
  }
  override readSync(o: number, into: Uint8Array): number {
    if (o < failAt[1] && failAt[0] < o + into.length) throw Object.assign(new Error('EIO test'), { code: 'EIO' });
    return this.next.readSync!(o, into);
  }
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    const caps = super.filterCapabilities(below);
    return storageCapabilities({ ...caps, syncRead: caps.syncRead && syncOk });
  }
}
class V extends ForwardingVfs {
  override async open(p: string, o?: VfsOpenOptions): Promise<Storage> {
    const s = await this.inner.open(p, o);
    return p.endsWith('base.raw') ? new Slow(s) : s;
  }
}

describe('chain read failing while other runs in flight', () => {
  for (const structured of [true, false])
    for (const peek of [true, false])
      for (const sync of [true, false])
        for (const [len, piece] of [
          [8 * KiB, 1 << 20],
          [100 * KiB, 1 << 20],
          [256 * KiB, 1 << 20],
          [64 * KiB, 4096],
        ] as const)
          it(`structured ${structured} peek ${peek} sync ${sync} len ${len} piece ${piece}`, async () => {
            const vfs = new MemoryVfs();
            const size = 1024 * KiB;
            const base = new Uint8Array(size);
            for (let i = 0; i < size; i++) base[i] = ((i * 13) % 251) + 1;
            vfs.put('/c/base.raw', base.slice());
            await createImage('/c/top.cow', { registry, vfs, format: 'cow', backing: '/c/base.raw' });
            const top = await openImage('/c/top.cow', { registry, vfs });
            const model = base.slice();
            for (let pos = 0; pos < size; pos += 1024) {
              const d = new Uint8Array(512).fill(0x77);
              await top.write(pos, d);
              model.set(d, pos);
            }
            await top.close();
            syncOk = sync;
            const image = await openImage('/c/top.cow', { registry, vfs: new V(vfs), readOnly: true });
            const [client, server] = pipe({ peek });
            const t = new Transmission(
              server,
              image,
              { structured, contexts: [] },
              { readPiece: piece, sparseReadMin: 64 * KiB },
            );
            const done = t.run().then(() => server.close());
            const violations: string[] = [];
            const w0 = server.write.bind(server);
            server.write = (d, sent) => {
              if (outstanding > 0) violations.push(`reply written with ${outstanding} base reads in flight`);
              return w0(d, sent);
            };
            for (let i = 0; i < 6; i++) {
              const offset = 128 * KiB * i + 512 * (i % 3);
              // odd requests: their last base run fails at once, the earlier ones are slow
              failAt = i % 2 === 1 ? [offset + len - 2048, offset + len] : [0, 0];
              await client.write(req(CMD.READ, offset, len, BigInt(i + 1)));
              const r = structured ? (await structuredReply(client))! : (await simpleReply(client, () => len))!;
              if (i % 2 === 1) expect(r.error).not.toBe(0);
              else {
                expect(r.error).toBe(0);
                const got = structured ? assemble(r, offset, len) : r.payload!;
                expect(Buffer.compare(got, model.subarray(offset, offset + len))).toBe(0);
              }
            }
            await new Promise((r) => setTimeout(r, 40));
            expect(violations).toEqual([]);
            client.close();
            await done;
            await image.close();
          });
});
