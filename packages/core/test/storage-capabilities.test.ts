/**
 * Storage capabilities: what each storage says it can do (computed once at
 * open), a storage that cannot write at all (no write/truncate/flush: an
 * HTTP-like one), and the errno mapping every front end prints.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BlockError,
  DriverRegistry,
  ForwardingVfs,
  MemoryFile,
  MemoryStorage,
  MemoryVfs,
  NodeFileStorage,
  createImage,
  errnoOf,
  flushStorage,
  openImage,
  preallocate,
  requireWritable,
  storageCapabilities,
  truncateTo,
  writeTo,
  type PositionalSyscalls,
  type Storage,
  type StorageCapabilities,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';

const registry = new DriverRegistry([rawDriver]);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-storage-caps-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
function tempFile(content: Uint8Array = new Uint8Array(0)): string {
  const file = path.join(dir, `f${counter++}.bin`);
  fs.writeFileSync(file, content);
  return file;
}

/** Syscalls over Node's fs, with every optional call (enough for capability tests). */
const fullSyscalls: PositionalSyscalls = {
  pread: (fd, into, position) => fs.readSync(fd, into, 0, into.length, position),
  pwrite: (fd, data, position) => fs.writeSync(fd, data, 0, data.length, position),
  seekData: (_fd, position) => position,
  seekHole: (fd) => fs.fstatSync(fd).size,
  allocate: () => 0,
  zeroRange: () => 0,
};

describe('StorageCapabilities', () => {
  it('storageCapabilities: false unless given, byte-granular, and nothing that changes content without write', () => {
    expect(storageCapabilities()).toEqual({
      write: false,
      flush: false,
      syncRead: false,
      extents: false,
      allocate: false,
      zeroRange: false,
      remote: false,
      pool: false,
      limits: { requestAlignment: 1 },
    });
    const ro = storageCapabilities({ allocate: true, zeroRange: true, extents: true });
    expect(ro).toMatchObject({ write: false, allocate: false, zeroRange: false, extents: true });
    expect(Object.isFrozen(ro)).toBe(true);
  });

  it('MemoryStorage: sync reads and extents always; write and flush unless read-only', () => {
    const rw = new MemoryStorage(new MemoryFile(), 'm');
    expect(rw.capabilities).toEqual({
      write: true,
      flush: true,
      syncRead: true,
      extents: true,
      allocate: false,
      zeroRange: false,
      remote: false,
      pool: false,
      limits: { requestAlignment: 1 },
    });
    const ro = new MemoryStorage(new MemoryFile(), 'm', true);
    expect(ro.capabilities).toMatchObject({ write: false, flush: false, syncRead: true, extents: true });
  });

  it('NodeFileStorage on a file: io mode and syscalls decide; read-only turns off write, flush, allocate and zeroRange', async () => {
    const file = tempFile(new Uint8Array(4096));
    const plain = await NodeFileStorage.open(file);
    expect(plain.capabilities).toEqual({
      write: true,
      flush: true,
      syncRead: true,
      extents: false,
      allocate: false,
      zeroRange: false,
      remote: false,
      pool: true,
      limits: { requestAlignment: 1, preferredTransfer: fs.statSync(file).blksize },
    });
    await plain.close();
    const pooled = await NodeFileStorage.open(file, { io: 'async', syscalls: fullSyscalls });
    expect(pooled.capabilities).toMatchObject({
      write: true,
      flush: true,
      syncRead: false,
      extents: false,
      allocate: false,
      zeroRange: false,
    });
    await pooled.close();
    const full = await NodeFileStorage.open(file, { syscalls: fullSyscalls });
    expect(full.capabilities).toMatchObject({
      write: true,
      flush: true,
      syncRead: true,
      extents: true,
      allocate: true,
      zeroRange: true,
    });
    await full.close();
    const ro = await NodeFileStorage.open(file, { readOnly: true, syscalls: fullSyscalls });
    expect(ro.capabilities).toMatchObject({
      write: false,
      flush: false,
      syncRead: true,
      extents: true,
      allocate: false,
      zeroRange: false,
    });
    await ro.close();
  });

  it('NodeFileStorage on a block device: no allocate (a device cannot grow; posix_fallocate fails on it), zeroRange kept', async (ctx) => {
    const device = ['/dev/loop0', '/dev/loop1', '/dev/loop2'].find((p) => {
      try {
        return fs.statSync(p).isBlockDevice();
      } catch {
        return false;
      }
    });
    if (device === undefined) return ctx.skip();
    let storage: NodeFileStorage;
    try {
      // Opened for writing, never written: the test looks only at what the storage says.
      storage = await NodeFileStorage.open(device, { blockDevices: true, syscalls: fullSyscalls });
    } catch {
      return ctx.skip();
    }
    try {
      expect(storage.blockDevice).toBe(true);
      expect(storage.capabilities).toMatchObject({
        write: true,
        flush: true,
        syncRead: true,
        allocate: false,
        zeroRange: true,
      });
    } finally {
      await storage.close();
    }
  });
});

