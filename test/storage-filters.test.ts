/**
 * Every storage wrapper extends FilterStorage, so a capability of the storage
 * below is never silently hidden: over a storage with every optional member,
 * each wrapper either keeps a capability (and the call reaches the storage
 * below) or is listed here as one that narrows it, for a reason. A wrapper
 * written by hand (forwarding only the members it knew of) fails this test.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type fc from 'fast-check';
import {
  FilterStorage,
  ForwardingVfs,
  MemoryFile,
  MemoryStorage,
  MemoryVfs,
  storageCapabilities,
  type Storage,
  type StorageCapabilities,
  type StorageExtent,
  type VfsOpenOptions,
} from '@blk/core';
import { CrashSimVfs, FaultyVfs, GuardedStorage, HookedVfs } from '@blk/faults';
import { lockStorage } from '@blk/native';
import { ScheduledStorage } from '@blk/testkit';
import { ThreadedIoVfs } from '../packages/cli/src/host-io.js';
import { HeldFileVfs } from '../packages/cli/src/io/same-file.js';
import { WindowVfs } from '../packages/cli/src/io/window-storage.js';
import { cacheVfs } from '../packages/cli/src/jobs/common.js';

/** A writable memory storage with every optional member, recording which ones were called. */
class FullStorage extends MemoryStorage {
  readonly calls: string[] = [];
  override readonly capabilities: StorageCapabilities;
  constructor(file: MemoryFile, name: string) {
    super(file, name);
    this.capabilities = storageCapabilities({
      write: true,
      flush: true,
      syncRead: true,
      extents: true,
      allocate: true,
      zeroRange: true,
      pool: true,
      limits: { requestAlignment: 1, preferredTransfer: 4096, maxTransfer: 1 << 20 },
    });
  }
  override read(offset: number, into: Uint8Array): Promise<number> {
    this.calls.push('read');
    return super.read(offset, into);
  }
  override readSync(offset: number, into: Uint8Array): number {
    this.calls.push('readSync');
    return super.readSync(offset, into);
  }
  override extentAt(offset: number, length: number): Promise<StorageExtent> {
    this.calls.push('extentAt');
    return super.extentAt(offset, length);
  }
  async allocate(offset: number, length: number): Promise<void> {
    this.calls.push('allocate');
    if (this.file.length < offset + length) this.file.truncate(offset + length);
  }
  async zeroRange(offset: number, length: number, _punch: boolean): Promise<boolean> {
    this.calls.push('zeroRange');
    this.file.writeAt(offset, new Uint8Array(length));
    return true;
  }
  override write(offset: number, data: Uint8Array): Promise<void> {
    this.calls.push('write');
    return super.write(offset, data);
  }
  override truncate(size: number): Promise<void> {
    this.calls.push('truncate');
    return super.truncate(size);
  }
  override flush(): Promise<void> {
    this.calls.push('flush');
    return super.flush();
  }
  override size(): Promise<number> {
    this.calls.push('size');
    return super.size();
  }
  /** The thread-pool calls (`capabilities.pool`, NodeFileStorage's; what ThreadedIoVfs routes large requests to). */
  readOnPool(offset: number, into: Uint8Array): Promise<number> {
    this.calls.push('readOnPool', 'read');
    return super.read(offset, into);
  }
  writeOnPool(offset: number, data: Uint8Array): Promise<void> {
    this.calls.push('writeOnPool', 'write');
    return super.write(offset, data);
  }
  flushOnPool(): Promise<void> {
    this.calls.push('flushOnPool', 'flush');
    return super.flush();
  }
}

/** A Vfs whose every storage is a FullStorage (the last one opened in `last`). */
class FullVfs extends ForwardingVfs {
  last: FullStorage | undefined;
  constructor(readonly files = new MemoryVfs()) {
    super(files);
  }
  override async open(p: string, options?: VfsOpenOptions): Promise<Storage> {
    const inner = (await this.files.open(p, options)) as MemoryStorage;
    this.last = new FullStorage(inner.file, inner.path);
    return this.last;
  }
}

type Capability = Exclude<keyof StorageCapabilities, 'limits'>;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-filters-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * Each wrapper, how to put it over a FullStorage, and the capabilities it
 * turns off on purpose: a wrapper that intercepts `read` (to count, fail or
 * reorder it) cannot let the synchronous read or the extent query bypass it,
 * and one that intercepts `write` cannot let allocate or zeroRange bypass it.
 */
