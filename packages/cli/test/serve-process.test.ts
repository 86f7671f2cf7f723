/**
 * blk serve as a process, qemu-nbd's habits: SIGTERM/SIGINT/SIGHUP stop it cleanly (no new clients,
 * the request in flight finishes and is answered, images flushed and closed, socket and pid file
 * removed), a second signal cuts off what is left, --fork returns once clients can connect (pid file
 * written by then, stdout /dev/null, errors on stderr and exit 1 when it cannot start), one-shot vs
 * -t, and the -v / default / -q logging.
 *
 * The flush is observable: a cow's allocation bitmap is written at flush, so a write over NBD that the
 * server never flushed is lost when it is SIGKILLed (checked below) but reads back after SIGTERM.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CMD, encodeRequest, INFO, OPT, REP, u32 } from '@blk/nbd';
import { SocketStream } from '@blk/nbd/node';
import { nameAndInfos, option, optReplies, simpleReply } from '../../nbd/test/option-wire.js';
import { BLK, blk, ensureBuilt, exited, hasCommand, rawFile, tempDir, waitFor } from './helpers.js';
import { startServe, tool } from './serve-helpers.js';

const MiB = 1024 * 1024;

beforeAll(() => ensureBuilt());

async function connect(sock: string): Promise<SocketStream> {
  const raw = net.connect(sock);
  await new Promise((r, j) => {
    raw.once('connect', r);
    raw.once('error', j);
  });
  const s = new SocketStream(raw);
  expect(await s.readExactly(18)).not.toBeNull();
  await s.write(u32(3));
  return s;
}

async function goRaw(sock: string, name = ''): Promise<SocketStream> {
  const s = await connect(sock);
  await s.write(option(OPT.GO, nameAndInfos(name, [INFO.BLOCK_SIZE])));
  expect((await optReplies(s)).at(-1)!.type).toBe(REP.ACK);
  return s;
}

async function eof(s: SocketStream): Promise<boolean> {
  try {
    return (await s.readExactly(1)) === null;
  } catch {
    return true;
  }
}

function cowOver(dir: string): string {
  const base = path.join(dir, 'base.img');
  rawFile(base, 4 * MiB, [[0, 4 * MiB, 0x11]]);
  const cow = path.join(dir, 'disk.cow');
  expect(blk(['create', '-q', '-f', 'cow', '-b', base, cow]).code).toBe(0);
  return cow;
}

const writeReq = (offset: number, length: number, cookie: bigint) =>
  encodeRequest({ type: CMD.WRITE, flags: 0, cookie, offset, length });

describe.sequential('blk serve as a process', () => {
  it('SIGKILL loses an unflushed cow write (the control), SIGTERM flushes it: it reads back through blk', async () => {
    const dir = tempDir('serve-flush');
    const cow = cowOver(dir);
    const sock = path.join(dir, 's.sock');
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      const s = await startServe(dir, ['-t', '-k', sock, cow]);
      const c = await goRaw(sock);
      await c.write(writeReq(MiB, 64 * 1024, 1n));
      await c.write(new Uint8Array(64 * 1024).fill(0x77));
      expect(await simpleReply(c)).toEqual({ error: 0, cookie: 1n });
      const exit = await s.stop(signal);
      const back = blk(['io', '-c', 'read -P 0x77 1M 64k', cow]);
      if (signal === 'SIGKILL') {
        expect(exit.signal).toBe('SIGKILL');
        expect(back.stdout).toContain('Pattern verification failed');
        fs.rmSync(sock, { force: true });
        fs.rmSync(s.pidFile, { force: true });
      } else {
        expect(exit).toEqual({ code: 0, signal: null });
        expect(back.code, back.stderr).toBe(0);
        expect(back.stdout).not.toContain('Pattern verification failed');
        expect(fs.existsSync(sock)).toBe(false);
        expect(fs.existsSync(s.pidFile)).toBe(false);
        // The client saw a clean end, not a reset.
        expect(await eof(c)).toBe(true);
      }
      c.close();
    }
  });

  it('a request in flight at SIGTERM finishes and is answered; a client in the handshake is let go at once', async () => {
    const dir = tempDir('serve-inflight');
    const cow = cowOver(dir);
    const sock = path.join(dir, 's.sock');
    const s = await startServe(dir, ['-t', '-e', '4', '--handshake-limit', '60', '-k', sock, cow]);
    const c = await goRaw(sock);
    const idle = await connect(sock); // in the handshake (it would be kept for 60 s)
    // Half of a 1 MiB write, then the signal, then the other half.
    await c.write(writeReq(2 * MiB, MiB, 9n));
    await c.write(new Uint8Array(MiB / 2).fill(0x3c));
    await waitFor(() => s.stderr().includes('client 1: export'), 5000, 'the GO to be logged');
    s.child.kill('SIGTERM');
    await waitFor(() => s.stderr().includes('SIGTERM: shutting down'), 5000, 'the shutdown to begin');
    const t0 = Date.now();
    expect(await eof(idle)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5000);
    // New clients are not taken any more.
    await expect(connect(sock)).rejects.toThrow();
    await c.write(new Uint8Array(MiB / 2).fill(0x3c));
    expect(await simpleReply(c)).toEqual({ error: 0, cookie: 9n });
    expect(await eof(c)).toBe(true);
    expect(await s.exit).toEqual({ code: 0, signal: null });
    const back = blk(['io', '-c', 'read -P 0x3c 2M 1M', cow]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).not.toContain('Pattern verification failed');
  });

  it('a second signal cuts off a request that does not finish; the image still closes and the files go', async () => {
    const dir = tempDir('serve-second');
    const cow = cowOver(dir);
    const sock = path.join(dir, 's.sock');
    const s = await startServe(dir, ['-t', '-k', sock, cow]);
    const c = await goRaw(sock);
    await c.write(writeReq(0, MiB, 3n));
    await c.write(new Uint8Array(1000)); // and never the rest
    await waitFor(() => s.stderr().includes('client 1: export'), 5000, 'the GO to be logged');
    s.child.kill('SIGINT');
    await waitFor(() => s.stderr().includes('SIGINT: shutting down'), 5000, 'the shutdown to begin');
    s.child.kill('SIGHUP');
    expect(await s.exit).toEqual({ code: 0, signal: null });
    expect(await eof(c)).toBe(true);
    expect(fs.existsSync(sock)).toBe(false);
    expect(fs.existsSync(s.pidFile)).toBe(false);
    const check = blk(['check', cow]);
    expect(check.code, check.stderr).toBe(0);
  });

  it('--fork returns once the server accepts clients: exit 0, pid file of the server, stdout silent; it runs until SIGTERM', async (ctx) => {
    if (!hasCommand('nbdinfo')) ctx.skip();
    const dir = tempDir('serve-fork');
    const file = path.join(dir, 'a.img');
    rawFile(file, MiB, [[0, 512, 0x61]]);
    const sock = path.join(dir, 's.sock');
    const pidFile = path.join(dir, 'serve.pid');
    const errFile = path.join(dir, 'stderr.txt');
    const errFd = fs.openSync(errFile, 'w');
    const parent = spawn(
      process.execPath,
      [BLK, 'serve', '--fork', '-t', '-f', 'raw', '-k', sock, '--pid-file', pidFile, file],
      {
        stdio: ['ignore', 'pipe', errFd],
      },
    );
    fs.closeSync(errFd);
    let stdout = '';
    parent.stdout!.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    expect(await exited(parent)).toEqual({ code: 0, signal: null });
    // Ready when the parent is gone: the pid file names the server (not the parent), the socket answers.
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(pid).not.toBe(parent.pid);
    expect(() => process.kill(pid, 0)).not.toThrow();
    const info = tool('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]);
    expect(info.stdout.trim(), info.stderr).toBe(String(MiB));
    expect(stdout).toBe('');
    process.kill(pid, 'SIGTERM');
    await waitFor(
      () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      10_000,
      'the forked server to exit',
    );
    expect(fs.existsSync(sock)).toBe(false);
    expect(fs.existsSync(pidFile)).toBe(false);
    expect(fs.readFileSync(errFile, 'utf8')).toBe('');
  });

  it('--fork that cannot start: exit 1 with the reason on stderr, no pid file, no socket', async () => {
    const dir = tempDir('serve-fork-fail');
    const sock = path.join(dir, 's.sock');
    const pidFile = path.join(dir, 'serve.pid');
    const errFile = path.join(dir, 'stderr.txt');
    const errFd = fs.openSync(errFile, 'w');
    const parent = spawn(
      process.execPath,
      [BLK, 'serve', '--fork', '-k', sock, '--pid-file', pidFile, path.join(dir, 'missing.img')],
      { stdio: ['ignore', 'ignore', errFd] },
    );
    fs.closeSync(errFd);
    expect(await exited(parent)).toEqual({ code: 1, signal: null });
    expect(fs.readFileSync(errFile, 'utf8')).toMatch(/^blk: .*missing\.img.*\n$/);
    expect(fs.existsSync(pidFile)).toBe(false);
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('without -t the server exits when its last client leaves (not the first of two)', async () => {
    const dir = tempDir('serve-oneshot');
    const file = path.join(dir, 'a.img');
    rawFile(file, MiB);
    const sock = path.join(dir, 's.sock');
    const s = await startServe(dir, ['-e', '2', '-f', 'raw', '-k', sock, file]);
    const a = await goRaw(sock);
    const b = await goRaw(sock);
    await a.write(encodeRequest({ type: CMD.DISC, flags: 0, cookie: 1n, offset: 0, length: 0 }));
    expect(await eof(a)).toBe(true);
    await waitFor(() => s.stderr().includes('client 1 disconnected'), 5000, 'client 1 to leave');
    await new Promise((r) => setTimeout(r, 200));
    expect(s.child.exitCode).toBeNull();
    b.close();
    expect(await s.exit).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('logging: -v tells connections and exports; by default only failures; -q nothing', async () => {
    const dir = tempDir('serve-log');
    const file = path.join(dir, 'a.img');
    rawFile(file, MiB);
    const sock = path.join(dir, 's.sock');
    const session = async (flag: string[]) => {
      const pidFile = path.join(dir, 'serve.pid');
      const args = ['serve', ...flag, '-t', '-e', '2', '-f', 'raw', '-k', sock, '--pid-file', pidFile, file];
      const child = spawn(process.execPath, [BLK, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
      });
      await waitFor(() => fs.existsSync(pidFile), 20_000, 'the pid file');
      const good = await goRaw(sock, '');
      await good.write(encodeRequest({ type: CMD.DISC, flags: 0, cookie: 1n, offset: 0, length: 0 }));
      expect(await eof(good)).toBe(true);
      const bad = await connect(sock);
      await bad.write(new TextEncoder().encode('NOTIHAVEOPT\x1b[31mRED....'));
      expect(await eof(bad)).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGTERM');
      expect(await exited(child)).toEqual({ code: 0, signal: null });
      return err;
    };
    const verbose = await session(['-v']);
    expect(verbose).toMatch(/^blk serve: serving '' on .*s\.sock$/m);
    expect(verbose).toContain('blk serve: client 1 connected from the socket');
    expect(verbose).toContain("blk serve: client 1: export '' negotiated");
    expect(verbose).toContain('blk serve: client 1 disconnected');
    expect(verbose).toContain('blk serve: client 2: option negotiation failed: bad option magic');
    expect(verbose).toContain('SIGTERM: shutting down');
    const normal = await session([]);
    expect(normal).toBe('blk serve: client 2: option negotiation failed: bad option magic\n');
    const quiet = await session(['-q']);
    expect(quiet).toBe('');
  });
});
