/**
 * @blk/nbd over an in-memory stream: the handshake (greeting, options, bounds, bad magic, time
 * limit) and transmission (replies, errors, bounds) as a client sees them on the wire.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, openImage, type Image } from '@blk/core';
import { rawDriver } from '@blk/raw';
import {
  CHUNK,
  CMD,
  CMD_FLAG,
  concat,
  decodeOptionHeader,
  decodeRequest,
  encodeGreeting,
  encodeRequest,
  encoder,
  IHAVEOPT,
  INFO,
  NBD_ERR,
  NbdConnection,
  OPT,
  ProtocolError,
  REP,
  REPLY_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STATE_HOLE,
  STATE_ZERO,
  STRUCTURED_REPLY_MAGIC,
  TFLAG,
  u16,
  u32,
  view,
} from '../src/index.js';
import { pipe, type End } from './pipe.js';

const registry = new DriverRegistry([rawDriver]);
const SIZE = 1024 * 1024;

async function image(readOnly = false): Promise<Image> {
  const vfs = new MemoryVfs();
  // Sparse: only the 64 KiB chunk at 64 KiB is stored (MemoryFile keeps 64 KiB chunks), the rest is a hole.
  const file = vfs.put('/a.raw', new Uint8Array(0));
  file.writeAt(64 * 1024, new Uint8Array(8 * 1024).fill(0xab));
  file.writeAt(SIZE - 1, new Uint8Array(1));
  return openImage('/a.raw', { registry, vfs, format: 'raw', readOnly });
}

/** A server connection on one end of a pipe; the test is the client on the other. */
async function connect(
  img: Image,
  opts: { timeout?: number; setTimer?: (fn: () => void, ms: number) => unknown } = {},
) {
  const [client, server] = pipe();
  const conn = new NbdConnection(server, [{ name: 'ex', description: 'an export', image: img }], {
    handshakeTimeoutMs: opts.timeout ?? 0,
    setTimer: opts.setTimer,
    clearTimer: () => undefined,
  });
  const done = conn.run();
  const greeting = await client.readExactly(18);
  return { client, done, greeting: greeting! };
}

function option(opt: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(16);
  view(b).setBigUint64(0, IHAVEOPT);
  view(b).setUint32(8, opt);
  view(b).setUint32(12, data.length);
  return concat([b, data]);
}

async function optReply(c: End): Promise<{ option: number; type: number; data: Uint8Array }> {
  const h = (await c.readExactly(20))!;
  const v = view(h);
  expect(v.getBigUint64(0)).toBe(REPLY_MAGIC);
  const len = v.getUint32(16);
  return { option: v.getUint32(8), type: v.getUint32(12), data: (await c.readExactly(len)) ?? new Uint8Array(0) };
}

function nameAndInfos(name: string, infos: number[] = []): Uint8Array {
  const n = encoder.encode(name);
  return concat([u32(n.length), n, u16(infos.length), ...infos.map(u16)]);
}

/** Handshake with GO on `ex` (optionally structured replies and meta contexts); returns the transmission flags. */
async function go(c: End, o: { structured?: boolean; contexts?: string[] } = {}): Promise<number> {
  await c.write(u32(3));
  if (o.structured) {
    await c.write(option(OPT.STRUCTURED_REPLY));
    expect((await optReply(c)).type).toBe(REP.ACK);
  }
  if (o.contexts) {
    const qs = o.contexts.map((q) => concat([u32(q.length), encoder.encode(q)]));
    await c.write(option(OPT.SET_META_CONTEXT, concat([u32(2), encoder.encode('ex'), u32(qs.length), ...qs])));
    for (;;) {
      const r = await optReply(c);
      if (r.type === REP.ACK) break;
      expect(r.type).toBe(REP.META_CONTEXT);
    }
  }
  await c.write(option(OPT.GO, nameAndInfos('ex')));
  let flags = -1;
  for (;;) {
    const r = await optReply(c);
    if (r.type === REP.ACK) return flags;
    expect(r.type).toBe(REP.INFO);
    if (view(r.data).getUint16(0) === INFO.EXPORT) flags = view(r.data).getUint16(10);
  }
}

async function simple(c: End): Promise<{ error: number; cookie: bigint }> {
  const h = (await c.readExactly(16))!;
  expect(view(h).getUint32(0)).toBe(SIMPLE_REPLY_MAGIC);
  return { error: view(h).getUint32(4), cookie: view(h).getBigUint64(8) };
}

