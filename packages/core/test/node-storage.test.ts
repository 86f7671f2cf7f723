import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DriverRegistry, NodeFileStorage, NodeVfs, createImage, openImage, type NodeIoMode } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { makeOverlayFile, overlayDriver } from './fixtures/overlay-driver.js';
import { bytes } from './fixtures/helpers.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-node-storage-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
/** A new temp file holding `content`. */
function tempFile(content: Uint8Array = new Uint8Array(0)): string {
  const file = path.join(dir, `f${counter++}.bin`);
  fs.writeFileSync(file, content);
  return file;
}

/** Whether every byte of `bytes` is `value` (native comparison). */
function filledWith(bytes: Uint8Array, value: number): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(Buffer.alloc(bytes.byteLength, value));
}

describe("NodeFileStorage (io: 'async'): close() and calls in flight", () => {
  it('close() waits for reads and writes in flight, so their descriptor number is never reused under them', async () => {
    const size = 32 * 1024 * 1024;
    for (let round = 0; round < 3; round++) {
      const a = tempFile(new Uint8Array(size).fill(0xaa));
      const storage = await NodeFileStorage.open(a, { io: 'async' });
      // Reads past the end take two calls (the second finds the end of the file): the second must
      // still go to this file, not to whatever takes its descriptor number after close().
      const reads = Array.from({ length: 3 }, () => {
        const into = new Uint8Array(2 * size);
        return storage.read(0, into).then((n) => ({ n, into }));
      });
      const write = storage.write(size, new Uint8Array(1024).fill(0x77));
      await storage.close();
      const b = tempFile(new Uint8Array(3 * size).fill(0xbb));
      const fdB = fs.openSync(b, 'r+');
      try {
        for (const { n, into } of await Promise.all(reads)) {
          expect(n === size || n === size + 1024).toBe(true); // before or after the write landed
          // Compared with memcmp (Buffer.equals): a JS callback per byte over 64 MiB took seconds on a busy machine.
          expect(filledWith(into.subarray(0, size), 0xaa)).toBe(true);
          expect(filledWith(into.subarray(n), 0)).toBe(true);
        }
        await write;
      } finally {
        fs.closeSync(fdB);
      }
      expect(fs.statSync(a).size).toBe(size + 1024);
      expect(filledWith(fs.readFileSync(b), 0xbb)).toBe(true);
      await expect(storage.read(0, new Uint8Array(1))).rejects.toMatchObject({ kind: 'closed' });
    }
  });
});

describe.each<NodeIoMode>(['sync', 'async'])('NodeFileStorage (io: %s): flushOnPool', (io) => {
  it('flushes on the thread pool in either mode; close() waits for it (its descriptor is not closed under it)', async () => {
    for (let round = 0; round < 3; round++) {
      const file = tempFile();
      const storage = await NodeFileStorage.open(file, { io });
      await storage.write(0, new Uint8Array(4 * 1024 * 1024).fill(0x5a));
      const flushes = [storage.flushOnPool(), storage.flushOnPool()];
      // Closed at once: the fdatasync calls still queued on the pool must not meet a closed (or reused) descriptor.
      await storage.close();
      await expect(Promise.all(flushes)).resolves.toEqual([undefined, undefined]);
      expect(fs.statSync(file).size).toBe(4 * 1024 * 1024);
    }
  });

  it("is a no-op on a read-only open and refuses use after close with 'closed'", async () => {
    const ro = await NodeFileStorage.open(tempFile(bytes(10)), { io, readOnly: true });
    await ro.flushOnPool();
    await ro.close();
    await expect(ro.flushOnPool()).rejects.toMatchObject({ kind: 'closed' });
  });
});

