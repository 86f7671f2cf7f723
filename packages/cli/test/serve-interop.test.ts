/**
 * blk serve's transmission phase against real clients from Debian (spawned built bin): nbdcopy with
 * four connections (multi-conn) out of and into raw images and cow chains, equal to blk convert's
 * view; nbdsh (python3-libnbd) scripted protocol checks (pipelined aio_pread, block status with
 * REQ_ONE, CACHE, FAST_ZERO errors, NO_HOLE zeroing, TRIM); nbd-client -l; nbdfuse (when FUSE
 * mounts here); nbdinfo --map and --map=qemu:allocation-depth equal blk map; kill -9 of the server
 * in the middle of writes leaves every sector old or new.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, exited, hasCommand, rawFile, tempDir, waitFor } from './helpers.js';
import { spawnServe, tool } from './serve-helpers.js';

const MiB = 1024 * 1024;
const dir = tempDir('serve-io');
beforeAll(() => ensureBuilt());
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Debian's python3 first: python3-libnbd is installed for it (a pyenv python3 may shadow it). */
const ENV = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` };

/** A client tool (tool(): /usr/bin first), 120 s; a tool that cannot run says why on stderr. */
const run = (cmd: string, args: string[], input?: string) =>
  tool(cmd, args, { timeout: 120_000, input, maxBuffer: 256 * MiB, spawnError: 'stderr' });

function haveNbdsh(): boolean {
  return hasCommand('nbdsh') && run('nbdsh', ['-c', 'pass']).code === 0;
}

let n = 0;
/** Starts `blk serve ARGS -k SOCK -t -e 8 --pid-file PID FILE` and waits until it listens. */
async function serve(file: string, args: string[] = []) {
  const sock = path.join(dir, `nbd${++n}.sock`);
  const pid = path.join(dir, `serve${n}.pid`);
  const { child, exit, stderr } = await spawnServe(
    ['serve', '-t', '-e', '8', ...args, '-k', sock, '--pid-file', pid, file],
    pid,
  );
  const uri = (name = '') => `nbd+unix:///${name}?socket=${sock}`;
  const stop = async () => {
    child.kill('SIGTERM');
    await exit;
  };
  return { child, sock, uri, exit, stop, stderr };
}

/** A 24 MiB random raw base with a hole, and a cow overlay over it with writes of its own. */
function chain(name: string): { base: string; top: string } {
  const base = path.join(dir, `${name}.raw`);
  const fd = fs.openSync(base, 'w');
  fs.ftruncateSync(fd, 24 * MiB);
  let seed = 12345;
  const rnd = Buffer.alloc(MiB);
  for (const at of [0, 1, 2, 3, 8, 9, 20]) {
    for (let i = 0; i < rnd.length; i += 4) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      rnd.writeUInt32LE(seed, i);
    }
    fs.writeSync(fd, rnd, 0, rnd.length, at * MiB);
  }
  fs.closeSync(fd);
  const top = path.join(dir, `${name}.cow`);
  expect(blk(['create', '-q', '-f', 'cow', '-b', base, top]).code).toBe(0);
  const io = blk(['io', '-c', 'write -P 0x5c 512k 2M', '-c', 'write -P 0x6d 12M 1M', '-c', 'write -z 20M 64k', top]);
  expect(io.code).toBe(0);
  return { base, top };
}

/** blk convert's view of an image as raw bytes. */
function blkView(file: string): Buffer {
  const out = path.join(dir, `view${++n}.raw`);
  const r = blk(['convert', '-U', '-O', 'raw', file, out]);
  expect(r.stderr.replace(/blk: warning:.*\n/g, '')).toBe('');
  const b = fs.readFileSync(out);
  fs.rmSync(out);
  return b;
}

describe('nbdcopy (multi-conn)', () => {
  it.skipIf(!hasCommand('nbdcopy'))(
    'copies raw images and cow chains out of blk serve with 4 connections: bytes equal blk convert',
    async () => {
      const { base, top } = chain('copyout');
      for (const file of [base, top]) {
        const s = await serve(file, ['-r']);
        const out = path.join(dir, 'copied.raw');
        const r = run('nbdcopy', ['--connections=4', '--requests=16', s.uri(), out]);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(Buffer.compare(fs.readFileSync(out), blkView(file))).toBe(0);
        const info = run('nbdinfo', ['--json', s.uri()]);
        expect(JSON.parse(info.stdout).exports[0].can_multi_conn).toBe(true);
        await s.stop();
      }
    },
  );

  it.skipIf(!hasCommand('nbdcopy'))(
    'copies into blk serve with 4 connections (a raw file and a cow overlay): blk reads the source back',
    async () => {
      const { base } = chain('copyin');
      for (const format of ['raw', 'cow']) {
        const target = path.join(dir, `target.${format}`);
        const size = String(24 * MiB);
        expect(blk(['create', '-q', '-f', format, target, size]).code).toBe(0);
        const s = await serve(target, ['-f', format]);
        const r = run('nbdcopy', ['--connections=4', '--flush', base, s.uri()]);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        await s.stop();
        expect(Buffer.compare(blkView(target), fs.readFileSync(base))).toBe(0);
      }
    },
  );
});