async function chunks(c: End): Promise<Array<{ type: number; data: Uint8Array }>> {
  const out: Array<{ type: number; data: Uint8Array }> = [];
  for (;;) {
    const h = (await c.readExactly(20))!;
    const v = view(h);
    expect(v.getUint32(0)).toBe(STRUCTURED_REPLY_MAGIC);
    const len = v.getUint32(16);
    out.push({ type: v.getUint16(6), data: (await c.readExactly(len)) ?? new Uint8Array(0) });
    if (v.getUint16(4) & 1) return out;
  }
}

const req = (type: number, offset: number, length: number, flags = 0, cookie = 7n) =>
  encodeRequest({ type, offset, length, flags, cookie });

describe('codec', () => {
  it('encodes the greeting and round-trips requests; bad magics throw', () => {
    const g = encodeGreeting();
    expect(new TextDecoder().decode(g.subarray(0, 16))).toBe('NBDMAGICIHAVEOPT');
    expect(view(g).getUint16(16)).toBe(3);
    const r = { type: CMD.WRITE, flags: CMD_FLAG.FUA, cookie: 0x1122334455667788n, offset: 2 ** 40, length: 4096 };
    expect(decodeRequest(encodeRequest(r))).toEqual(r);
    const bad = encodeRequest(r);
    bad[0] ^= 1;
    expect(() => decodeRequest(bad)).toThrow(ProtocolError);
    const o = option(OPT.LIST).subarray(0, 16);
    expect(decodeOptionHeader(o)).toEqual({ option: OPT.LIST, length: 0 });
    o[3] ^= 1;
    expect(() => decodeOptionHeader(o)).toThrow(ProtocolError);
  });
});

describe('handshake', () => {
  it('drops a client with unknown flags or a bad option magic', async () => {
    const img = await image();
    const a = await connect(img);
    await a.client.write(u32(0x80));
    await a.done;
    expect(await a.client.readExactly(1)).toBeNull();
    const b = await connect(img);
    await b.client.write(u32(3));
    const o = option(OPT.LIST);
    o[0] = 0;
    await b.client.write(o);
    await b.done;
    expect(await b.client.readExactly(1)).toBeNull();
    await img.close();
  });

  it('answers unknown and oversized options with errors and stays in sync; a huge option drops the client', async () => {
    const img = await image();
    const { client: c, done } = await connect(img);
    await c.write(u32(3));
    await c.write(option(OPT.EXTENDED_HEADERS));
    expect(await optReply(c)).toMatchObject({ option: OPT.EXTENDED_HEADERS, type: REP.ERR_UNSUP });
    await c.write(option(999, new Uint8Array(100)));
    expect((await optReply(c)).type).toBe(REP.ERR_UNSUP);
    await c.write(option(OPT.INFO, new Uint8Array(70_000)));
    expect((await optReply(c)).type).toBe(REP.ERR_TOO_BIG);
    await c.write(option(OPT.LIST, new Uint8Array(1)));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    // A name longer than NBD_MAX_STRING is invalid, even inside the length bound.
    await c.write(option(OPT.GO, concat([u32(5000), new Uint8Array(10)])));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    await c.write(option(OPT.GO, nameAndInfos('nope')));
    expect((await optReply(c)).type).toBe(REP.ERR_UNKNOWN);
    await c.write(option(OPT.LIST));
    const s = await optReply(c);
    expect(s.type).toBe(REP.SERVER);
    expect(new TextDecoder().decode(s.data.subarray(4))).toBe('exan export');
    expect((await optReply(c)).type).toBe(REP.ACK);
    // Announces 1 GiB of option data: dropped without reading (or buffering) it.
    const huge = new Uint8Array(16);
    view(huge).setBigUint64(0, IHAVEOPT);
    view(huge).setUint32(8, OPT.INFO);
    view(huge).setUint32(12, 1 << 30);
    await c.write(huge);
    await done;
    expect(await c.readExactly(1)).toBeNull();
    await img.close();
  });

  it('INFO reports size, flags from the capabilities, name, description and block sizes; ABORT ends', async () => {
    const img = await image(true);
    const { client: c, done } = await connect(img);
    await c.write(u32(3));
    await c.write(option(OPT.INFO, nameAndInfos('ex', [INFO.NAME, INFO.DESCRIPTION, INFO.BLOCK_SIZE])));
    const infos = new Map<number, Uint8Array>();
    for (;;) {
      const r = await optReply(c);
      if (r.type === REP.ACK) break;
      infos.set(view(r.data).getUint16(0), r.data);
    }
    const e = view(infos.get(INFO.EXPORT)!);
    expect(Number(e.getBigUint64(2))).toBe(SIZE);
    const flags = e.getUint16(10);
    expect(flags & TFLAG.READ_ONLY).toBeTruthy();
    expect(flags & (TFLAG.SEND_FLUSH | TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES | TFLAG.SEND_FUA)).toBe(0);
    expect(new TextDecoder().decode(infos.get(INFO.NAME)!.subarray(2))).toBe('ex');
    expect(new TextDecoder().decode(infos.get(INFO.DESCRIPTION)!.subarray(2))).toBe('an export');
    const bs = view(infos.get(INFO.BLOCK_SIZE)!);
    expect([bs.getUint32(2), bs.getUint32(6), bs.getUint32(10)]).toEqual([1, 4096, 32 * 1024 * 1024]);
    await c.write(option(OPT.ABORT));
    expect((await optReply(c)).type).toBe(REP.ACK);
    await done;
    await img.close();
  });

  it('drops a client that has not finished the handshake in time', async () => {
    const img = await image();
    let fire: (() => void) | undefined;
    const { client: c, done } = await connect(img, { timeout: 1000, setTimer: (fn) => (fire = fn) });
    await c.write(u32(3));
    fire!();
    await done;
    expect(await c.readExactly(1)).toBeNull();
    await img.close();
  });
});

