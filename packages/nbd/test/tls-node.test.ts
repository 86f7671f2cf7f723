/**
 * STARTTLS with Node's tls in @blk/nbd/node: a real TLS session (Node's tls client; the GnuTLS clients
 * are in packages/cli/test/serve-tls.test.ts) over a Unix socket or TCP, with certificates and PSK keys
 * made by certtool/psktool: X.509 with and without client verification, PSK right/wrong/unknown,
 * plaintext pipelined behind STARTTLS, garbage or silence instead of a TLS handshake, nothing from
 * plaintext surviving the upgrade, the authorization hook seeing the client's distinguished name, and
 * the credential checks at load time.
 */
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DriverRegistry, type Image, MemoryVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { CMD, encodeRequest, encoder, INFO, OPT, REP, TFLAG, u32, view } from '../src/index.js';
import {
  distinguishedName,
  loadPskCredentials,
  loadX509Credentials,
  NbdServer,
  type NodeTlsOptions,
  nodeTls,
  parsePskKeys,
  SocketStream,
  TlsCredentialsError,
} from '../src/node.js';
import { makeTlsMaterial, type TlsMaterial, tlsToolsMissing } from './tls-material.js';
import { metaQuery, nameAndInfos, option, optReplies, optReply, simpleReply, structuredChunks } from './option-wire.js';

const missing = tlsToolsMissing();
if (missing) console.warn(`tls-node.test.ts: skipped: ${missing}`);

const registry = new DriverRegistry([rawDriver]);
let m: TlsMaterial;
let img: Image;

beforeAll(async () => {
  if (missing) return;
  m = makeTlsMaterial();
  const vfs = new MemoryVfs();
  const data = new Uint8Array(256 * 1024);
  data.fill(0xc3, 4096, 8192);
  vfs.put('/a.raw', data);
  img = await openImage('/a.raw', { registry, vfs, format: 'raw' });
});

afterAll(async () => {
  if (missing) return;
  await img.close();
  fs.rmSync(m.dir, { recursive: true, force: true });
});

interface Served {
  server: NbdServer;
  logs: string[];
  connect(): Promise<{ raw: net.Socket; s: SocketStream }>;
}

async function serveTls(tlsOptions: NodeTlsOptions, o: { tcp?: boolean; handshakeTimeoutMs?: number } = {}) {
  const logs: string[] = [];
  const sock = path.join(m.dir, `s${Math.random().toString(36).slice(2)}.sock`);
  const server = await NbdServer.listen({
    exports: [{ name: 'ex', description: 'tls export', image: img }],
    ...(o.tcp ? { host: '127.0.0.1', port: 0 } : { socket: sock }),
    shared: 8,
    persistent: true,
    handshakeTimeoutMs: o.handshakeTimeoutMs ?? 10_000,
    tls: nodeTls(tlsOptions),
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  const served: Served = {
    server,
    logs,
    async connect() {
      const raw = o.tcp ? net.connect(server.port!, '127.0.0.1') : net.connect(sock);
      await new Promise((r, j) => {
        raw.once('connect', r);
        raw.once('error', j);
      });
      const s = new SocketStream(raw);
      expect(new TextDecoder().decode((await s.readExactly(18))!.subarray(0, 16))).toBe('NBDMAGICIHAVEOPT');
      await s.write(u32(3));
      return { raw, s };
    },
  };
  return served;
}

/** STARTTLS, then the TLS client handshake over the same socket; resolves with the TLS stream. */
async function startTls(s: SocketStream, options: tls.ConnectionOptions): Promise<SocketStream> {
  await s.write(option(OPT.STARTTLS));
  expect(await optReply(s)).toMatchObject({ option: OPT.STARTTLS, type: REP.ACK });
  const raw = s.detachForTls();
  const secure = tls.connect({ socket: raw, ...options });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve());
    secure.once('error', reject);
    secure.once('close', () => reject(new Error('closed during the TLS handshake')));
  });
  return new SocketStream(secure);
}