describe('nbdsh (python3-libnbd): protocol-level checks', () => {
  it.skipIf(!haveNbdsh())(
    'pipelined aio_pread, block status with REQ_ONE, CACHE, FAST_ZERO, NO_HOLE, TRIM',
    async () => {
      const { top } = chain('nbdsh');
      const raw = path.join(dir, 'fastzero.raw');
      rawFile(raw, 8 * MiB, [[0, 4 * MiB, 0x41]]);
      const want = blkView(top);
      fs.writeFileSync(path.join(dir, 'want.bin'), want);
      const s = await serve(top);
      const sr = await serve(raw, ['-f', 'raw']);
      const script = `
import errno, nbd, sys
want = open(${JSON.stringify(path.join(dir, 'want.bin'))}, 'rb').read()
def connect(uri):
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.add_meta_context("qemu:allocation-depth")
    h.connect_uri(uri)
    return h
h = connect(${JSON.stringify(s.uri())})
assert h.can_multi_conn() and h.can_cache() and h.can_fast_zero() and h.can_df() and h.can_flush() and h.can_fua()
# 64 reads in flight at once, in a scattered order; each buffer holds its range.
cmds = []
for i in range(64):
    off = ((i * 37) % 96) * 256 * 1024
    buf = nbd.Buffer(256 * 1024)
    cmds.append((h.aio_pread(buf, off), buf, off))
assert h.aio_in_flight() > 1
while h.aio_in_flight() > 0:
    h.poll(-1)
for c, buf, off in cmds:
    assert h.aio_command_completed(c)
    assert buf.to_bytearray() == want[off:off + 256 * 1024], off
# Block status, REQ_ONE: one extent per context, not longer than asked.
seen = {}
def ext(meta, offset, entries, err):
    seen[meta] = list(entries)
    return 0
h.block_status(3 * 1024 * 1024, 512 * 1024, ext, nbd.CMD_FLAG_REQ_ONE)
assert len(seen["base:allocation"]) == 2 and 0 < seen["base:allocation"][0] <= 3 * 1024 * 1024, seen
assert len(seen["qemu:allocation-depth"]) == 2, seen
assert seen["qemu:allocation-depth"][1] == 1  # 512k+2M written in the overlay: depth 1
h.block_status(1024 * 1024, 20 * 1024 * 1024, ext)
assert sum(seen["base:allocation"][0::2]) >= 1024 * 1024
# CACHE: advisory, succeeds, changes nothing.
h.cache(8 * 1024 * 1024, 4 * 1024 * 1024)
assert h.pread(4096, 8 * 1024 * 1024) == want[8 * 1024 * 1024:8 * 1024 * 1024 + 4096]
# FAST_ZERO on a cow overlay (no cheap zeroing): ENOTSUP at once, nothing changed.
try:
    h.zero(65536, 12 * 1024 * 1024, nbd.CMD_FLAG_FAST_ZERO)
    raise SystemExit("fast zero on cow succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
assert h.pread(65536, 12 * 1024 * 1024) == want[12 * 1024 * 1024:12 * 1024 * 1024 + 65536]
# Without FAST_ZERO it zeroes (NO_HOLE: allocated zeros), reads back zeros over backing data.
h.zero(65536, 1024 * 1024, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
assert h.pread(65536, 1024 * 1024) == bytes(65536)
# TRIM in the overlay: the range falls through to the backing file again.
h.trim(65536, 12 * 1024 * 1024)
# Bad requests keep the connection usable.
h.set_strict_mode(0)
for off, ln in ((24 * 1024 * 1024, 512), (0, 0x7fffffff)):
    try:
        h.pread(ln if ln < 1 << 20 else 512, off) if ln < 1 << 20 else h.pread(33 * 1024 * 1024, 0)
        raise SystemExit("bad read succeeded")
    except nbd.Error as e:
        assert e.errnum in (errno.EINVAL, errno.EOVERFLOW), e
assert h.pread(512, 0) == want[0:512]
h.shutdown()
# A raw file on this file system zeroes cheaply: FAST_ZERO succeeds there.
r = connect(${JSON.stringify(sr.uri())})
r.zero(1024 * 1024, 0, nbd.CMD_FLAG_FAST_ZERO)
assert r.pread(1024 * 1024, 0) == bytes(1024 * 1024)
r.shutdown()
print("nbdsh checks passed")
`;
      const r = run('/usr/bin/python3', ['-'], script);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain('nbdsh checks passed');
      await s.stop();
      await sr.stop();
      // What the script did, seen by blk: zeros at 1 MiB, the overlay's 0x6d at 12 MiB trimmed away (backing data).
      const after = blkView(top);
      expect(after.subarray(MiB, MiB + 65536).every((b) => b === 0)).toBe(true);
      expect(
        Buffer.compare(
          after.subarray(12 * MiB, 12 * MiB + 65536),
          fs.readFileSync(chain('ref').base).subarray(12 * MiB, 12 * MiB + 65536),
        ),
      ).toBe(0);
    },
  );
});