const WRAPPERS: Array<{
  name: string;
  narrows: Capability[];
  /** Limits the wrapper adds on purpose (the rest must be the storage's own). */
  addsLimits?: Partial<StorageCapabilities['limits']>;
  /** The path the wrapper reports on purpose (else the storage's own). */
  path?: string;
  wrap: () => Promise<{ outer: Storage; inner: FullStorage }>;
}> = [
  {
    name: 'FilterStorage (no override)',
    narrows: [],
    wrap: async () => {
      const inner = new FullStorage(new MemoryFile(), 'f');
      return { outer: new FilterStorage(inner), inner };
    },
  },
  {
    name: 'native LockedStorage',
    narrows: [],
    wrap: async () => {
      const file = path.join(dir, `lock-${Math.random()}`);
      fs.writeFileSync(file, '');
      const inner = new FullStorage(new MemoryFile(), file);
      return { outer: lockStorage(inner), inner };
    },
  },
  {
    // blk serve's storages: large reads, writes and every flush on the thread pool, reads shorter
    // than the pool threshold synchronous (limits.syncReadMax tells drivers where that ends).
    name: 'cli ThreadedStorage with small synchronous reads (blk serve)',
    narrows: ['allocate'],
    addsLimits: { syncReadMax: 128 * 1024 - 1 },
    wrap: async () => {
      const vfs = new FullVfs();
      vfs.files.put('/f', new Uint8Array());
      const outer = await new ThreadedIoVfs(vfs, 128 * 1024, true).open('/f');
      return { outer, inner: vfs.last! };
    },
  },
  {
    name: 'jobs UnflushedStorage (cache=unsafe: flush does nothing)',
    narrows: ['flush'],
    wrap: async () => {
      const vfs = new FullVfs();
      vfs.files.put('/f', new Uint8Array());
      const outer = await cacheVfs(vfs, { cache: 'unsafe' }).open('/f');
      return { outer, inner: vfs.last! };
    },
  },
  {
    name: 'cli ThreadedStorage',
    narrows: ['syncRead', 'allocate'],
    wrap: async () => {
      const vfs = new FullVfs();
      vfs.files.put('/f', new Uint8Array());
      const outer = await new ThreadedIoVfs(vfs, 0).open('/f');
      return { outer, inner: vfs.last! };
    },
  },
  {
    name: 'faults FaultyStorage',
    narrows: ['syncRead', 'extents', 'allocate', 'zeroRange', 'pool'],
    wrap: async () => {
      const vfs = new FullVfs();
      vfs.files.put('/f', new Uint8Array());
      const outer = await new FaultyVfs(vfs).open('/f');
      return { outer, inner: vfs.last! };
    },
  },
  {
    name: 'faults HookedStorage',
    narrows: ['syncRead', 'extents', 'allocate', 'zeroRange', 'pool'],
    wrap: async () => {
      const vfs = new FullVfs();
      vfs.files.put('/f', new Uint8Array());
      const outer = await new HookedVfs(vfs, {}).open('/f');
      return { outer, inner: vfs.last! };
    },
  },
  {
    name: 'faults GuardedStorage',
    narrows: ['syncRead', 'extents', 'allocate', 'zeroRange', 'pool'],
    wrap: async () => {
      const inner = new FullStorage(new MemoryFile(new Uint8Array(4096)), 'f');
      return { outer: new GuardedStorage(inner, { forbidWrites: false }), inner };
    },
  },
  {
    // blk io's raw offset/size window (json: filenames): every member shifted, nothing narrowed.
    name: 'cli WindowStorage (raw offset/size)',
    narrows: [],
    wrap: async () => {
      const vfs = new FullVfs();
      vfs.files.put('/f', new Uint8Array(8192));
      const outer = await new WindowVfs(vfs, '/f', { offset: 512, size: 4096 }).open('/f');
      return { outer, inner: vfs.last! };
    },
  },
  {
    // blk io's restore after a failed reopen: the held descriptor's inode, under the file's own name.
    name: 'cli NamedStorage (reopen through a held descriptor)',
    narrows: [],
    path: '/f',
    wrap: async () => {
      const vfs = new FullVfs();
      vfs.files.put('/f', new Uint8Array());
      vfs.files.put('/proc/self/fd/7', new Uint8Array());
      const held = { fd: 7, path: '/f', writable: true, lock: 'exclusive' as const };
      const outer = await new HeldFileVfs(vfs, vfs, '/f', held).open('/f');
      return { outer, inner: vfs.last! };
    },
  },
  {
    name: 'testkit ScheduledStorage',
    narrows: ['syncRead', 'extents', 'allocate', 'zeroRange', 'pool'],
    wrap: async () => {
      const inner = new FullStorage(new MemoryFile(), 'f');
      // A scheduler that lets every task through at once.
      const scheduler = { schedule: <T>(p: Promise<T>) => p } as unknown as fc.Scheduler;
      return { outer: new ScheduledStorage(inner, scheduler, { delayCompletion: false }), inner };
    },
  },
];

