/**
 * Hostile clients in the option phase, after the CVEs of qemu-nbd, nbdkit and nbd-server: option
 * lengths past every bound (CVE-2017-15119), names at and past 4096 bytes (CVE-2017-15118,
 * CVE-2022-26495/26496), length fields that overrun the option, error messages that would echo the
 * client (CVE-2020-10761), oversized INFO requests, EXPORT_NAME with a bad name, an option flood that
 * must not outlive the time limit, a client closing at every byte of a handshake, and random bytes
 * (a seeded property: every connection ends or waits, none throws, nothing is answered out of step).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DriverRegistry, type Image, MemoryVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import {
  concat,
  encoder,
  IHAVEOPT,
  INFO,
  MAX_OPTION_LENGTH,
  NbdConnection,
  OPT,
  REP,
  REPLY_MAGIC,
  u16,
  u32,
  view,
} from '../src/index.js';
import { type End, pipe } from './pipe.js';
import { metaQuery, nameAndInfos, option, optReplies, optReply } from './option-wire.js';

const registry = new DriverRegistry([rawDriver]);
const LONG = 'n'.repeat(4096);

async function image(): Promise<Image> {
  const vfs = new MemoryVfs();
  vfs.put('/a.raw', new Uint8Array(8192));
  return openImage('/a.raw', { registry, vfs, format: 'raw', readOnly: true });
}

async function connect(img: Image, o: { manualTimer?: boolean } = {}) {
  const [client, server] = pipe();
  const logs: string[] = [];
  let fire: (() => void) | undefined;
  const conn = new NbdConnection(
    server,
    [
      { name: 'ex', image: img },
      { name: LONG, description: 'long name', image: img },
    ],
    {
      handshakeTimeoutMs: o.manualTimer ? 10_000 : 0,
      setTimer: (fn) => {
        fire = fn;
        return 1;
      },
      clearTimer: () => undefined,
      log: (level, message) => logs.push(`${level}: ${message}`),
    },
  );
  const done = conn.run();
  expect(await client.readExactly(18)).not.toBeNull();
  return { client, done, logs, fire: () => fire?.(), server: server as End };
}

function header(opt: number, length: number): Uint8Array {
  const b = new Uint8Array(16);
  view(b).setBigUint64(0, IHAVEOPT);
  view(b).setUint32(8, opt);
  view(b).setUint32(12, length);
  return b;
}

describe('hostile option haggling', () => {
  it('option lengths: 64 KiB acted on, up to 1 MiB read and refused in step, beyond that or 2^32-1 dropped unread', async () => {
    const img = await image();
    const { client: c, done, logs } = await connect(img);
    await c.write(u32(3));
    // Exactly the bound: parsed (and found malformed).
    await c.write(option(OPT.LIST, new Uint8Array(MAX_OPTION_LENGTH)));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    for (const n of [MAX_OPTION_LENGTH + 1, 16 * MAX_OPTION_LENGTH]) {
      await c.write(option(OPT.GO, new Uint8Array(n).fill(0xff)));
      expect(await optReply(c)).toMatchObject({ option: OPT.GO, type: REP.ERR_TOO_BIG });
    }
    await c.write(option(OPT.GO, nameAndInfos('ex')));
    expect((await optReplies(c)).at(-1)!.type).toBe(REP.ACK);
    c.close();
    await done;
    expect(logs.filter((l) => l.startsWith('error'))).toEqual([]);
    const d = await connect(img);
    await d.client.write(u32(3));
    await d.client.write(header(OPT.GO, 0xffffffff));
    await d.done;
    expect(await d.client.readExactly(1)).toBeNull();
    expect(d.logs).toContain('error: option negotiation failed: option 7 of 4294967295 bytes');
    const e = await connect(img);
    await e.client.write(u32(3));
    await e.client.write(header(OPT.INFO, 16 * MAX_OPTION_LENGTH + 1));
    await e.done;
    expect(await e.client.readExactly(1)).toBeNull();
    expect(e.logs).toContain(`error: option negotiation failed: option 6 of ${16 * MAX_OPTION_LENGTH + 1} bytes`);
    await img.close();
  });

  it('names: 4096 bytes are served, 4097 are invalid; length fields overrunning the option are invalid, in step', async () => {
    const img = await image();
    const { client: c, done } = await connect(img);
    await c.write(u32(3));
    await c.write(option(OPT.INFO, nameAndInfos(LONG, [INFO.NAME])));
    const ok = await optReplies(c);
    expect(ok.at(-1)!.type).toBe(REP.ACK);
    const named = ok.find((r) => r.type === REP.INFO && view(r.data).getUint16(0) === INFO.NAME)!;
    expect(named.data.length).toBe(2 + 4096);
    await c.write(option(OPT.INFO, nameAndInfos('m'.repeat(4096))));
    const unknown = await optReply(c);
    expect(unknown.type).toBe(REP.ERR_UNKNOWN);
    // The message does not echo 4096 bytes of the client back (CVE-2020-10761 was about this).
    expect(unknown.data.length).toBeLessThanOrEqual(1100);
    await c.write(option(OPT.INFO, nameAndInfos('€'.repeat(1366))));
    expect((await optReply(c)).data.length).toBeLessThanOrEqual(4096);
    await c.write(option(OPT.GO, nameAndInfos('n'.repeat(4097))));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    for (const bogus of [0xffffffff, 0xfffffffa, 100]) {
      await c.write(option(OPT.GO, concat([u32(bogus), encoder.encode('ex'), u16(0)])));
      expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    }
    // Info request count past the payload; meta context query count and lengths past it.
    await c.write(option(OPT.INFO, concat([u32(2), encoder.encode('ex'), u16(0xffff), u16(INFO.NAME)])));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    await c.write(option(OPT.STRUCTURED_REPLY));
    expect((await optReply(c)).type).toBe(REP.ACK);
    await c.write(option(OPT.LIST_META_CONTEXT, concat([u32(2), encoder.encode('ex'), u32(0xffffffff)])));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    await c.write(option(OPT.SET_META_CONTEXT, concat([u32(2), encoder.encode('ex'), u32(1), u32(0xfffffff0)])));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    await c.write(option(OPT.SET_META_CONTEXT, metaQuery('ex', ['x'.repeat(4097)])));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    // Invalid UTF-8 in a name.
    await c.write(option(OPT.INFO, concat([u32(2), new Uint8Array([0xc3, 0x28]), u16(0)])));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    // Still in step: a good GO.
    await c.write(option(OPT.GO, nameAndInfos('ex')));
    expect((await optReplies(c)).at(-1)!.type).toBe(REP.ACK);
    c.close();
    await done;
    await img.close();
  });

  it('an INFO asking for the same items thousands of times gets each answer once', async () => {
    const img = await image();
    const { client: c, done } = await connect(img);
    await c.write(u32(3));
    const many = new Array(30_000).fill(0).map((_, i) => [INFO.NAME, INFO.DESCRIPTION, INFO.BLOCK_SIZE, 77][i % 4]!);
    await c.write(option(OPT.INFO, nameAndInfos(LONG, many)));
    const replies = await optReplies(c);
    expect(replies.map((r) => (r.type === REP.INFO ? view(r.data).getUint16(0) : r.type)).sort()).toEqual(
      [INFO.EXPORT, INFO.NAME, INFO.DESCRIPTION, INFO.BLOCK_SIZE, REP.ACK].sort(),
    );
    c.close();
    await done;
    await img.close();
  });

  it('EXPORT_NAME with a name that is no NBD string closes the connection (it has no error reply)', async () => {
    const img = await image();
    for (const bad of [new Uint8Array(4097).fill(0x61), new Uint8Array([0xff, 0xfe]), encoder.encode('nope')]) {
      const { client: c, done, logs } = await connect(img);
      await c.write(u32(3));
      await c.write(option(OPT.EXPORT_NAME, bad));
      await done;
      expect(await c.readExactly(1)).toBeNull();
      expect(logs.join('\n')).toMatch(/^error: option negotiation failed: (NBD_OPT_EXPORT_NAME: |no such export)/);
    }
    await img.close();
  });

  it('an option flood does not outlive the handshake time limit', async () => {
    const img = await image();
    const { client: c, done, fire, logs } = await connect(img, { manualTimer: true });
    await c.write(u32(3));
    for (let i = 0; i < 2000; i++) {
      await c.write(option(OPT.LIST));
      await optReplies(c);
    }
    fire();
    await done;
    expect(await c.readExactly(1)).toBeNull();
    expect(logs).toContain('error: option negotiation failed: handshake time limit (10 s) reached');
    await img.close();
  });

  it('a client closing at every byte of a full handshake ends its connection quietly', async () => {
    const img = await image();
    const script = concat([
      u32(3),
      option(OPT.STRUCTURED_REPLY),
      option(OPT.LIST),
      option(OPT.SET_META_CONTEXT, metaQuery('ex', ['base:allocation'])),
      option(OPT.INFO, nameAndInfos('ex', [INFO.BLOCK_SIZE])),
      option(OPT.GO, nameAndInfos('ex', [INFO.BLOCK_SIZE])),
    ]);
    for (let cut = 0; cut < script.length; cut++) {
      const { client: c, done, logs } = await connect(img);
      await c.write(script.subarray(0, cut));
      c.close();
      await done;
      expect(logs.filter((l) => l.startsWith('error'))).toEqual([]);
    }
    await img.close();
  });

  it('random bytes after the greeting (seeded property): the server answers in step or drops the client, never throws', async () => {
    const img = await image();
    const optionArb = fc.oneof(
      fc.record({
        opt: fc.constantFrom(...Object.values(OPT), 0, 12, 0x7654321, 0xffffffff),
        data: fc.uint8Array({ maxLength: 64 }),
      }),
      fc.record({
        opt: fc.constantFrom(OPT.INFO, OPT.GO),
        data: fc
          .tuple(fc.string({ maxLength: 8 }), fc.array(fc.nat(8), { maxLength: 6 }))
          .map(([n, infos]) => nameAndInfos(n, infos)),
      }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.nat(3),
        fc.array(optionArb, { maxLength: 6 }),
        fc.uint8Array({ maxLength: 40 }),
        async (flags, opts, tail) => {
          const { client: c, done } = await connect(img);
          await c.write(concat([u32(flags), ...opts.map((o) => option(o.opt, o.data)), tail]));
          for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
          c.close();
          await done; // resolves, never rejects
          // What the server sent before the close: replies to the options in order, each ending in ACK or an
          // error, until EXPORT_NAME / a successful GO / ABORT ends the haggling.
          let k = 0;
          for (;;) {
            const h = await c.readExactly(20).catch(() => null);
            if (h === null) break;
            const o = opts[k];
            if (o === undefined || o.opt === OPT.EXPORT_NAME) throw new Error('reply to no option');
            expect(view(h).getBigUint64(0)).toBe(REPLY_MAGIC);
            expect(view(h).getUint32(8)).toBe(o.opt);
            const type = view(h).getUint32(12);
            const len = view(h).getUint32(16);
            expect(len).toBeLessThanOrEqual(4096 + 64);
            if ((await c.readExactly(len).catch(() => null)) === null) break;
            if (type === REP.ACK || type >= 0x80000000) {
              if (type === REP.ACK && (o.opt === OPT.GO || o.opt === OPT.ABORT)) break;
              k++;
            }
          }
          return true;
        },
      ),
      { seed: 14, numRuns: 400 },
    );
    await img.close();
  });
});