describe('listing, FUSE, maps', () => {
  it.skipIf(!hasCommand('nbd-client'))('nbd-client -l lists the export', async () => {
    const { base } = chain('list');
    const s = await serve(base, ['-r', '-x', 'disk0']);
    const r = run('nbd-client', ['-l', '-unix', s.sock]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toContain('disk0');
    await s.stop();
  });

  it('nbdfuse mounts the export as a file that reads as blk convert (skipped where FUSE cannot mount)', async (ctx) => {
    if (!hasCommand('nbdfuse') || !fs.existsSync('/dev/fuse')) {
      ctx.skip(); // no nbdfuse (libnbd-bin) or no /dev/fuse here
      return;
    }
    const { top } = chain('fuse');
    const s = await serve(top, ['-r']);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    const fuse = spawn('nbdfuse', [mnt, s.uri()], { env: ENV, stdio: 'ignore' });
    const file = path.join(mnt, 'nbd');
    try {
      await waitFor(() => fs.existsSync(file), 10_000, 'nbdfuse to mount');
    } catch {
      fuse.kill();
      await s.stop();
      console.log('nbdfuse: FUSE does not mount here; skipped');
      ctx.skip();
      return;
    }
    try {
      expect(Buffer.compare(fs.readFileSync(file), blkView(top))).toBe(0);
    } finally {
      run('fusermount3', ['-u', mnt]);
      await exited(fuse);
      await s.stop();
    }
  });

  it.skipIf(!hasCommand('nbdinfo'))(
    'nbdinfo --map and --map=qemu:allocation-depth equal blk map of the chain',
    async () => {
      const { top } = chain('maps');
      const s = await serve(top, ['-r']);
      const blkMap = JSON.parse(blk(['map', '-U', '--output=json', top]).stdout) as Array<{
        start: number;
        length: number;
        depth?: number;
        data: boolean;
        zero: boolean;
      }>;
      type Run = [number, number, number];
      const merge = (runs: Run[]) => {
        const out: Run[] = [];
        for (const r of runs) {
          const last = out[out.length - 1];
          if (last && last[2] === r[2] && last[0] + last[1] === r[0]) last[1] += r[1];
          else out.push([...r]);
        }
        return out;
      };
      const theirs = (ctx: string) =>
        merge(
          (
            JSON.parse(run('nbdinfo', ['--json', `--map=${ctx}`, s.uri()]).stdout) as Array<{
              offset: number;
              length: number;
              type: number;
            }>
          ).map((e) => [e.offset, e.length, e.type] as Run),
        );
      // base:allocation: hole bit where no data, zero bit where it reads zeros.
      const base = merge(blkMap.map((e) => [e.start, e.length, (e.data ? 0 : 1) | (e.zero ? 2 : 0)] as Run));
      expect(theirs('base:allocation')).toEqual(base);
      // qemu:allocation-depth: 0 unallocated, 1 the overlay, 2 its backing file.
      const depth = merge(blkMap.map((e) => [e.start, e.length, e.depth === undefined ? 0 : e.depth + 1] as Run));
      expect(theirs('qemu:allocation-depth')).toEqual(depth);
      expect(depth.some((r) => r[2] === 1) && depth.some((r) => r[2] === 2)).toBe(true);
      await s.stop();
    },
  );
});

describe('kill -9 in the middle of writes', () => {
  it.skipIf(!haveNbdsh())('every sector reads as its old or its new contents afterwards (raw and cow)', async () => {
    for (const format of ['raw', 'cow']) {
      const { base, top } = chain(`kill${format}`);
      const file = format === 'raw' ? base : top;
      const before = blkView(file);
      const s = await serve(file, ['-f', format]);
      // Writes of 64 KiB (pattern 0xa0 + generation) in flight until the server dies.
      const script = `
import nbd, sys
h = nbd.NBD()
h.connect_uri(${JSON.stringify(s.uri())})
i = 0
try:
    while True:
        for k in range(8):
            off = ((i * 8 + k) * 7919 % 384) * 65536
            h.aio_pwrite(bytes([0xa0 + (i % 16)]) * 65536, off)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        if i == 0:
            print("ready", flush=True)
        i += 1
except nbd.Error:
    pass
`;
      const py = spawn('/usr/bin/python3', ['-c', script], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      py.stdout.on('data', (b: Buffer) => {
        out += b.toString();
      });
      // Once the first writes were answered (so some landed, however slow a loaded machine makes the
      // start), then more time for writes in flight.
      await waitFor(() => out.includes('ready'), 20_000, 'the first writes to be answered');
      await new Promise((r) => setTimeout(r, 700));
      s.child.kill('SIGKILL');
      await s.exit;
      await exited(py);
      fs.rmSync(s.sock, { force: true });
      const after = blkView(file);
      let changed = 0;
      for (let o = 0; o < after.length; o += 512) {
        const a = after.subarray(o, o + 512);
        if (Buffer.compare(a, before.subarray(o, o + 512)) === 0) continue;
        changed++;
        const v = a[0]!;
        expect(v >= 0xa0 && v < 0xb0 && a.every((b) => b === v), `sector at ${o} (${format})`).toBe(true);
      }
      expect(changed).toBeGreaterThan(0);
    }
  });
});