/** Connection closed by the server (EOF or reset), whatever the client tries next. */
async function closedByServer(s: SocketStream): Promise<boolean> {
  try {
    return (await s.readExactly(1)) === null;
  } catch {
    return true;
  }
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const x509Client = () => ({
  ca: fs.readFileSync(path.join(m.client, 'ca-cert.pem')),
  cert: fs.readFileSync(path.join(m.client, 'client-cert.pem')),
  key: fs.readFileSync(path.join(m.client, 'client-key.pem')),
  servername: 'localhost',
});

const pskClient = (identity: string, dir: string): tls.ConnectionOptions => ({
  ciphers: `PSK:${tls.DEFAULT_CIPHERS}`,
  checkServerIdentity: () => undefined,
  pskCallback: () => ({ identity, psk: loadPskCredentials(dir).keys.values().next().value! }),
});

/** GO on 'ex' with structured replies, then a structured READ of 8 bytes at 4096. */
async function readOverTls(s: SocketStream): Promise<number[]> {
  await s.write(option(OPT.STRUCTURED_REPLY));
  expect((await optReply(s)).type).toBe(REP.ACK);
  await s.write(option(OPT.GO, nameAndInfos('ex', [INFO.DESCRIPTION])));
  const replies = await optReplies(s);
  expect(replies.at(-1)!.type).toBe(REP.ACK);
  await s.write(encodeRequest({ type: CMD.READ, flags: 0, cookie: 1n, offset: 4096, length: 8 }));
  const [chunk] = await structuredChunks(s);
  await s.write(encodeRequest({ type: CMD.DISC, flags: 0, cookie: 2n, offset: 0, length: 0 }));
  return [...chunk!.data.subarray(8)];
}

describe.skipIf(missing !== undefined)('TLS with Node (certtool/psktool material)', () => {
  it('X.509 with verify-peer (the default): a client with a CA-signed certificate reads over TLS over TCP', async () => {
    const seen: string[] = [];
    const srv = await serveTls(
      {
        credentials: loadX509Credentials(m.server),
        authorize: (id) => {
          seen.push(id);
          return undefined;
        },
      },
      { tcp: true },
    );
    try {
      const { s } = await srv.connect();
      // Before TLS: refused.
      await s.write(option(OPT.LIST));
      expect((await optReply(s)).type).toBe(REP.ERR_TLS_REQD);
      const t = await startTls(s, x509Client());
      expect(await readOverTls(t)).toEqual(new Array(8).fill(0xc3));
      // The authorization hook saw the certificate's subject exactly as GnuTLS (certtool -i) prints it.
      expect(seen).toEqual([m.clientDn]);
      await waitFor(() => srv.logs.some((l) => l.includes('disconnected')));
      expect(srv.logs).toContain("info: client 1: export 'ex' negotiated over TLS");
      expect(srv.logs).toContain(
        `info: client 1: TLS negotiated (TLSv1.3 ${'TLS_AES_256_GCM_SHA384'}, client ${m.clientDn})`,
      );
    } finally {
      await srv.server.close();
    }
  });

  it('X.509 with verify-peer: no client certificate, or one of another CA, fails the handshake and is logged', async () => {
    const srv = await serveTls({ credentials: loadX509Credentials(m.server) }, { tcp: true });
    try {
      const a = await srv.connect();
      await expect(
        startTls(a.s, { ca: fs.readFileSync(path.join(m.nocert, 'ca-cert.pem')), servername: 'localhost' }).then(
          async (t) => readOverTls(t),
        ),
      ).rejects.toThrow();
      const b = await srv.connect();
      await expect(
        startTls(b.s, {
          ca: fs.readFileSync(path.join(m.other, 'ca-cert.pem')),
          cert: fs.readFileSync(path.join(m.other, 'client-cert.pem')),
          key: fs.readFileSync(path.join(m.other, 'client-key.pem')),
          servername: 'localhost',
        }).then(async (t) => readOverTls(t)),
      ).rejects.toThrow();
      await waitFor(() => srv.logs.filter((l) => l.includes('TLS handshake failed')).length === 2);
      expect(srv.logs.filter((l) => l.startsWith('error:') && l.includes('TLS handshake failed'))).toHaveLength(2);
      expect(srv.logs.join('\n')).toMatch(
        /client 1: option negotiation failed: TLS handshake failed: the client sent no certificate/,
      );
      expect(srv.logs.join('\n')).toMatch(
        /client 2: .*the client certificate was refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/,
      );
    } finally {
      await srv.server.close();
    }
  });

  it('X.509 with verify-peer off: a client without a certificate gets in', async () => {
    const open = await serveTls({ credentials: loadX509Credentials(m.server, { verifyPeer: false }) });
    try {
      const { s } = await open.connect();
      const t = await startTls(s, { ca: fs.readFileSync(path.join(m.nocert, 'ca-cert.pem')), servername: 'localhost' });
      expect(await readOverTls(t)).toEqual(new Array(8).fill(0xc3));
    } finally {
      await open.server.close();
    }
  });

  it('the authorization hook refuses a client: logged with its identity, connection closed', async () => {
    const srv = await serveTls({
      credentials: loadX509Credentials(m.server),
      authorize: (id) => (id === 'CN=someone.else' ? undefined : 'not on the list'),
    });
    try {
      const { s } = await srv.connect();
      const t = await startTls(s, x509Client()).catch(() => undefined);
      if (t) expect(await closedByServer(t)).toBe(true);
      await waitFor(() => srv.logs.some((l) => l.includes('refused')));
      expect(srv.logs.join('\n')).toContain(`TLS authorization of ${m.clientDn} refused: not on the list`);
    } finally {
      await srv.server.close();
    }
  });

  it('PSK: the right key reads over TLS; a wrong key and an unknown identity fail', async () => {
    const seen: string[] = [];
    const srv = await serveTls({
      credentials: loadPskCredentials(m.psk),
      authorize: (id) => {
        seen.push(id);
        return undefined;
      },
    });
    try {
      const ok = await srv.connect();
      expect(await readOverTls(await startTls(ok.s, pskClient('alice', m.psk)))).toEqual(new Array(8).fill(0xc3));
      expect(seen).toEqual(['alice']);
      await waitFor(() => srv.logs.some((l) => l.includes('TLS negotiated')));
      expect(srv.logs.join('\n')).toMatch(/client 1: TLS negotiated \(TLSv1\.3 TLS_\w+_SHA256, client alice\)/);
      const wrong = await srv.connect();
      await expect(startTls(wrong.s, pskClient('alice', m.wrongPsk)).then(readOverTls)).rejects.toThrow();
      const bob = await srv.connect();
      await expect(startTls(bob.s, pskClient('bob', m.bobPsk)).then(readOverTls)).rejects.toThrow();
      await waitFor(() => srv.logs.filter((l) => l.includes('TLS handshake failed')).length === 2);
      expect(seen).toEqual(['alice']);
    } finally {
      await srv.server.close();
    }
  });

  it('plaintext pipelined behind STARTTLS (injection before the upgrade) drops the connection', async () => {
    const srv = await serveTls({ credentials: loadPskCredentials(m.psk) });
    try {
      const { raw } = await srv.connect();
      // STARTTLS and an option in one write: the server must not take the option into the TLS session.
      raw.write(Buffer.concat([option(OPT.STARTTLS), option(OPT.STRUCTURED_REPLY)]));
      const got: Buffer[] = [];
      raw.on('data', (b: Buffer) => got.push(b));
      await new Promise((r) => raw.once('close', r));
      expect(Buffer.concat(got).length).toBe(0); // not even the ACK
      await waitFor(() => srv.logs.some((l) => l.includes('behind NBD_OPT_STARTTLS')));
    } finally {
      await srv.server.close();
    }
  });

  it('garbage instead of a TLS ClientHello is logged and closes; STARTTLS then silence hits the time limit', async () => {
    const srv = await serveTls({ credentials: loadPskCredentials(m.psk) }, { handshakeTimeoutMs: 600 });
    try {
      const a = await srv.connect();
      await a.s.write(option(OPT.STARTTLS));
      expect((await optReply(a.s)).type).toBe(REP.ACK);
      await a.s.write(encoder.encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      expect(await closedByServer(a.s)).toBe(true);
      // Before the connection is made, so before the server's handshake clock starts: a stall of this
      // process between the accept and the greeting cannot make the limit look early.
      const t0 = Date.now();
      const b = await srv.connect();
      await b.s.write(option(OPT.STARTTLS));
      expect((await optReply(b.s)).type).toBe(REP.ACK);
      expect(await closedByServer(b.s)).toBe(true);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
      await waitFor(() => srv.logs.some((l) => l.includes('time limit')));
      expect(srv.logs.join('\n')).toMatch(/client 1: option negotiation failed: TLS handshake failed: .+/);
      expect(srv.logs.join('\n')).toMatch(
        /client 2: option negotiation failed: handshake time limit \(0\.6 s\) reached/,
      );
    } finally {
      await srv.server.close();
    }
  });

  it("TLS 'allow': structured replies and a meta context from plaintext are forgotten after STARTTLS", async () => {
    const srv = await serveTls({ credentials: loadPskCredentials(m.psk), mode: 'allow' });
    try {
      const { s } = await srv.connect();
      await s.write(option(OPT.STRUCTURED_REPLY));
      expect((await optReply(s)).type).toBe(REP.ACK);
      await s.write(option(OPT.SET_META_CONTEXT, metaQuery('ex', ['base:allocation'])));
      expect((await optReplies(s)).at(-1)!.type).toBe(REP.ACK);
      const t = await startTls(s, pskClient('alice', m.psk));
      await t.write(option(OPT.STARTTLS));
      expect((await optReply(t)).type).toBe(REP.ERR_INVALID);
      await t.write(option(OPT.GO, nameAndInfos('ex')));
      const replies = await optReplies(t);
      const info = replies.find((r) => r.type === REP.INFO && view(r.data).getUint16(0) === INFO.EXPORT)!;
      expect(view(info.data).getUint16(10) & TFLAG.SEND_DF).toBe(0);
      await t.write(encodeRequest({ type: CMD.READ, flags: 0, cookie: 3n, offset: 4096, length: 2 }));
      expect(await simpleReply(t)).toEqual({ error: 0, cookie: 3n });
      expect([...(await t.readExactly(2))!]).toEqual([0xc3, 0xc3]);
      await t.write(encodeRequest({ type: CMD.DISC, flags: 0, cookie: 4n, offset: 0, length: 0 }));
      expect(await closedByServer(t)).toBe(true);
    } finally {
      await srv.server.close();
    }
  });

  it('credentials are checked when loaded: missing files, a key of another certificate, a certificate of another CA, bad PSK files', () => {
    const bad = path.join(m.dir, 'bad');
    fs.mkdirSync(bad);
    expect(() => loadX509Credentials(bad)).toThrow(/ca-cert.pem: cannot read the CA certificate/);
    fs.copyFileSync(path.join(m.server, 'ca-cert.pem'), path.join(bad, 'ca-cert.pem'));
    fs.copyFileSync(path.join(m.server, 'server-cert.pem'), path.join(bad, 'server-cert.pem'));
    expect(() => loadX509Credentials(bad)).toThrow(/server-key.pem: cannot read the server key/);
    fs.copyFileSync(path.join(m.client, 'client-key.pem'), path.join(bad, 'server-key.pem'));
    expect(() => loadX509Credentials(bad)).toThrow(/the key does not match server-cert.pem/);
    fs.copyFileSync(path.join(m.server, 'server-key.pem'), path.join(bad, 'server-key.pem'));
    expect(loadX509Credentials(bad).verifyPeer).toBe(true);
    fs.copyFileSync(path.join(m.other, 'client-cert.pem'), path.join(bad, 'ca-cert.pem'));
    expect(() => loadX509Credentials(bad)).toThrow(/not issued by the CA of ca-cert.pem/);
    fs.writeFileSync(path.join(bad, 'ca-cert.pem'), 'not a certificate\n');
    expect(() => loadX509Credentials(bad)).toThrow(TlsCredentialsError);
    expect(() => parsePskKeys('alice:zz\n', 'k')).toThrow(/k:1: expected IDENTITY:HEXKEY/);
    expect(() => parsePskKeys('\n# nothing\n', 'k')).toThrow(/no keys/);
    expect(() => parsePskKeys('a:00\na:11\n', 'k')).toThrow(/given twice/);
    expect(() => parsePskKeys(`a:${'00'.repeat(257)}\n`, 'k')).toThrow(/longer than 256 bytes/);
    expect([...parsePskKeys('user:with:colons:0a0b\r\n', 'k')]).toEqual([['user:with:colons', Buffer.from([10, 11])]]);
    expect(() => loadPskCredentials(bad)).toThrow(/keys.psk: cannot read/);
    expect(distinguishedName(new X509Certificate(fs.readFileSync(path.join(m.client, 'client-cert.pem'))))).toBe(
      m.clientDn,
    );
  });
});
