/**
 * blk serve against real NBD clients (qemu-img, qemu-io, nbdinfo) and a hostile one (a raw socket
 * speaking the protocol): the built bin is spawned as qemu-nbd would be.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SocketStream } from '@blk/nbd/node';
import { CMD, concat, encodeRequest, IHAVEOPT, NBD_ERR, OPT, REP, SIMPLE_REPLY_MAGIC, u16, u32, view } from '@blk/nbd';
import { blk, ensureBuilt, hasCommand, rawFile, runTool, tempDir } from './helpers.js';
import { spawnServe } from './serve-helpers.js';

const MiB = 1024 * 1024;

beforeAll(() => ensureBuilt());

/** A client tool (this process's PATH), 60 s not stretched; a tool that cannot run reports (code null). */
const run = (cmd: string, args: string[]) => runTool(cmd, args, { fixedTimeout: true, spawnError: 'ignore' });

/** Starts `blk serve ARGS -k SOCK --pid-file PID FILE` and waits until it listens. */
async function serve(dir: string, file: string, args: string[]) {
  const sock = path.join(dir, 'nbd.sock');
  const pid = path.join(dir, 'serve.pid');
  const { child, exit, stderr } = await spawnServe(['serve', ...args, '-k', sock, '--pid-file', pid, file], pid);
  expect(Number(fs.readFileSync(pid, 'utf8'))).toBe(child.pid);
  return { child, sock, pid, exit, stderr };
}

/** Merged [start, length, data] runs of `nbdinfo --map` (base:allocation) output. */
function nbdinfoRuns(text: string): Array<[number, number, boolean]> {
  const out: Array<[number, number, boolean]> = [];
  for (const line of text.trim().split('\n')) {
    const [start, length, type] = line.trim().split(/\s+/).map(Number) as [number, number, number];
    const data = (type & 1) === 0;
    const last = out[out.length - 1];
    if (last && last[2] === data) last[1] += length;
    else out.push([start, length, data]);
  }
  return out;
}

/** Merged [start, length, data] runs of `blk map --output=json`. */
function blkMapRuns(json: string): Array<[number, number, boolean]> {
  const out: Array<[number, number, boolean]> = [];
  for (const e of JSON.parse(json) as Array<{ start: number; length: number; data: boolean }>) {
    const last = out[out.length - 1];
    if (last && last[2] === e.data) last[1] += e.length;
    else out.push([e.start, e.length, e.data]);
  }
  return out;
}