describe('storage limits', () => {
  it("NodeFileStorage: byte-granular requests (buffered I/O), the file system's block size as preferred transfer", async () => {
    const file = tempFile(new Uint8Array(4096));
    const blksize = fs.statSync(file).blksize;
    for (const io of ['sync', 'async'] as const) {
      const storage = await NodeFileStorage.open(file, { io, readOnly: true });
      expect(storage.capabilities.limits).toEqual({ requestAlignment: 1, preferredTransfer: blksize });
      await storage.close();
    }
  });

  /** A memory storage with the given limits (as an HTTP storage with a range size and a cap would have). */
  class LimitedStorage extends MemoryStorage {
    override readonly capabilities: StorageCapabilities;
    constructor(file: MemoryFile, name: string, limits: StorageCapabilities['limits']) {
      super(file, name);
      this.capabilities = storageCapabilities({
        write: true,
        flush: true,
        syncRead: true,
        extents: true,
        zeroRange: true,
        limits,
      });
    }
  }
  class LimitedVfs extends ForwardingVfs {
    declare readonly inner: MemoryVfs;
    constructor(
      inner: MemoryVfs,
      private readonly limits: StorageCapabilities['limits'],
    ) {
      super(inner);
    }
    override async open(p: string, options?: VfsOpenOptions): Promise<Storage> {
      const storage = (await this.inner.open(p, options)) as MemoryStorage;
      return new LimitedStorage(storage.file, storage.path, this.limits);
    }
  }

  it("raw: the image's preferred and maximum transfer are the storage's (at least 4 KiB preferred)", async () => {
    const inner = new MemoryVfs();
    await createImage('/disk.raw', { format: 'raw', size: 1 << 20, registry, vfs: inner });
    const big = await openImage('/disk.raw', {
      format: 'raw',
      registry,
      vfs: new LimitedVfs(inner, { requestAlignment: 1, preferredTransfer: 1 << 20, maxTransfer: 8 << 20 }),
    });
    expect(big.capabilities.limits).toMatchObject({
      requestAlignment: 1,
      preferredTransfer: 1 << 20,
      maxTransfer: 8 << 20,
    });
    await big.close();
    const small = await openImage('/disk.raw', {
      format: 'raw',
      registry,
      vfs: new LimitedVfs(inner, { requestAlignment: 1, preferredTransfer: 512 }),
    });
    expect(small.capabilities.limits).toMatchObject({ preferredTransfer: 4096, maxTransfer: 32 * 1024 * 1024 });
    await small.close();
  });
});

/** A storage that cannot write at all (as an HTTP one): no write, truncate or flush. */
class ReadOnlyStorage implements Storage {
  readonly readOnly = true;
  readonly capabilities: StorageCapabilities = storageCapabilities({ remote: true });
  constructor(
    private readonly file: MemoryFile,
    readonly path: string,
  ) {}
  async read(offset: number, into: Uint8Array): Promise<number> {
    return this.file.readAt(offset, into);
  }
  async size(): Promise<number> {
    return this.file.length;
  }
  async close(): Promise<void> {
    /* nothing held */
  }
}

/** A Vfs whose storages are ReadOnlyStorages whatever the open asks (a server that only serves). */
class ReadOnlyVfs extends ForwardingVfs {
  declare readonly inner: MemoryVfs;
  closed = 0;
  override async open(p: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = (await this.inner.open(p, { ...options, readOnly: true })) as MemoryStorage;
    const vfs = this;
    return new (class extends ReadOnlyStorage {
      override async close(): Promise<void> {
        vfs.closed++;
      }
    })(storage.file, storage.path);
  }
}

