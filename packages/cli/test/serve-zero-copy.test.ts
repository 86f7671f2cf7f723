/**
 * blk serve's zero-copy reads (sendfile from @blk/native's worker; BLK_NATIVE_IO=off: the buffered
 * path) judged by nbdcopy: a sparse raw image with a partial last sector, and a cow chain over it
 * with data in both layers, copy out byte for byte equal to blk's own view on both paths, with
 * nbdcopy's several connections and deep queues.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from './helpers.js';
import { startServe, tool } from './serve-helpers.js';

const MiB = 1024 * 1024;

beforeAll(() => ensureBuilt(), 300_000);

/** Copies the export at `sock` with nbdcopy to `out`; returns its bytes. */
function copyOut(sock: string, out: string): Buffer {
  const r = tool('nbdcopy', [`nbd+unix:///?socket=${sock}`, out]);
  expect(r.code, r.stderr).toBe(0);
  return fs.readFileSync(out);
}

describe.sequential('blk serve zero-copy reads', () => {
  it('raw and a cow chain copy out equal with and without BLK_NATIVE_IO', async (ctx) => {
    if (!hasCommand('nbdcopy')) ctx.skip();
    const dir = tempDir('serve-zc');
    const base = path.join(dir, 'base.raw');
    const fd = fs.openSync(base, 'w');
    const data = Buffer.alloc(3 * MiB);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13 + (i >> 12)) & 0xff;
    fs.writeSync(fd, data, 0, 3 * MiB, 0);
    fs.writeSync(fd, data, 0, 2 * MiB + 700, 5 * MiB); // a hole [3, 5) MiB, a partial last sector
    fs.closeSync(fd);
    // The cow overlay's base: whole sectors (a cow v3 overlay has its base's size).
    const whole = path.join(dir, 'whole.raw');
    fs.copyFileSync(base, whole);
    fs.truncateSync(whole, 7 * MiB);
    const top = path.join(dir, 'top.cow');
    expect(blk(['create', '-f', 'cow', '-b', whole, '-F', 'raw', top]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0x5a 1M 512k', '-c', 'write -P 0x6b 4M 64k', top]).code).toBe(0);
    for (const [file, fmt] of [
      [base, 'raw'],
      [top, 'cow'],
    ] as const) {
      const expected = path.join(dir, `expected-${fmt}.raw`);
      expect(blk(['convert', '-f', fmt, '-O', 'raw', file, expected]).code).toBe(0);
      const want = fs.readFileSync(expected);
      for (const nativeIo of ['on', 'off']) {
        const sock = path.join(dir, `${fmt}-${nativeIo}.sock`);
        const saved = process.env.BLK_NATIVE_IO;
        if (nativeIo === 'off') process.env.BLK_NATIVE_IO = 'off';
        let served: Awaited<ReturnType<typeof startServe>>;
        try {
          served = await startServe(dir, ['-r', '-f', fmt, '-e', '4', '-k', sock, file]);
        } finally {
          if (saved === undefined) delete process.env.BLK_NATIVE_IO;
          else process.env.BLK_NATIVE_IO = saved;
        }
        const got = copyOut(sock, path.join(dir, `out-${fmt}-${nativeIo}.raw`));
        await served.stop();
        expect(got.length).toBe(want.length);
        expect(got.equals(want), `${fmt}, BLK_NATIVE_IO ${nativeIo}`).toBe(true);
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