describe.sequential('blk serve', () => {
  it('serves a raw image read-only to qemu-img info/convert/compare and nbdinfo --list/--map; SIGTERM cleans up', async (ctx) => {
    if (!hasCommand('qemu-img') || !hasCommand('nbdinfo')) ctx.skip();
    const dir = tempDir('serve-ro');
    const file = path.join(dir, 'a.img');
    rawFile(file, 8 * MiB, [
      [0, 64 * 1024, 0x11],
      [3 * MiB, 1 * MiB + 4096, 0x22],
      [8 * MiB - 4096, 4096, 0x33],
    ]);
    const s = await serve(dir, file, ['-f', 'raw', '-r', '-t', '-x', 'disk', '-D', 'a test disk', '-e', '4']);
    const url = `nbd+unix:///disk?socket=${s.sock}`;
    try {
      const info = run('qemu-img', ['info', '--output=json', url]);
      expect(info.code, info.stderr).toBe(0);
      expect(JSON.parse(info.stdout)['virtual-size']).toBe(8 * MiB);
      const out = path.join(dir, 'copy.raw');
      const conv = run('qemu-img', ['convert', '-O', 'raw', url, out]);
      expect(conv.code, conv.stderr).toBe(0);
      expect(fs.readFileSync(out).equals(fs.readFileSync(file))).toBe(true);
      const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', file, url]);
      expect(cmp.code, cmp.stderr).toBe(0);
      const list = run('nbdinfo', ['--list', `nbd+unix:///?socket=${s.sock}`]);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain('export="disk"');
      expect(list.stdout).toContain('is_read_only: true');
      expect(list.stdout).toContain('can_multi_conn: true');
      expect(list.stdout).toContain('base:allocation');
      const map = run('nbdinfo', ['--map', url]);
      expect(map.code, map.stderr).toBe(0);
      const mine = blk(['map', '--output=json', '-f', 'raw', '-U', file]);
      expect(mine.code, mine.stderr).toBe(0);
      const runs = nbdinfoRuns(map.stdout);
      expect(runs).toEqual(blkMapRuns(mine.stdout));
      expect(runs.filter((r) => r[2]).length).toBe(3);
      const depth = run('nbdinfo', ['--map=qemu:allocation-depth', url]);
      expect(depth.code, depth.stderr).toBe(0);
      expect(depth.stdout.trim()).toMatch(/^0\s+8388608\s+1\s+local$/);
      // -t: still serving after the clients left.
      expect(s.child.exitCode).toBeNull();
    } finally {
      s.child.kill('SIGTERM');
    }
    expect(await s.exit).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(s.sock)).toBe(false);
    expect(fs.existsSync(s.pid)).toBe(false);
    expect(s.stderr()).toBe('');
  });

  it('serves a cow overlay: base:allocation as blk map, qemu:allocation-depth from the chain', async (ctx) => {
    if (!hasCommand('nbdinfo')) ctx.skip();
    const dir = tempDir('serve-cow');
    const base = path.join(dir, 'base.img');
    const top = path.join(dir, 'top.cow');
    rawFile(base, 2 * MiB, [[0, MiB, 0x01]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', base, top]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 2 512k 64k', top]).code).toBe(0);
    const s = await serve(dir, top, ['-r', '-t']);
    const url = `nbd+unix:///?socket=${s.sock}`;
    try {
      const map = run('nbdinfo', ['--map', url]);
      expect(map.code, map.stderr).toBe(0);
      const mine = blk(['map', '--output=json', '-U', top]);
      expect(nbdinfoRuns(map.stdout)).toEqual(blkMapRuns(mine.stdout));
      const depth = run('nbdinfo', ['--map=qemu:allocation-depth', url]);
      expect(depth.code, depth.stderr).toBe(0);
      const rows = depth.stdout
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number));
      expect(rows).toEqual([
        [0, 512 * 1024, 2],
        [512 * 1024, 64 * 1024, 1],
        [576 * 1024, 2 * MiB - 576 * 1024, 2],
      ]);
    } finally {
      s.child.kill('SIGINT');
    }
    expect(await s.exit).toEqual({ code: 0, signal: null });
  });

  it('takes qemu-io writes (FUA, zeroes, discard) that blk reads back, and exits after the last client', async (ctx) => {
    if (!hasCommand('qemu-io')) ctx.skip();
    const dir = tempDir('serve-rw');
    const file = path.join(dir, 'a.img');
    rawFile(file, 4 * MiB, [[0, 4 * MiB, 0x44]]);
    const s = await serve(dir, file, ['-f', 'raw']);
    const url = `nbd+unix:///?socket=${s.sock}`;
    const io = run('qemu-io', [
      '-f',
      'raw',
      '-c',
      'write -P 0x5a 4096 64k',
      '-c',
      'write -f -P 0x6b 1M 8k',
      '-c',
      'write -z 2M 64k',
      '-c',
      'discard 3M 1M',
      '-c',
      'flush',
      '-c',
      'read -P 0x5a 4096 64k',
      url,
    ]);
    expect(io.code, io.stderr).toBe(0);
    expect(io.stdout).not.toMatch(/failed|Pattern verification/);
    expect(await s.exit).toEqual({ code: 0, signal: null }); // no -t: gone with its only client
    expect(fs.existsSync(s.sock)).toBe(false);
    const check = blk([
      'io',
      '-f',
      'raw',
      '-c',
      'read -P 0x44 0 4096',
      '-c',
      'read -P 0x5a 4096 64k',
      '-c',
      'read -P 0x6b 1M 8k',
      '-c',
      'read -P 0 2M 64k',
      '-c',
      'read -P 0 3M 1M',
      file,
    ]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).not.toMatch(/failed|Pattern verification/);
  });

  it('survives hostile clients: oversized option, oversized write, requests past the end, a stalled handshake; -e 1 queues the next client', async () => {
    const dir = tempDir('serve-hostile');
    const file = path.join(dir, 'a.img');
    rawFile(file, 1 * MiB, [[0, 4096, 0x77]]);
    const s = await serve(dir, file, ['-f', 'raw', '-t', '--handshake-limit', '2']);
    try {
      const socket = net.connect(s.sock);
      await new Promise((r) => socket.once('connect', r));
      const c = new SocketStream(socket);
      expect(new TextDecoder().decode((await c.readExactly(18))!.subarray(0, 16))).toBe('NBDMAGICIHAVEOPT');
      await c.write(u32(3));
      const option = (opt: number, data: Uint8Array) => {
        const h = new Uint8Array(16);
        view(h).setBigUint64(0, IHAVEOPT);
        view(h).setUint32(8, opt);
        view(h).setUint32(12, data.length);
        return concat([h, data]);
      };
      const reply = async () => {
        const h = (await c.readExactly(20))!;
        await c.readExactly(view(h).getUint32(16));
        return view(h).getUint32(12);
      };
      await c.write(option(OPT.GO, new Uint8Array(70_000)));
      expect(await reply()).toBe(REP.ERR_TOO_BIG);
      await c.write(option(OPT.GO, concat([u32(0), u16(0)])));
      for (;;) if ((await reply()) === REP.ACK) break;
      // -e 1: a second client waits, unanswered, until the first leaves.
      const second = net.connect(s.sock);
      await new Promise((r) => second.once('connect', r));
      const w = new SocketStream(second);
      let greeted = false;
      const greeting = w.readExactly(18).then((b) => {
        greeted = true;
        return b;
      });
      const simple = async () => {
        const h = (await c.readExactly(16))!;
        expect(view(h).getUint32(0)).toBe(SIMPLE_REPLY_MAGIC);
        return view(h).getUint32(4);
      };
      const req = (type: number, offset: number, length: number) =>
        encodeRequest({ type, offset, length, flags: 0, cookie: 1n });
      // 64 MiB announced and sent: refused, the payload skipped, the connection still in step.
      await c.write(req(CMD.WRITE, 0, 64 * MiB));
      const chunk = new Uint8Array(MiB).fill(0xff);
      for (let i = 0; i < 64; i++) await c.write(chunk);
      expect(await simple()).toBe(NBD_ERR.EOVERFLOW);
      await c.write(req(CMD.READ, MiB - 1, 2));
      expect(await simple()).toBe(NBD_ERR.EINVAL);
      await c.write(req(CMD.READ, 2 ** 52, 1));
      expect(await simple()).toBe(NBD_ERR.EINVAL);
      await c.write(concat([req(CMD.WRITE, MiB, 1), new Uint8Array(1)]));
      expect(await simple()).toBe(NBD_ERR.ENOSPC);
      await c.write(req(CMD.READ, 0, 4));
      expect(await simple()).toBe(0);
      expect([...(await c.readExactly(4))!]).toEqual([0x77, 0x77, 0x77, 0x77]);
      expect(greeted).toBe(false);
      // The second client's handshake clock starts once the first has left, so not before this
      // instant: time measured from here is at least the limit, however late the greeting arrives.
      const t0 = Date.now();
      await c.write(req(CMD.DISC, 0, 0));
      expect(await c.readExactly(1)).toBeNull();
      c.close();
      expect(new TextDecoder().decode((await greeting)!.subarray(0, 8))).toBe('NBDMAGIC');
      // --handshake-limit 2: a client that stops negotiating is dropped (not at once).
      expect(await w.readExactly(1)).toBeNull();
      expect(Date.now() - t0).toBeGreaterThan(1000);
      w.close();
    } finally {
      s.child.kill('SIGTERM');
    }
    expect(await s.exit).toEqual({ code: 0, signal: null });
    // Nothing of the refused writes landed.
    expect(
      fs
        .readFileSync(file)
        .subarray(4096)
        .every((b) => b === 0),
    ).toBe(true);
  });
});
