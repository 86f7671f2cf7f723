/**
 * NbdServer (Node) under connection pressure and around its socket file: clients past `shared` wait for a
 * slot but only so many (the rest are refused at once) and only so long (CVE-2024-7409: idle clients must
 * not hold the server); a freed slot goes to the next one waiting; multi-conn is not
 * announced when only one client is served at a time; the socket file goes at close, a stale one is
 * replaced, and a path that is not a socket is never replaced.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DriverRegistry, type Image, MemoryVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { CMD, encodeRequest, INFO, OPT, REP, TFLAG, u32, view } from '../src/index.js';
import { NbdServer, SocketStream } from '../src/node.js';
import { nameAndInfos, option, optReplies } from './option-wire.js';

const registry = new DriverRegistry([rawDriver]);

async function image(): Promise<Image> {
  const vfs = new MemoryVfs();
  vfs.put('/a.raw', new Uint8Array(4096));
  return openImage('/a.raw', { registry, vfs, format: 'raw' });
}

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'blk-nbd-limits-'));
}

async function dial(sock: string): Promise<SocketStream> {
  const raw = net.connect(sock);
  await new Promise((r, j) => {
    raw.once('connect', r);
    raw.once('error', j);
  });
  return new SocketStream(raw);
}

/** Resolves with 'greeted', 'closed' or 'silent' (nothing within `ms`). */
async function outcome(s: SocketStream, ms: number): Promise<'greeted' | 'closed' | 'silent'> {
  const timer = new Promise<'silent'>((r) => setTimeout(() => r('silent'), ms));
  const read = s.readExactly(18).then(
    (b) => (b === null ? 'closed' : 'greeted'),
    () => 'closed' as const,
  );
  return Promise.race([read, timer]);
}

async function go(s: SocketStream): Promise<number> {
  await s.write(u32(3));
  await s.write(option(OPT.GO, nameAndInfos('')));
  const r = await optReplies(s);
  expect(r.at(-1)!.type).toBe(REP.ACK);
  const info = r.find((x) => x.type === REP.INFO && view(x.data).getUint16(0) === INFO.EXPORT)!;
  return view(info.data).getUint16(10);
}

describe('NbdServer limits', () => {
  it('past `shared`, clients wait (at most maxQueued, at most queueTimeoutMs); the rest are refused at once', async () => {
    const img = await image();
    const dir = tmp();
    const sock = path.join(dir, 's.sock');
    const logs: string[] = [];
    const server = await NbdServer.listen({
      exports: [{ name: '', image: img }],
      socket: sock,
      shared: 1,
      maxQueued: 2,
      persistent: true,
      handshakeTimeoutMs: 10_000,
      queueTimeoutMs: 1500,
      log: (level, m) => logs.push(`${level}: ${m}`),
    });
    try {
      const a = await dial(sock);
      expect(await outcome(a, 2000)).toBe('greeted');
      // One client at a time: no multi-conn (a client opening a second connection would wait on itself).
      expect((await go(a)) & TFLAG.CAN_MULTI_CONN).toBe(0);
      const b = await dial(sock);
      const c = await dial(sock);
      await new Promise((r) => setTimeout(r, 100));
      const d = await dial(sock);
      const t0 = Date.now();
      expect(await outcome(d, 1000)).toBe('closed');
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(logs.join('\n')).toMatch(/client 4 from the socket refused: 1 served and 2 waiting/);
      // b and c are not served, and not kept waiting past queueTimeoutMs.
      expect(await outcome(b, 3000)).toBe('closed');
      expect(await outcome(c, 500)).toBe('closed');
      expect(logs.join('\n')).toMatch(/client 2 from the socket dropped: no free slot within 1.5 s/);
      // A slot that frees goes to the next client waiting.
      const e = await dial(sock);
      expect(await outcome(e, 200)).toBe('silent');
      await a.write(encodeRequest({ type: CMD.DISC, flags: 0, cookie: 1n, offset: 0, length: 0 }));
      expect(await outcome(e, 1000)).toBe('greeted');
      e.close();
    } finally {
      await server.close();
      await img.close();
    }
  });

  it('with shared > 1 the image decides multi-conn', async () => {
    const img = await image();
    const dir = tmp();
    const sock = path.join(dir, 's.sock');
    const server = await NbdServer.listen({
      exports: [{ name: '', image: img }],
      socket: sock,
      shared: 2,
      persistent: true,
    });
    try {
      const a = await dial(sock);
      await a.readExactly(18);
      expect((await go(a)) & TFLAG.CAN_MULTI_CONN).not.toBe(0);
      a.close();
    } finally {
      await server.close();
      await img.close();
    }
  });

  it('removes its socket file at close, replaces a stale one, never a path that is not a socket', async () => {
    const img = await image();
    const dir = tmp();
    const sock = path.join(dir, 's.sock');
    const exports = [{ name: '', image: img }];
    const first = await NbdServer.listen({ exports, socket: sock, persistent: true });
    await first.close();
    expect(fs.existsSync(sock)).toBe(false);
    // A stale socket file (its server killed) is replaced, as QEMU does.
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(sock, r));
    const second = await NbdServer.listen({ exports, socket: sock, persistent: true });
    const probe = await dial(sock);
    expect(await outcome(probe, 2000)).toBe('greeted');
    probe.close();
    await second.close();
    expect(fs.existsSync(sock)).toBe(false);
    stale.close();
    const file = path.join(dir, 'precious.txt');
    fs.writeFileSync(file, 'keep me');
    await expect(NbdServer.listen({ exports, socket: file })).rejects.toThrow(/EADDRINUSE/);
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
    const link = path.join(dir, 'link.sock');
    fs.symlinkSync(file, link);
    await expect(NbdServer.listen({ exports, socket: link })).rejects.toThrow(/EADDRINUSE/);
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    await img.close();
  });
});
