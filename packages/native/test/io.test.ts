/**
 * The addon's pread/pwrite (native/io.c) and NodeFileStorage running on them:
 * the bytes land where fs would put them, end of file and errors come back
 * the way fs reports them, and garbage arguments never reach the kernel.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BlockError,
  MemoryFile,
  MemoryStorage,
  NodeFileStorage,
  NodeVfs,
  preallocate,
  type PositionalSyscalls,
} from '@blk/core';
import { hostVfs } from '@blk/images';
import { addonLoadError, lockStorage, nativeSyscalls } from '../src/index.js';
import { loadAddon } from '../src/addon.js';
import { syscallsOf } from '../src/io.js';

function loadAddonForTest() {
  const addon = loadAddon();
  if (!addon) throw new Error(`the @blk/native addon did not load: ${addonLoadError()}`);
  return addon;
}

const sys = nativeSyscalls();
// CI builds the addon at install: there, a missing addon is a failure, not a skip.
const mustHave = process.env.CI === 'true';
if (!sys && !mustHave) console.warn(`skipping native io tests: the addon did not load (${addonLoadError()})`);
const run = sys || mustHave ? describe : describe.skip;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-native-io-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function fileWith(name: string, bytes: Uint8Array): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

const pattern = (n: number, seed = 1) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + (i >> 8)) & 0xff);

run('native pread/pwrite', () => {
  const s = () => {
    if (!sys) throw new Error(`the @blk/native addon did not load: ${addonLoadError()}`);
    return sys;
  };
  const EINVAL = -os.constants.errno.EINVAL;

  it('pread fills the buffer from the position, short at the end of the file, 0 past it', () => {
    const data = pattern(10000);
    const fd = fs.openSync(fileWith('r.bin', data), 'r');
    try {
      const into = new Uint8Array(4096);
      expect(s().pread(fd, into, 1234)).toBe(4096);
      expect(into).toEqual(data.subarray(1234, 1234 + 4096));
      expect(s().pread(fd, into, 8000)).toBe(2000);
      expect(into.subarray(0, 2000)).toEqual(data.subarray(8000));
      expect(s().pread(fd, into, 10000)).toBe(0);
      expect(s().pread(fd, into, 2 ** 40)).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
  });

  it("honours a view's byteOffset and counts bytes, not elements, of wider typed arrays", () => {
    const data = pattern(4096, 3);
    const fd = fs.openSync(fileWith('v.bin', data), 'r');
    try {
      const backing = new Uint8Array(300).fill(0xee);
      const view = backing.subarray(100, 200);
      expect(s().pread(fd, view, 50)).toBe(100);
      expect(backing.subarray(0, 100).every((b) => b === 0xee)).toBe(true);
      expect(backing.subarray(100, 200)).toEqual(data.subarray(50, 150));
      expect(backing.subarray(200).every((b) => b === 0xee)).toBe(true);
      const words = new Uint32Array(8);
      expect(s().pread(fd, words, 0)).toBe(32);
      expect(new Uint8Array(words.buffer)).toEqual(data.subarray(0, 32));
    } finally {
      fs.closeSync(fd);
    }
  });

  it('pwrite writes at the position and grows the file', () => {
    const p = fileWith('w.bin', new Uint8Array(100));
    const fd = fs.openSync(p, 'r+');
    try {
      const data = pattern(500, 5);
      expect(s().pwrite(fd, data.subarray(10, 60), 20)).toBe(50);
      expect(s().pwrite(fd, data, 1000)).toBe(500);
    } finally {
      fs.closeSync(fd);
    }
    const got = fs.readFileSync(p);
    expect(got.length).toBe(1500);
    expect(got.subarray(20, 70)).toEqual(Buffer.from(pattern(500, 5).subarray(10, 60)));
    expect(got.subarray(100, 1000).every((b) => b === 0)).toBe(true);
    expect(got.subarray(1000)).toEqual(Buffer.from(pattern(500, 5)));
  });

  it('returns -errno from the kernel: EISDIR for a directory, EBADF for a closed descriptor or a read-only one written', () => {
    const dfd = fs.openSync(dir, 'r');
    try {
      expect(s().pread(dfd, new Uint8Array(16), 0)).toBe(-os.constants.errno.EISDIR);
    } finally {
      fs.closeSync(dfd);
    }
    const p = fileWith('e.bin', new Uint8Array(64));
    const fd = fs.openSync(p, 'r');
    try {
      expect(s().pwrite(fd, new Uint8Array(8), 0)).toBe(-os.constants.errno.EBADF);
    } finally {
      fs.closeSync(fd);
    }
    // A descriptor number no process has open (a closed one could be reused at once).
    expect(s().pread(2 ** 30, new Uint8Array(8), 0)).toBe(-os.constants.errno.EBADF);
    expect(fs.readFileSync(p).every((b) => b === 0)).toBe(true);
  });

  it('refuses descriptor numbers that are not integers in [0, 2^31) with -EBADF instead of reading some other descriptor', () => {
    const p = fileWith('fd.bin', pattern(64));
    const fd = fs.openSync(p, 'r+');
    try {
      const EBADF = -os.constants.errno.EBADF;
      for (const bad of [Number.NaN, -1, 0.5, fd + 0.5, fd + 2 ** 32, 2 ** 31, Number.POSITIVE_INFINITY]) {
        const into = new Uint8Array(8).fill(0xaa);
        expect(s().pread(bad, into, 0), `pread(${bad})`).toBe(EBADF);
        expect(into.every((b) => b === 0xaa)).toBe(true);
        expect(s().pwrite(bad, new Uint8Array(8).fill(0x58), 0), `pwrite(${bad})`).toBe(EBADF);
        expect(s().seekData!(bad, 0), `seek(${bad})`).toBe(EBADF);
      }
      expect(fs.readFileSync(p)).toEqual(Buffer.from(pattern(64)));
      const raw = loadAddonForTest();
      for (const what of [1.9, -1, 3, Number.NaN]) expect(raw.seek(fd, 0, what), `seek what ${what}`).toBe(EINVAL);
      // The lock calls take the same care: a garbage descriptor is a TypeError, not a lock on fd 0.
      expect(() => raw.lock(Number.NaN, 2)).toThrow(TypeError);
      expect(() => raw.lock(fd + 2 ** 32, 2)).toThrow(TypeError);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('refuses positions that are negative, fractional, NaN or past 2^53 with -EINVAL, before any I/O', () => {
    const p = fileWith('p.bin', pattern(64));
    const fd = fs.openSync(p, 'r+');
    try {
      const into = new Uint8Array(8).fill(0xaa);
      for (const bad of [-1, -0.5, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
        expect(s().pread(fd, into, bad)).toBe(EINVAL);
        expect(s().pwrite(fd, new Uint8Array(8), bad)).toBe(EINVAL);
      }
      // The end of a write must stay below 2^53 too.
      expect(s().pwrite(fd, new Uint8Array(8), 2 ** 53 - 4)).toBe(EINVAL);
      expect(into.every((b) => b === 0xaa)).toBe(true);
      expect(fs.readFileSync(p)).toEqual(Buffer.from(pattern(64)));
    } finally {
      fs.closeSync(fd);
    }
  });

  it('throws a TypeError for arguments that are not (integer, TypedArray, number)', () => {
    const f = s() as unknown as Record<'pread' | 'pwrite', (...a: unknown[]) => number>;
    expect(() => f.pread(0, [1, 2, 3], 0)).toThrow(TypeError);
    expect(() => f.pread(0, new ArrayBuffer(8), 0)).toThrow(TypeError);
    expect(() => f.pwrite('x', new Uint8Array(1), 0)).toThrow(TypeError);
    expect(() => f.pread(0, new Uint8Array(1))).toThrow(TypeError);
    expect(() => f.pwrite(0, new Uint8Array(1), '0')).toThrow(TypeError);
  });

  it('NodeFileStorage on the native calls: every read and write goes through them, errors become BlockError io with the fs code', async () => {
    const calls = { pread: 0, pwrite: 0 };
    const counting: PositionalSyscalls = {
      pread: (fd, into, pos) => {
        calls.pread++;
        return s().pread(fd, into, pos);
      },
      pwrite: (fd, data, pos) => {
        calls.pwrite++;
        return s().pwrite(fd, data, pos);
      },
    };
    const p = fileWith('st.bin', new Uint8Array(0));
    const st = await NodeFileStorage.open(p, { syscalls: counting });
    expect(st.syscalls).toBe(counting);
    await st.write(4096, pattern(8192, 9));
    const into = new Uint8Array(8192);
    expect(await st.read(4096, into)).toBe(8192);
    expect(into).toEqual(pattern(8192, 9));
    expect(st.readSync!(8192, into)).toBe(4096); // short: 4096 bytes left before the end
    expect(calls).toEqual({ pread: 3, pwrite: 1 });
    await st.close();

    // io: 'async' never blocks the event loop, so it ignores synchronous syscalls.
    const asyncSt = await NodeFileStorage.open(p, { io: 'async', syscalls: counting });
    expect(asyncSt.syscalls).toBeUndefined();
    await asyncSt.read(0, new Uint8Array(16));
    expect(calls.pread).toBe(3);
    await asyncSt.close();

    const failing: PositionalSyscalls = {
      pread: () => -os.constants.errno.EIO,
      pwrite: () => -os.constants.errno.ENOSPC,
    };
    const bad = await NodeFileStorage.open(p, { syscalls: failing });
    const readErr = await bad.read(512, new Uint8Array(16)).catch((e: unknown) => e);
    expect(readErr).toBeInstanceOf(BlockError);
    expect(readErr).toMatchObject({ kind: 'io', code: 'EIO', path: p, offset: 512 });
    expect(() => bad.readSync!(0, new Uint8Array(16))).toThrow(/read failed at offset 0: EIO/);
    const writeErr = await bad.write(0, new Uint8Array(16)).catch((e: unknown) => e);
    expect(writeErr).toMatchObject({ kind: 'io', code: 'ENOSPC', path: p });
    await bad.close();
    // An errno Node has no name for still gets an E-code, not "Unknown system error".
    const odd = await NodeFileStorage.open(p, { syscalls: { pread: () => -9999, pwrite: () => -9999 } });
    await expect(odd.read(0, new Uint8Array(4))).rejects.toMatchObject({ kind: 'io', code: 'E9999' });
    await odd.close();
  });

  it('seekData/seekHole find the data and holes of a sparse file; -ENXIO past the last data; -EINVAL for garbage', () => {
    const p = fileWith('sparse.bin', new Uint8Array(0));
    fs.truncateSync(p, 8 * 1024 * 1024);
    const fd = fs.openSync(p, 'r+');
    try {
      fs.writeSync(fd, pattern(4096), 0, 4096, 1024 * 1024);
      const { seekData, seekHole } = s();
      expect(seekData!(fd, 0)).toBe(1024 * 1024);
      expect(seekHole!(fd, 1024 * 1024)).toBe(1024 * 1024 + 4096);
      expect(seekHole!(fd, 0)).toBe(0);
      expect(seekData!(fd, 1024 * 1024 + 4096)).toBe(-os.constants.errno.ENXIO);
      expect(seekHole!(fd, 8 * 1024 * 1024 - 1)).toBe(8 * 1024 * 1024 - 1);
      expect(seekData!(fd, 2 ** 40)).toBe(-os.constants.errno.ENXIO);
      expect(seekData!(2 ** 30, 0)).toBe(-os.constants.errno.EBADF);
      expect(seekData!(fd, -1)).toBe(EINVAL);
      expect(seekHole!(fd, 0.5)).toBe(EINVAL);
      const raw = loadAddonForTest();
      // SEEK_END (what 2) answers the size (a block device's, where fstat says 0); only from position 0.
      expect(raw.seek(fd, 0, 2)).toBe(8 * 1024 * 1024);
      expect(raw.seek(fd, 5, 2)).toBe(EINVAL);
      expect(() => (raw.seek as (...a: unknown[]) => number)(fd, 'x', 0)).toThrow(TypeError);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('zeroRange punches a hole (punch) or zeroes in place (zero range), keeping the size; -EINVAL for garbage', () => {
    const p = fileWith('falloc.bin', pattern(256 * 1024));
    const fd = fs.openSync(p, 'r+');
    try {
      const { zeroRange, seekData } = s();
      const blocksBefore = fs.fstatSync(fd).blocks;
      expect(zeroRange!(fd, 64 * 1024, 64 * 1024, true)).toBe(0);
      expect(zeroRange!(fd, 160 * 1024, 8 * 1024, false)).toBe(0);
      expect(fs.fstatSync(fd).size).toBe(256 * 1024);
      expect(fs.fstatSync(fd).blocks).toBeLessThan(blocksBefore);
      expect(seekData!(fd, 64 * 1024)).toBeGreaterThanOrEqual(128 * 1024);
      const back = fs.readFileSync(p);
      const want = Buffer.from(pattern(256 * 1024));
      want.fill(0, 64 * 1024, 128 * 1024);
      want.fill(0, 160 * 1024, 168 * 1024);
      expect(back.equals(want)).toBe(true);
      expect(zeroRange!(fd, -1, 10, true)).toBe(EINVAL);
      expect(zeroRange!(fd, 0, 0, true)).toBe(EINVAL);
      expect(zeroRange!(fd, 0.5, 10, false)).toBe(EINVAL);
      expect(zeroRange!(2 ** 30, 0, 10, true)).toBe(-os.constants.errno.EBADF);
      const raw = loadAddonForTest();
      expect(raw.zeroRange(fd, 0, 10, 2)).toBe(EINVAL);
      expect(() => (raw.zeroRange as (...a: unknown[]) => number)(fd, 'x', 1, 0)).toThrow(TypeError);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('NodeFileStorage.zeroRange over fallocate: reads zeros after, keeps the length, refuses a read-only file', async () => {
    const p = fileWith('zr.bin', pattern(64 * 1024));
    const st = await NodeFileStorage.open(p, { syscalls: s() });
    expect(await st.zeroRange!(4096, 8192, true)).toBe(true);
    expect(await st.zeroRange!(20000, 100, false)).toBe(true);
    expect(await st.size()).toBe(64 * 1024);
    const back = new Uint8Array(64 * 1024);
    await st.read(0, back);
    const want = pattern(64 * 1024);
    want.fill(0, 4096, 12288);
    want.fill(0, 20000, 20100);
    expect(back).toEqual(want);
    await st.close();
    const ro = await NodeFileStorage.open(p, { syscalls: s(), readOnly: true });
    await expect(ro.zeroRange!(0, 10, true)).rejects.toMatchObject({ kind: 'read-only' });
    await ro.close();
  });

  it('NodeFileStorage.extentAt: holes, data and the end of the file as the file system reports them', async () => {
    const p = fileWith('ext.bin', new Uint8Array(0));
    fs.truncateSync(p, 4 * 1024 * 1024);
    const st = await NodeFileStorage.open(p, { syscalls: s() });
    try {
      await st.write(1024 * 1024, pattern(8192));
      expect(await st.extentAt!(0, 4 * 1024 * 1024)).toEqual({ data: false, length: 1024 * 1024 });
      expect(await st.extentAt!(1000, 100)).toEqual({ data: false, length: 100 });
      expect(await st.extentAt!(1024 * 1024, 4 * 1024 * 1024)).toEqual({ data: true, length: 8192 });
      expect(await st.extentAt!(1024 * 1024 + 10, 20)).toEqual({ data: true, length: 20 });
      expect(await st.extentAt!(1024 * 1024 + 8192, 4 * 1024 * 1024)).toEqual({ data: false, length: 4 * 1024 * 1024 });
      expect(await st.extentAt!(2 ** 40, 512)).toEqual({ data: false, length: 512 });
      await expect(st.extentAt!(0, 0)).rejects.toMatchObject({ kind: 'invalid-argument' });
    } finally {
      await st.close();
    }
    // No seek calls, or io: 'async': no extentAt (every byte counts as data).
    const noSeek = await NodeFileStorage.open(p, { syscalls: { pread: s().pread, pwrite: s().pwrite } });
    expect(noSeek.extentAt).toBeUndefined();
    await noSeek.close();
    const asyncSt = await NodeFileStorage.open(p, { io: 'async', syscalls: s() });
    expect(asyncSt.extentAt).toBeUndefined();
    await asyncSt.close();
  });

  it('NodeFileStorage.extentAt on real sparse files: extents tile the range, holes read zeros, written bytes are data (random writes)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 * 1024 * 1024 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 200 * 1024 })), { maxLength: 8 }),
        async (size, writes) => {
          const p = fileWith('prop.bin', new Uint8Array(0));
          fs.truncateSync(p, size);
          const st = await NodeFileStorage.open(p, { syscalls: s() });
          try {
            const written = new Uint8Array(size);
            for (const [at, n0] of writes) {
              const offset = at % size;
              const n = Math.min(n0, size - offset);
              await st.write(offset, new Uint8Array(n).fill(0x42));
              written.fill(1, offset, offset + n);
            }
            let pos = 0;
            while (pos < size) {
              const e = await st.extentAt!(pos, size - pos);
              expect(e, 'ext4/tmpfs/xfs report holes').toBeDefined();
              expect(e!.length).toBeGreaterThan(0);
              expect(pos + e!.length).toBeLessThanOrEqual(size);
              if (!e!.data) {
                expect(written.subarray(pos, pos + e!.length).every((w) => w === 0)).toBe(true);
                const bytes = new Uint8Array(e!.length);
                st.readSync!(pos, bytes);
                expect(bytes.every((b) => b === 0)).toBe(true);
              }
              pos += e!.length;
            }
          } finally {
            await st.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('NodeFileStorage.extentAt: unsupported -> undefined, a file that changed between the seeks -> undefined, EIO -> BlockError', async () => {
    const p = fileWith('ext2.bin', new Uint8Array(4096));
    const fake = (seekData: number, seekHole: number): PositionalSyscalls => ({
      pread: s().pread,
      pwrite: s().pwrite,
      seekData: () => seekData,
      seekHole: () => seekHole,
    });
    const ask = async (sys: PositionalSyscalls, offset = 100) => {
      const st = await NodeFileStorage.open(p, { syscalls: sys });
      try {
        return await st.extentAt!(offset, 1000);
      } finally {
        await st.close();
      }
    };
    expect(await ask(fake(-os.constants.errno.EINVAL, 0))).toBeUndefined();
    expect(await ask(fake(-os.constants.errno.EOPNOTSUPP, 0))).toBeUndefined();
    expect(await ask(fake(100, 100))).toBeUndefined(); // data at 100, but the hole is at 100 too
    expect(await ask(fake(100, -os.constants.errno.ENXIO))).toBeUndefined();
    expect(await ask(fake(100, 150))).toEqual({ data: true, length: 50 });
    expect(await ask(fake(5000, 0))).toEqual({ data: false, length: 1000 });
    const err = await ask(fake(-os.constants.errno.EIO, 0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'io', code: 'EIO', path: p, offset: 100 });
  });

  it('an addon from an older build offers only the calls it has: no seek, no extentAt; no pread, nothing', async () => {
    const full = loadAddonForTest();
    const old = syscallsOf({ lock: full.lock, query: full.query, pread: full.pread, pwrite: full.pwrite });
    expect(old).toBeDefined();
    expect(old!.seekData).toBeUndefined();
    const st = await NodeFileStorage.open(fileWith('old.bin', pattern(10)), { syscalls: old });
    expect(st.extentAt).toBeUndefined(); // raw images then count every byte as data
    expect(await st.read(0, new Uint8Array(10))).toBe(10);
    await st.close();
    expect(syscallsOf({ lock: full.lock, query: full.query })).toBeUndefined();
    expect(Object.keys(syscallsOf(full)!).sort()).toEqual([
      'allocate',
      'pread',
      'pwrite',
      'seekData',
      'seekEnd',
      'seekHole',
      'zeroRange',
    ]);
    const noZeroRange = syscallsOf({ ...full, zeroRange: undefined } as unknown as Partial<typeof full>);
    const st2 = await NodeFileStorage.open(fileWith('old2.bin', pattern(10)), { syscalls: noZeroRange });
    expect(st2.zeroRange).toBeUndefined(); // raw write -z then writes zeros
    await st2.close();
  });

  it('fallocate reserves blocks without changing the bytes, grows the file; garbage arguments get -EINVAL/-EBADF', () => {
    const addon = loadAddonForTest();
    const p = fileWith('falloc.bin', pattern(5000));
    const fd = fs.openSync(p, 'r+');
    try {
      expect(addon.fallocate(fd, 0, 1 << 20)).toBe(0);
      const st = fs.fstatSync(fd);
      expect(st.size).toBe(1 << 20);
      expect(st.blocks * 512).toBeGreaterThanOrEqual(1 << 20);
      const back = fs.readFileSync(p);
      expect(new Uint8Array(back.subarray(0, 5000))).toEqual(pattern(5000));
      expect(back.subarray(5000).every((b) => b === 0)).toBe(true);
      const EINVAL = -os.constants.errno.EINVAL;
      for (const [offset, length] of [
        [-1, 10],
        [0, 0],
        [0.5, 10],
        [0, Number.NaN],
        [2 ** 53, 1],
        [2 ** 52, 2 ** 52],
      ]) {
        expect(addon.fallocate(fd, offset!, length!), `${offset}, ${length}`).toBe(EINVAL);
      }
      expect(addon.fallocate(-1, 0, 10)).toBe(-os.constants.errno.EBADF);
      expect(() => addon.fallocate(fd, 'x' as unknown as number, 10)).toThrow(TypeError);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('Storage.allocate on the native call (kept by LockedStorage); preallocate() writes zeros where the file system cannot', async () => {
    const p = fileWith('alloc.bin', new Uint8Array(0));
    const locked = lockStorage(await NodeFileStorage.open(p, { syscalls: s() }));
    try {
      expect(locked.allocate).toBeDefined();
      await preallocate(locked, 0, 256 * 1024, 'falloc');
      expect(await locked.size()).toBe(256 * 1024);
      expect(fs.statSync(p).blocks * 512).toBeGreaterThanOrEqual(256 * 1024);
    } finally {
      await locked.close();
    }
    // A file system without fallocate: not-supported, and preallocate falls back to writing zeros.
    const q = fileWith('noalloc.bin', new Uint8Array(0));
    const unsupported: PositionalSyscalls = {
      pread: s().pread,
      pwrite: s().pwrite,
      allocate: () => -os.constants.errno.EOPNOTSUPP,
    };
    const st = await NodeFileStorage.open(q, { syscalls: unsupported });
    try {
      await expect(st.allocate!(0, 4096)).rejects.toMatchObject({ kind: 'not-supported', path: q });
      await preallocate(st, 4096, 8192, 'falloc');
      expect(await st.size()).toBe(12288);
      expect(fs.statSync(q).blocks * 512).toBeGreaterThanOrEqual(8192);
      const failing: PositionalSyscalls = { ...unsupported, allocate: () => -os.constants.errno.ENOSPC };
      const full = await NodeFileStorage.open(q, { syscalls: failing });
      await expect(preallocate(full, 0, 4096, 'falloc')).rejects.toMatchObject({ kind: 'io', code: 'ENOSPC' });
      await full.close();
    } finally {
      await st.close();
    }
  });

  it('storage wrappers that do not change reads keep readSync and extentAt (LockedStorage)', async () => {
    const p = fileWith('locked.bin', new Uint8Array(0));
    const file = new MemoryFile();
    file.truncate(4 * 65536);
    file.writeAt(65536, pattern(100));
    // A storage without a descriptor of its own: lockStorage locks through a descriptor it opens, and wraps it.
    const locked = lockStorage(new MemoryStorage(file, p));
    try {
      expect(locked).not.toBeInstanceOf(MemoryStorage);
      const into = new Uint8Array(100);
      expect(locked.readSync!(65536, into)).toBe(100);
      expect(into).toEqual(pattern(100));
      expect(await locked.extentAt!(0, 4 * 65536)).toEqual({ data: false, length: 65536 });
    } finally {
      await locked.close();
    }
  });

  it('NodeFileStorage reads and writes the same bytes on the native calls as on fs (random operations)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            write: fc.boolean(),
            offset: fc.integer({ min: 0, max: 256 * 1024 }),
            length: fc.integer({ min: 0, max: 64 * 1024 }),
            seed: fc.integer({ min: 0, max: 255 }),
          }),
          { minLength: 1, maxLength: 30 },
        ),
        async (ops) => {
          const a = await NodeFileStorage.open(fileWith('pa.bin', new Uint8Array(0)), { syscalls: s() });
          const b = await NodeFileStorage.open(fileWith('pb.bin', new Uint8Array(0)));
          try {
            for (const op of ops) {
              if (op.write) {
                const data = pattern(op.length, op.seed);
                await a.write(op.offset, data);
                await b.write(op.offset, data);
              } else {
                const ia = new Uint8Array(op.length).fill(1);
                const ib = new Uint8Array(op.length).fill(1);
                expect(a.readSync!(op.offset, ia)).toBe(await b.read(op.offset, ib));
                // Buffer.equals: toEqual walks 64 KiB arrays element by element, slowly.
                expect(Buffer.from(ia.buffer).equals(ib)).toBe(true);
              }
            }
            expect(await a.size()).toBe(await b.size());
          } finally {
            await a.close();
            await b.close();
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('the host file system of @blk/images uses the native calls; BLK_NATIVE_IO=off turns them off', async () => {
    const p = fileWith('h.bin', new Uint8Array(4096));
    const st = await hostVfs().open(p, { readOnly: true });
    try {
      expect((st as NodeFileStorage).syscalls).toBeDefined();
      expect(st.extentAt).toBeDefined(); // raw images over it report holes
    } finally {
      await st.close();
    }
    // BLK_NATIVE_IO=off reaches the library as an option (the blk command reads the variable).
    expect(nativeSyscalls({ enabled: false })).toBeUndefined();
    const plain = await new NodeVfs({ syscalls: nativeSyscalls({ enabled: false }) }).open(p, { readOnly: true });
    expect((plain as NodeFileStorage).syscalls).toBeUndefined();
    await plain.close();
    const host = await hostVfs({ nativeIo: false }).open(p, { readOnly: true });
    try {
      expect((host as NodeFileStorage).syscalls).toBeUndefined();
    } finally {
      await host.close();
    }
    expect(nativeSyscalls()).toBeDefined();
  });
});