describe.each<NodeIoMode>(['sync', 'async'])('NodeFileStorage (io: %s)', (io) => {
  it('writes and reads at explicit positions, with no seek state between calls', async () => {
    const file = tempFile(new Uint8Array(300));
    const storage = await NodeFileStorage.open(file, { io });
    expect(storage.io).toBe(io);
    await storage.write(200, bytes(50, 1));
    await storage.write(0, bytes(10, 2));
    const out = new Uint8Array(50);
    expect(await storage.read(200, out)).toBe(50);
    expect(out).toEqual(bytes(50, 1));
    await storage.close();
    const disk = fs.readFileSync(file);
    expect(new Uint8Array(disk.subarray(0, 10))).toEqual(bytes(10, 2));
  });

  it('returns a short count at the end of the file and leaves the rest of the buffer untouched', async () => {
    const storage = await NodeFileStorage.open(tempFile(bytes(100)), { io, readOnly: true });
    const out = new Uint8Array(40).fill(0xcc);
    expect(await storage.read(80, out)).toBe(20);
    expect(out.subarray(0, 20)).toEqual(bytes(100).subarray(80));
    expect(out.subarray(20)).toEqual(new Uint8Array(20).fill(0xcc));
    expect(await storage.read(500, out)).toBe(0);
    await storage.close();
  });

  it('reports a failing read or write as BlockError io with the fs code and the offset', async () => {
    // /proc/self/mem is a regular file whose unmapped addresses (page 1) fail to read with EIO
    // (a pseudo file system's file: refused unless asked for, see pseudo-files.test.ts).
    const mem = '/proc/self/mem';
    const storage = await NodeFileStorage.open(mem, { io, readOnly: true, pseudoFiles: true });
    await expect(storage.read(4096, new Uint8Array(16))).rejects.toMatchObject({
      kind: 'io',
      code: 'EIO',
      path: mem,
      offset: 4096,
    });
    await storage.close();
    // A write through a descriptor opened read-only at the OS level: EBADF.
    const file = tempFile(bytes(64));
    const ro = await NodeFileStorage.open(file, { io, flags: 'r' });
    await expect(ro.write(8, bytes(8))).rejects.toMatchObject({ kind: 'io', code: 'EBADF', path: file, offset: 8 });
    await ro.close();
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(bytes(64));
  });

  it('grows the file on a write past the end, the gap reading as zeros', async () => {
    const file = tempFile(bytes(10));
    const storage = await NodeFileStorage.open(file, { io });
    await storage.write(100, bytes(5));
    expect(await storage.size()).toBe(105);
    const out = new Uint8Array(90).fill(1);
    await storage.read(10, out);
    expect(out).toEqual(new Uint8Array(90));
    await storage.close();
  });

  it('truncates down and up; growing reads zeros', async () => {
    const storage = await NodeFileStorage.open(tempFile(bytes(100)), { io });
    await storage.truncate(10);
    expect(await storage.size()).toBe(10);
    await storage.truncate(50);
    const out = new Uint8Array(50);
    expect(await storage.read(0, out)).toBe(50);
    expect(out.subarray(0, 10)).toEqual(bytes(10));
    expect(out.subarray(10)).toEqual(new Uint8Array(40));
    await storage.close();
  });

  it("refuses writes and truncates on a read-only open with 'read-only'; flush is a no-op there", async () => {
    const file = tempFile(bytes(10));
    const storage = await NodeFileStorage.open(file, { io, readOnly: true });
    await expect(storage.write(0, bytes(1, 9))).rejects.toMatchObject({ kind: 'read-only', path: file });
    await expect(storage.truncate(0)).rejects.toMatchObject({ kind: 'read-only' });
    await storage.flush();
    await storage.close();
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(bytes(10));
  });

  it("refuses a negative offset with 'out-of-range' and writes nothing (Node would take -1 as the current position)", async () => {
    const file = tempFile(bytes(10));
    const storage = await NodeFileStorage.open(file, { io });
    await storage.read(0, new Uint8Array(5));
    await expect(storage.write(-1, new Uint8Array([0xff]))).rejects.toMatchObject({ kind: 'out-of-range' });
    await expect(storage.read(-1, new Uint8Array(1))).rejects.toMatchObject({ kind: 'out-of-range' });
    await storage.close();
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(bytes(10));
  });

  it('does not grow on a zero-length write past the end', async () => {
    const file = tempFile(bytes(10));
    const storage = await NodeFileStorage.open(file, { io });
    await storage.write(100, new Uint8Array(0));
    expect(await storage.size()).toBe(10);
    await storage.close();
  });

  it("refuses use after close with 'closed'; closing twice is harmless", async () => {
    const storage = await NodeFileStorage.open(tempFile(bytes(10)), { io });
    await storage.close();
    await storage.close();
    await expect(storage.read(0, new Uint8Array(1))).rejects.toMatchObject({ kind: 'closed' });
    await expect(storage.size()).rejects.toMatchObject({ kind: 'closed' });
  });

  it("reports a missing file as 'io' with code ENOENT", async () => {
    await expect(NodeFileStorage.open(path.join(dir, 'missing.bin'), { io })).rejects.toMatchObject({
      kind: 'io',
      code: 'ENOENT',
    });
  });

  it('carries an image through createImage, writes, close and reopen on the host file system', async () => {
    const vfs = new NodeVfs({ io });
    const registry = new DriverRegistry([overlayDriver, rawDriver]);
    const base = path.join(dir, `base-${io}.raw`);
    fs.writeFileSync(base, bytes(8192, 4));
    const top = path.join(dir, `top-${io}.ovl`);
    await createImage(top, { registry, vfs, format: 'ovl', backing: base });
    const image = await openImage(top, { registry, vfs, format: 'ovl' });
    await image.write(1000, bytes(3000, 5));
    await image.close();
    const again = await openImage(top, { registry, vfs, format: 'ovl', readOnly: true });
    const expected = bytes(8192, 4);
    expected.set(bytes(3000, 5), 1000);
    expect(await again.read(0, 8192)).toEqual(expected);
    await again.close();
  });
});

