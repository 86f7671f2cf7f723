/**
 * The addon's sendv (native/send.c): memory, zeros and file ranges (zero-filled past the file's
 * end) arrive in plan order on a real Unix socket; a peer that reads nothing for 200 ms gets the
 * job back with EAGAIN (the thread is free again), cancel ends a waiting job, a peer that went
 * away ends it with an error; garbage arguments throw before any
 * system call; BLK_NATIVE_IO=off (enabled: false) offers nothing.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nativeSocketSender } from '../src/index.js';
import { loadAddon } from '../src/addon.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-native-send-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const sender = nativeSocketSender();

/** A connected pair: `server` (whose descriptor sendv writes to) and `client`. */
async function pair(): Promise<{ server: net.Socket; client: net.Socket; fd: number; close: () => void }> {
  const sock = path.join(dir, `p${Math.random().toString(36).slice(2)}.sock`);
  let server!: net.Socket;
  const listener = net.createServer((s) => {
    server = s;
  });
  await new Promise<void>((r) => listener.listen(sock, r));
  const client = net.connect(sock);
  await new Promise<void>((r) => client.once('connect', () => r()));
  while (server === undefined) await new Promise((r) => setTimeout(r, 5));
  server.on('error', () => undefined);
  client.on('error', () => undefined);
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return {
    server,
    client,
    fd,
    close: () => {
      server.destroy();
      client.destroy();
      listener.close();
    },
  };
}

function collect(s: net.Socket, n: number): Promise<Buffer> {
  const got: Buffer[] = [];
  let have = 0;
  return new Promise((resolve) => {
    s.on('data', (b: Buffer) => {
      got.push(b);
      have += b.length;
      if (have >= n) resolve(Buffer.concat(got));
    });
  });
}

const describeLinux = sender === undefined ? describe.skip : describe;

describeLinux('sendv', () => {
  it('sends memory, zeros and file ranges in plan order; past the end of the file, zeros', async () => {
    const file = path.join(dir, 'f.bin');
    const content = Buffer.alloc(3 * 1024 * 1024 + 100);
    for (let i = 0; i < content.length; i++) content[i] = (i * 131 + 7) & 0xff;
    fs.writeFileSync(file, content);
    const fileFd = fs.openSync(file, 'r');
    const p = await pair();
    const data = Buffer.from('HEADERtail');
    // header "HEADER", 3 MiB from offset 50, 1000 zeros, "tail", 300 bytes from 100 before the end (200 past it).
    const plan = Float64Array.from([
      -1,
      0,
      6,
      fileFd,
      50,
      3 * 1024 * 1024,
      -2,
      0,
      1000,
      -1,
      6,
      4,
      fileFd,
      content.length - 100,
      300,
    ]);
    const expected = Buffer.concat([
      Buffer.from('HEADER'),
      content.subarray(50, 50 + 3 * 1024 * 1024),
      Buffer.alloc(1000),
      Buffer.from('tail'),
      content.subarray(content.length - 100),
      Buffer.alloc(200),
    ]);
    const got = collect(p.client, expected.length);
    const outcome = await new Promise<[number, number]>((r) => sender!.sendv(p.fd, data, plan, (e, n) => r([e, n])));
    expect(outcome).toEqual([0, expected.length]);
    expect((await got).equals(expected)).toBe(true);
    fs.closeSync(fileFd);
    p.close();
  });

  it('gives the thread back (EAGAIN, bytes sent so far) when the peer reads nothing for 200 ms', async () => {
    const p = await pair();
    p.client.pause();
    const total = 64 * 1024 * 1024;
    const t0 = Date.now();
    const [errno, sent] = await new Promise<[number, number]>((r) =>
      sender!.sendv(p.fd, new Uint8Array(0), new Float64Array([-2, 0, total]), (e, n) => r([e, n])),
    );
    expect(errno).toBe(os.constants.errno.EAGAIN);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(total);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    p.close();
  });

  it('ends with an error once the peer is gone', async () => {
    const p = await pair();
    // Before Node sees the end (it would close the server's descriptor): the peer is gone, ours open.
    p.client.destroy();
    const [errno] = await new Promise<[number, number]>((r) =>
      sender!.sendv(p.fd, new Uint8Array(0), new Float64Array([-2, 0, 16 * 1024 * 1024]), (e, n) => r([e, n])),
    );
    expect([os.constants.errno.EPIPE, os.constants.errno.ECONNRESET]).toContain(errno);
    p.close();
  });

  it('cancel ends a job that waits for the peer', async () => {
    const p = await pair();
    p.client.pause();
    const done = new Promise<[number, number]>((r) => {
      const cancel = sender!.sendv(p.fd, new Uint8Array(0), new Float64Array([-2, 0, 64 * 1024 * 1024]), (e, n) =>
        r([e, n]),
      );
      setTimeout(cancel, 60);
    });
    const [errno, sent] = await done;
    expect(errno).toBe(os.constants.errno.ECANCELED);
    expect(sent).toBeGreaterThan(0);
    p.close();
  });

  it('refuses garbage before any system call', () => {
    const addon = loadAddon()!;
    const ok = () => undefined;
    expect(() => addon.sendv!(-1, new Uint8Array(1), new Float64Array(0), ok)).toThrow(TypeError);
    expect(() => addon.sendv!(0, [] as unknown as Uint8Array, new Float64Array(0), ok)).toThrow(TypeError);
    expect(() => addon.sendv!(0, new Uint8Array(1), new Float64Array(2), ok)).toThrow(TypeError);
    expect(() => addon.sendv!(0, new Uint8Array(1), new Float64Array(3), 1 as unknown as () => void)).toThrow(
      TypeError,
    );
    // Memory past the data, a fraction, a descriptor below -2, a negative length.
    for (const t of [
      [-1, 0, 2],
      [-1, 0.5, 1],
      [-3, 0, 1],
      [5, 0, -1],
    ]) {
      expect(() => addon.sendv!(0, new Uint8Array(1), Float64Array.from(t), ok)).toThrow(RangeError);
    }
  });

  it('is not offered with enabled: false (BLK_NATIVE_IO=off)', () => {
    expect(nativeSocketSender({ enabled: false })).toBeUndefined();
    expect(nativeSocketSender({ addon: path.join(dir, 'missing.node') })).toBeUndefined();
  });
});
