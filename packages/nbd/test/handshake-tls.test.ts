/**
 * The STARTTLS rules of the option phase (portable Handshake), over an in-memory pipe with a stand-in
 * TLS upgrade (it sends the ACK, then expects the client's 4-byte "HELO" as its "TLS handshake"): what
 * qemu-nbd does with TLS credentials (options before TLS refused, EXPORT_NAME before TLS and non-fixed
 * clients dropped, STARTTLS once), that nothing negotiated before STARTTLS survives it (CVE-2021-3716),
 * that a failed upgrade is logged and closes the connection, and that the time limit covers it.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, type Image, MemoryVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import {
  type ByteStream,
  CMD,
  concat,
  encodeRequest,
  encoder,
  INFO,
  NBD_ERR,
  NbdConnection,
  type NbdExport,
  OPT,
  REP,
  TFLAG,
  type TlsUpgrade,
  u32,
  view,
} from '../src/index.js';
import { type End, pipe } from './pipe.js';
import { metaQuery, nameAndInfos, option, optReplies, optReply, simpleReply } from './option-wire.js';

const registry = new DriverRegistry([rawDriver]);

async function image(): Promise<Image> {
  const vfs = new MemoryVfs();
  const data = new Uint8Array(64 * 1024);
  data.fill(0x5e, 0, 4096);
  vfs.put('/a.raw', data);
  return openImage('/a.raw', { registry, vfs, format: 'raw' });
}

const HELO = encoder.encode('HELO');

/** A stand-in for TLS: ACK in "plaintext", then the client must say HELO; counts upgrades. */
function fakeTls(mode: 'require' | 'allow' = 'require') {
  const state = { upgrades: 0, started: 0 };
  const tls: TlsUpgrade = {
    mode,
    async upgrade(stream: ByteStream, ack: Uint8Array): Promise<ByteStream> {
      state.started++;
      await stream.write(ack);
      const hello = await stream.readExactly(4);
      if (hello === null || hello.some((b, i) => b !== HELO[i])) throw new Error('not a TLS client hello');
      state.upgrades++;
      return stream;
    },
  };
  return { tls, state };
}

interface Setup {
  client: End;
  done: Promise<void>;
  logs: Array<[string, string]>;
  fire: () => void;
}

async function connect(
  img: Image,
  tls: TlsUpgrade | undefined,
  extra: Partial<NbdExport> = {},
  clientFlags = 3,
): Promise<Setup> {
  const [client, server] = pipe();
  const logs: Array<[string, string]> = [];
  let timer: (() => void) | undefined;
  const conn = new NbdConnection(server, [{ name: 'ex', image: img, ...extra }], {
    tls,
    handshakeTimeoutMs: 10_000,
    setTimer: (fn) => {
      timer = fn;
      return 1;
    },
    clearTimer: () => {
      timer = undefined;
    },
    log: (level, message) => logs.push([level, message]),
  });
  const done = conn.run();
  expect(await client.readExactly(18)).not.toBeNull();
  await client.write(u32(clientFlags));
  return { client, done, logs, fire: () => timer?.() };
}

async function startTls(c: End): Promise<void> {
  await c.write(option(OPT.STARTTLS));
  expect(await optReply(c)).toMatchObject({ option: OPT.STARTTLS, type: REP.ACK });
  await c.write(HELO);
}

/** GO on 'ex'; the export's transmission flags. */
async function go(c: End): Promise<number> {
  await c.write(option(OPT.GO, nameAndInfos('ex', [INFO.BLOCK_SIZE])));
  const replies = await optReplies(c);
  expect(replies.at(-1)!.type).toBe(REP.ACK);
  const info = replies.find((r) => r.type === REP.INFO && view(r.data).getUint16(0) === INFO.EXPORT)!;
  return view(info.data).getUint16(10);
}