describe('transmission', () => {
  it('writes and reads with simple replies; refuses out-of-range and oversized requests, staying in sync', async () => {
    const img = await image();
    const { client: c, done } = await connect(img);
    const flags = await go(c);
    expect(flags & TFLAG.READ_ONLY).toBe(0);
    expect(flags & TFLAG.SEND_FLUSH && flags & TFLAG.SEND_FUA && flags & TFLAG.SEND_WRITE_ZEROES).toBeTruthy();
    await c.write(concat([req(CMD.WRITE, 4096, 4, CMD_FLAG.FUA, 1n), new Uint8Array([1, 2, 3, 4])]));
    expect(await simple(c)).toEqual({ error: 0, cookie: 1n });
    await c.write(req(CMD.READ, 4094, 8, 0, 2n));
    expect(await simple(c)).toEqual({ error: 0, cookie: 2n });
    expect([...(await c.readExactly(8))!]).toEqual([0, 0, 1, 2, 3, 4, 0, 0]);
    await c.write(req(CMD.READ, SIZE - 4, 8));
    expect((await simple(c)).error).toBe(NBD_ERR.EINVAL);
    await c.write(concat([req(CMD.WRITE, SIZE - 2, 4), new Uint8Array(4)]));
    expect((await simple(c)).error).toBe(NBD_ERR.ENOSPC);
    await c.write(req(CMD.READ, 0, 33 * 1024 * 1024));
    expect((await simple(c)).error).toBe(NBD_ERR.EOVERFLOW);
    // An oversized write: its payload is read and thrown away, and the next request is understood.
    const big = 33 * 1024 * 1024;
    await c.write(req(CMD.WRITE, 0, big, 0, 3n));
    for (let i = 0; i < big; i += 1 << 20) await c.write(new Uint8Array(1 << 20).fill(0xee));
    expect(await simple(c)).toEqual({ error: NBD_ERR.EOVERFLOW, cookie: 3n });
    await c.write(req(CMD.WRITE_ZEROES, 4096, 4, CMD_FLAG.NO_HOLE, 4n));
    expect(await simple(c)).toEqual({ error: 0, cookie: 4n });
    await c.write(req(CMD.FLUSH, 0, 0, 0, 5n));
    expect(await simple(c)).toEqual({ error: 0, cookie: 5n });
    expect([...(await img.read(4096, 4))]).toEqual([0, 0, 0, 0]);
    expect((await img.read(0, 1))[0]).toBe(0); // nothing of the refused write landed
    await c.write(req(CMD.BLOCK_STATUS, 0, 4096));
    expect((await simple(c)).error).toBe(NBD_ERR.EINVAL); // no meta context negotiated
    await c.write(req(99, 0, 0));
    expect((await simple(c)).error).toBe(NBD_ERR.EINVAL);
    await c.write(req(CMD.DISC, 0, 0));
    await done;
    await img.close();
  });

  it('a read-only export refuses writes with EPERM; a bad request magic drops the client', async () => {
    const img = await image(true);
    const { client: c, done } = await connect(img);
    await go(c);
    await c.write(concat([req(CMD.WRITE, 0, 4), new Uint8Array(4)]));
    expect((await simple(c)).error).toBe(NBD_ERR.EPERM);
    await c.write(req(CMD.TRIM, 0, 4096));
    expect((await simple(c)).error).toBe(NBD_ERR.EPERM);
    const bad = req(CMD.READ, 0, 4);
    bad[1] ^= 0xff;
    await c.write(bad);
    await done;
    expect(await c.readExactly(1)).toBeNull();
    await img.close();
  });

  it('structured replies: reads as data and hole chunks, errors as error chunks, base:allocation and allocation depth', async () => {
    const img = await image();
    const { client: c, done } = await connect(img);
    const flags = await go(c, { structured: true, contexts: ['base:allocation', 'qemu:allocation-depth'] });
    expect(flags & TFLAG.SEND_DF).toBeTruthy();
    // Holes come from the image's block status (the stored 64 KiB chunk is data, zeros and all).
    await c.write(req(CMD.READ, 32 * 1024, 160 * 1024));
    const r = await chunks(c);
    expect(r.map((x) => x.type)).toEqual([CHUNK.OFFSET_HOLE, CHUNK.OFFSET_DATA, CHUNK.OFFSET_HOLE]);
    expect(Number(view(r[0]!.data).getBigUint64(0))).toBe(32 * 1024);
    expect(view(r[0]!.data).getUint32(8)).toBe(32 * 1024);
    expect(Number(view(r[1]!.data).getBigUint64(0))).toBe(64 * 1024);
    expect(r[1]!.data.length - 8).toBe(64 * 1024);
    expect(r[1]!.data.subarray(8, 8 + 8192).every((b) => b === 0xab)).toBe(true);
    expect(r[1]!.data.subarray(8 + 8192).every((b) => b === 0)).toBe(true);
    expect(Number(view(r[2]!.data).getBigUint64(0))).toBe(128 * 1024);
    expect(view(r[2]!.data).getUint32(8)).toBe(64 * 1024);
    // A short read is one data chunk.
    await c.write(req(CMD.READ, 60 * 1024, 8 * 1024));
    expect((await chunks(c)).map((x) => x.type)).toEqual([CHUNK.OFFSET_DATA]);
    await c.write(req(CMD.READ, 4096, 0));
    expect((await chunks(c)).map((x) => x.type)).toEqual([CHUNK.NONE]);
    await c.write(req(CMD.READ, SIZE, 1));
    const e = await chunks(c);
    expect(e[0]!.type).toBe(CHUNK.ERROR);
    expect(view(e[0]!.data).getUint32(0)).toBe(NBD_ERR.EINVAL);
    // MemoryVfs has no extents: raw reports every byte as data, held by depth 0 (depth value 1).
    await c.write(req(CMD.BLOCK_STATUS, 0, SIZE));
    const bs = await chunks(c);
    expect(bs.map((x) => x.type)).toEqual([CHUNK.BLOCK_STATUS, CHUNK.BLOCK_STATUS]);
    const base = view(bs[0]!.data);
    expect(base.getUint32(0)).toBe(1);
    let total = 0;
    for (let o = 4; o < bs[0]!.data.length; o += 8) {
      total += base.getUint32(o);
      expect(base.getUint32(o + 4) & ~(STATE_HOLE | STATE_ZERO)).toBe(0);
    }
    expect(total).toBe(SIZE);
    const depth = view(bs[1]!.data);
    expect([depth.getUint32(0), depth.getUint32(4), depth.getUint32(8)]).toEqual([2, SIZE, 1]);
    await c.write(req(CMD.BLOCK_STATUS, 0, SIZE + 1));
    expect((await chunks(c))[0]!.type).toBe(CHUNK.ERROR);
    await c.write(req(CMD.DISC, 0, 0));
    await done;
    await img.close();
  });

  it('EXPORT_NAME enters transmission with the size and flags (and the 124 zero bytes without NO_ZEROES)', async () => {
    const img = await image();
    const { client: c, done } = await connect(img);
    await c.write(u32(1));
    await c.write(option(OPT.EXPORT_NAME, encoder.encode('ex')));
    const h = (await c.readExactly(10 + 124))!;
    expect(Number(view(h).getBigUint64(0))).toBe(SIZE);
    expect(view(h).getUint16(8) & TFLAG.HAS_FLAGS).toBeTruthy();
    expect(h.subarray(10).every((b) => b === 0)).toBe(true);
    await c.write(req(CMD.READ, 64 * 1024, 2));
    expect((await simple(c)).error).toBe(0);
    expect([...(await c.readExactly(2))!]).toEqual([0xab, 0xab]);
    c.close();
    await done;
    await img.close();
  });
});