describe('a storage that cannot write', () => {
  it('opens read-only; a writable open is refused up front with a typed read-only error naming the file', async () => {
    const mem = new MemoryVfs();
    await createImage('/d.raw', { registry, vfs: mem, format: 'raw', size: 4096 });
    const w = await openImage('/d.raw', { registry, vfs: mem, format: 'raw' });
    await w.write(0, new Uint8Array(512).fill(5));
    await w.close();
    const vfs = new ReadOnlyVfs(mem);
    const image = await openImage('/d.raw', { registry, vfs, format: 'raw', readOnly: true });
    expect((await image.read(0, 512)).every((b) => b === 5)).toBe(true);
    await image.flush();
    await image.close();
    const refused = await openImage('/d.raw', { registry, vfs, format: 'raw' }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(BlockError);
    expect(refused).toMatchObject({ kind: 'read-only', path: '/d.raw', code: 'EROFS' });
    expect(vfs.closed).toBe(2); // the refused open released its storage
    await expect(createImage('/n.raw', { registry, vfs, format: 'raw', size: 4096 })).rejects.toMatchObject({
      kind: 'read-only',
    });
  });

  it('the helpers: writeTo and truncateTo say read-only naming the file, flushStorage has nothing to do, requireWritable refuses', async () => {
    const storage = new ReadOnlyStorage(new MemoryFile(new Uint8Array(8)), '/x.img');
    await expect(writeTo(storage, 0, new Uint8Array(1))).rejects.toMatchObject({ kind: 'read-only', path: '/x.img' });
    await expect(truncateTo(storage, 0)).rejects.toMatchObject({ kind: 'read-only', path: '/x.img' });
    await expect(flushStorage(storage)).resolves.toBeUndefined();
    expect(() => requireWritable(storage)).toThrow(expect.objectContaining({ kind: 'read-only' }) as Error);
    const writable = new MemoryStorage(new MemoryFile(), 'w');
    expect(requireWritable(writable)).toBe(writable);
  });
});

describe('preallocate: signal', () => {
  it('an aborted signal stops the zero-writing loop with its reason', async () => {
    const storage = new MemoryStorage(new MemoryFile(), 'p');
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await expect(preallocate(storage, 0, 4 << 20, 'full', { signal: controller.signal })).rejects.toThrow('stop');
    expect(await storage.size()).toBe(0);
  });
});

describe('errnoOf', () => {
  it('maps BlockError kinds, system error codes and anything else to errno, number and strerror text', () => {
    const cases: Array<[unknown, string, number, string]> = [
      [new BlockError('io', 'x', { code: 'EIO' }), 'EIO', 5, 'Input/output error'],
      [new BlockError('io', 'x', { code: 'ENOSPC' }), 'ENOSPC', 28, 'No space left on device'],
      [new BlockError('io', 'x', { code: 'EROFS' }), 'EROFS', 30, 'Read-only file system'],
      [new BlockError('io', 'x', { code: 'EPERM' }), 'EPERM', 1, 'Operation not permitted'],
      [new BlockError('io', 'x'), 'EIO', 5, 'Input/output error'],
      [new BlockError('io', 'x', { code: 'EWHATEVER' }), 'EIO', 5, 'Input/output error'],
      [new BlockError('invalid-argument', 'x'), 'EINVAL', 22, 'Invalid argument'],
      [new BlockError('out-of-range', 'x'), 'EIO', 5, 'Input/output error'],
      [new BlockError('not-supported', 'x'), 'ENOTSUP', 95, 'Operation not supported'],
      [new BlockError('read-only', 'x', { code: 'EROFS' }), 'EACCES', 13, 'Permission denied'],
      [new BlockError('probe-guard', 'x'), 'EPERM', 1, 'Operation not permitted'],
      [new BlockError('closed', 'x'), 'EBADF', 9, 'Bad file descriptor'],
      [Object.assign(new Error('x'), { code: 'ENOENT' }), 'ENOENT', 2, 'No such file or directory'],
      [Object.assign(new Error('x'), { code: 'EDQUOT' }), 'EDQUOT', 122, 'Disk quota exceeded'],
      // A remote object that changed under a reader (@blk/http), and a request that timed out.
      [new BlockError('io', 'x', { code: 'ESTALE' }), 'ESTALE', 116, 'Stale file handle'],
      [new BlockError('io', 'x', { code: 'ETIMEDOUT' }), 'ETIMEDOUT', 110, 'Connection timed out'],
      [new Error('plain'), 'EIO', 5, 'Input/output error'],
      ['a string', 'EIO', 5, 'Input/output error'],
      [undefined, 'EIO', 5, 'Input/output error'],
    ];
    for (const [err, code, errno, message] of cases)
      expect(errnoOf(err), String(err)).toEqual({ code, errno, message });
  });
});