/** Calls the members a capability stands for; the names the FullStorage records for them. */
async function exercise(storage: Storage, capability: Capability): Promise<string[]> {
  switch (capability) {
    case 'pool': {
      // The whole group: a wrapper that forwarded only some of it would send the rest to the main thread.
      await storage.readOnPool!(0, new Uint8Array(1));
      await storage.writeOnPool!(0, new Uint8Array([4]));
      // A wrapper whose flush does nothing (cache=unsafe) makes flushOnPool do nothing too.
      if (!storage.capabilities.flush) return ['readOnPool', 'writeOnPool'];
      await storage.flushOnPool!();
      return ['readOnPool', 'writeOnPool', 'flushOnPool'];
    }
    case 'write':
      await storage.write!(0, new Uint8Array([1, 2, 3]));
      return ['write'];
    case 'flush':
      await storage.flush!();
      return ['flush'];
    case 'syncRead':
      storage.readSync!(0, new Uint8Array(1));
      return ['readSync'];
    case 'extents':
      await storage.extentAt!(0, 1);
      return ['extentAt'];
    case 'allocate':
      await storage.allocate!(0, 4096);
      return ['allocate'];
    case 'zeroRange':
      await storage.zeroRange!(0, 1, false);
      return ['zeroRange'];
    case 'remote':
      return [];
  }
}

describe('FilterStorage: wrappers forward every capability they do not narrow on purpose', () => {
  for (const { name, narrows, addsLimits, path: renamed, wrap } of WRAPPERS) {
    it(`${name}: each capability of the storage below is kept (and reaches it) or narrowed on purpose`, async () => {
      const { outer, inner } = await wrap();
      const below = inner.capabilities;
      // Every key of the record, limits too: a capability added to StorageCapabilities later is covered.
      for (const key of Object.keys(below) as Array<keyof StorageCapabilities>) {
        if (key === 'limits') {
          expect(outer.capabilities.limits, name).toEqual({ ...below.limits, ...addsLimits });
          continue;
        }
        const expected = narrows.includes(key) ? false : below[key];
        expect(outer.capabilities[key], `${name}: capabilities.${key}`).toBe(expected);
        if (!outer.capabilities[key]) continue;
        inner.calls.length = 0;
        for (const member of await exercise(outer, key)) {
          expect(inner.calls, `${name}: ${member} reaches the storage below`).toContain(member);
        }
      }
      // The mandatory members reach it too.
      inner.calls.length = 0;
      await outer.read(0, new Uint8Array(1));
      await outer.size();
      expect(inner.calls).toEqual(expect.arrayContaining(['read', 'size']));
      expect(outer.path).toBe(renamed ?? inner.path);
      expect(outer.readOnly).toBe(inner.readOnly);
      await outer.close();
    });
  }

  it('every FilterStorage subclass in the packages is one of the wrappers above (a new one must be added there)', () => {
    const root = path.join(__dirname, '..', 'packages');
    const found: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts')) {
          for (const m of fs.readFileSync(p, 'utf8').matchAll(/class (\w+) extends FilterStorage\b/g))
            found.push(m[1]!);
        }
      }
    };
    for (const pkg of fs.readdirSync(root)) {
      if (fs.existsSync(path.join(root, pkg, 'src'))) walk(path.join(root, pkg, 'src'));
    }
    expect(found.length).toBeGreaterThanOrEqual(8);
    // CrashStorage sits over the crash simulator's own memory storage (its own test is below).
    const covered = [...WRAPPERS.map((w) => w.name), 'CrashStorage'];
    for (const cls of found)
      expect(
        covered.some((n) => n.includes(cls)),
        `${cls} is tested here`,
      ).toBe(true);
  });

  it('a hand-written wrapper that forwards only what it knew of would hide capabilities (what the base prevents)', () => {
    const inner = new FullStorage(new MemoryFile(), 'f');
    // The old way: a wrapper listing the members it forwards; a member it does not list is lost.
    const handWritten = { path: inner.path, readOnly: inner.readOnly, read: inner.read.bind(inner) };
    expect('extentAt' in handWritten).toBe(false);
    const filter = new FilterStorage(inner);
    const members = ['readSync', 'extentAt', 'allocate', 'zeroRange', 'write', 'truncate', 'flush'] as const;
    for (const member of [...members, 'readOnPool', 'writeOnPool', 'flushOnPool'] as const) {
      expect(typeof filter[member], member).toBe('function');
    }
    expect(filter.capabilities).toEqual(inner.capabilities);
  });

  it('a filter over a storage that cannot write cannot write either, and says read-only when asked to', async () => {
    const ro = new MemoryStorage(new MemoryFile(new Uint8Array(8)), 'ro', true);
    const filter = new FilterStorage(ro);
    expect(filter.capabilities.write).toBe(false);
    expect(filter.capabilities.flush).toBe(false);
    await expect(filter.write(0, new Uint8Array(1))).rejects.toMatchObject({ kind: 'read-only' });
  });

  it("CrashStorage keeps the memory storage's synchronous reads and extents (it changes only what becomes durable)", async () => {
    const vfs = new CrashSimVfs();
    vfs.put('/f', new Uint8Array(8));
    const storage = await vfs.open('/f');
    expect(storage.capabilities).toMatchObject({ write: true, flush: true, syncRead: true, extents: true });
    await storage.write!(0, new Uint8Array([7]));
    const into = new Uint8Array(1);
    expect(storage.readSync!(0, into)).toBe(1);
    expect(into[0]).toBe(7);
  });
});