describe('NodeVfs', () => {
  it("refuses an exclusive create of an existing file with 'exists'", async () => {
    const file = tempFile(bytes(3));
    await expect(new NodeVfs().open(file, { create: true, exclusive: true })).rejects.toMatchObject({ kind: 'exists' });
  });

  it('creates without truncating when neither exclusive nor truncate is asked, and writes positionally', async () => {
    const file = tempFile(bytes(10));
    const storage = await new NodeVfs().open(file, { create: true });
    await storage.write(2, new Uint8Array([0xee]));
    await storage.close();
    const expected = bytes(10);
    expected[2] = 0xee;
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(expected);
  });

  it('reports whole seconds of mtime, floored, and follows symlinks in stat and realpath', async () => {
    const file = tempFile(bytes(10));
    fs.utimesSync(file, 1_700_000_000.9, 1_700_000_000.9);
    const link = path.join(dir, `link${counter++}`);
    fs.symlinkSync(file, link);
    const vfs = new NodeVfs();
    expect((await vfs.stat(link)).mtimeSec).toBe(1_700_000_000);
    expect((await vfs.lstat(link)).isSymbolicLink).toBe(true);
    expect(await vfs.realpath(link)).toBe(fs.realpathSync(file));
  });

  it("resolves an overlay's relative backing path against the overlay's directory, not process.cwd()", async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'rel-'));
    fs.writeFileSync(path.join(sub, 'base.raw'), bytes(4096, 8));
    fs.writeFileSync(path.join(sub, 'top.ovl'), makeOverlayFile({ size: 4096, backingPath: 'base.raw' }));
    expect(process.cwd()).not.toBe(sub);
    const image = await openImage(path.join(sub, 'top.ovl'), {
      registry: new DriverRegistry([overlayDriver, rawDriver]),
      vfs: new NodeVfs(),
      format: 'ovl',
      readOnly: true,
    });
    expect(image.backing?.path).toBe(path.join(sub, 'base.raw'));
    expect(await image.read(0, 4096)).toEqual(bytes(4096, 8));
    await image.close();
  });
});