describe('STARTTLS in the handshake', () => {
  it('TLS required: every option but STARTTLS and ABORT gets ERR_TLS_REQD, in step; ABORT is answered', async () => {
    const img = await image();
    const { tls, state } = fakeTls();
    const { client: c, done } = await connect(img, tls);
    for (const [opt, data] of [
      [OPT.LIST, new Uint8Array(0)],
      [OPT.STRUCTURED_REPLY, new Uint8Array(0)],
      [OPT.INFO, nameAndInfos('ex')],
      [OPT.GO, nameAndInfos('ex')],
      [OPT.LIST_META_CONTEXT, metaQuery('ex', [])],
      [OPT.SET_META_CONTEXT, metaQuery('ex', ['base:allocation'])],
      [999, new Uint8Array(7)],
    ] as const) {
      await c.write(option(opt, data));
      expect(await optReply(c)).toMatchObject({ option: opt, type: REP.ERR_TLS_REQD });
    }
    await c.write(option(OPT.ABORT));
    expect(await optReply(c)).toMatchObject({ option: OPT.ABORT, type: REP.ACK });
    await done;
    expect(await c.readExactly(1)).toBeNull();
    expect(state.started).toBe(0);
    await img.close();
  });

  it('TLS required: EXPORT_NAME before TLS and a client that is not fixed newstyle are dropped', async () => {
    const img = await image();
    const a = await connect(img, fakeTls().tls);
    await a.client.write(option(OPT.EXPORT_NAME, encoder.encode('ex')));
    await a.done;
    expect(await a.client.readExactly(1)).toBeNull();
    expect(a.logs).toContainEqual(['error', expect.stringContaining('EXPORT_NAME before TLS')]);
    const b = await connect(img, fakeTls().tls, {}, 0);
    await b.client.write(option(OPT.STARTTLS));
    await b.done;
    expect(await b.client.readExactly(1)).toBeNull();
    expect(b.logs).toContainEqual(['error', expect.stringContaining('not fixed newstyle')]);
    await img.close();
  });

  it('STARTTLS with data is invalid; once upgraded, options work and a second STARTTLS is refused', async () => {
    const img = await image();
    const { tls, state } = fakeTls();
    const { client: c, done, logs } = await connect(img, tls);
    await c.write(option(OPT.STARTTLS, new Uint8Array(1)));
    expect((await optReply(c)).type).toBe(REP.ERR_INVALID);
    await startTls(c);
    await c.write(option(OPT.LIST));
    const list = await optReplies(c);
    expect(list.map((r) => r.type)).toEqual([REP.SERVER, REP.ACK]);
    await c.write(option(OPT.STARTTLS));
    expect(await optReply(c)).toMatchObject({ option: OPT.STARTTLS, type: REP.ERR_INVALID });
    expect(state.upgrades).toBe(1);
    await go(c);
    await c.write(encodeRequest({ type: CMD.READ, flags: 0, cookie: 5n, offset: 0, length: 8 }));
    expect(await simpleReply(c)).toEqual({ error: 0, cookie: 5n });
    expect([...(await c.readExactly(8))!]).toEqual(new Array(8).fill(0x5e));
    await c.write(encodeRequest({ type: CMD.DISC, flags: 0, cookie: 6n, offset: 0, length: 0 }));
    await done;
    expect(logs).toContainEqual(['info', 'TLS negotiated']);
    expect(logs).toContainEqual(['info', "export 'ex' negotiated over TLS"]);
    await img.close();
  });

  it('TLS allowed: structured replies and meta contexts negotiated in plaintext do not survive STARTTLS', async () => {
    const img = await image();
    const { tls } = fakeTls('allow');
    const { client: c, done } = await connect(img, tls);
    await c.write(option(OPT.STRUCTURED_REPLY));
    expect((await optReply(c)).type).toBe(REP.ACK);
    await c.write(option(OPT.SET_META_CONTEXT, metaQuery('ex', ['base:allocation'])));
    expect((await optReplies(c)).map((r) => r.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
    await startTls(c);
    // Structured replies were forgotten: no DF flag, simple replies, and no meta context to report on.
    const flags = await go(c);
    expect(flags & TFLAG.SEND_DF).toBe(0);
    await c.write(encodeRequest({ type: CMD.READ, flags: 0, cookie: 9n, offset: 0, length: 4 }));
    expect(await simpleReply(c)).toEqual({ error: 0, cookie: 9n });
    expect([...(await c.readExactly(4))!]).toEqual([0x5e, 0x5e, 0x5e, 0x5e]);
    await c.write(encodeRequest({ type: CMD.BLOCK_STATUS, flags: 0, cookie: 10n, offset: 0, length: 4096 }));
    expect(await simpleReply(c)).toEqual({ error: NBD_ERR.EINVAL, cookie: 10n });
    await c.write(encodeRequest({ type: CMD.DISC, flags: 0, cookie: 11n, offset: 0, length: 0 }));
    await done;
    await img.close();
  });

  it('TLS allowed: a plaintext client goes straight to GO', async () => {
    const img = await image();
    const { tls, state } = fakeTls('allow');
    const { client: c, done } = await connect(img, tls);
    expect((await go(c)) & TFLAG.READ_ONLY).toBe(0);
    c.close();
    await done;
    expect(state.started).toBe(0);
    await img.close();
  });

  it('without TLS configured STARTTLS gets ERR_POLICY and haggling goes on', async () => {
    const img = await image();
    const { client: c, done } = await connect(img, undefined);
    await c.write(option(OPT.STARTTLS));
    expect(await optReply(c)).toMatchObject({ option: OPT.STARTTLS, type: REP.ERR_POLICY });
    await go(c);
    c.close();
    await done;
    await img.close();
  });

  it('a failed TLS handshake (garbage after the ACK) is logged and closes the connection', async () => {
    const img = await image();
    const { tls, state } = fakeTls();
    const { client: c, done, logs } = await connect(img, tls);
    await c.write(option(OPT.STARTTLS));
    expect((await optReply(c)).type).toBe(REP.ACK);
    await c.write(concat([encoder.encode('GET / HTTP/1.0\r\n\r\n')]));
    await done;
    expect(await c.readExactly(1)).toBeNull();
    expect(state.upgrades).toBe(0);
    expect(logs).toContainEqual(['error', 'option negotiation failed: TLS handshake failed: not a TLS client hello']);
    await img.close();
  });

  it('the handshake time limit covers the TLS handshake: STARTTLS then silence is cut off', async () => {
    const img = await image();
    const { tls, state } = fakeTls();
    const { client: c, done, logs, fire } = await connect(img, tls);
    await c.write(option(OPT.STARTTLS));
    expect((await optReply(c)).type).toBe(REP.ACK);
    expect(state.started).toBe(1);
    fire();
    await done;
    expect(await c.readExactly(1)).toBeNull();
    expect(logs).toContainEqual(['error', expect.stringContaining('handshake time limit')]);
    await img.close();
  });

  it('an export with multiConn false never announces CAN_MULTI_CONN', async () => {
    const img = await image();
    expect(img.capabilities.multiConn).toBe(true);
    const a = await connect(img, undefined);
    expect((await go(a.client)) & TFLAG.CAN_MULTI_CONN).not.toBe(0);
    a.client.close();
    await a.done;
    const b = await connect(img, undefined, { multiConn: false });
    expect((await go(b.client)) & TFLAG.CAN_MULTI_CONN).toBe(0);
    b.client.close();
    await b.done;
    await img.close();
  });
});
