/** The CLI's pure helpers: size suffixes, qemu's number formats, JSON key order, getopt. */
import { describe, expect, it } from 'vitest';
import { parseSize, parseSizeResult } from '../src/size.js';
import { cFixed, cvtstr, sizeToStr, timestr } from '../src/format.js';
import { qdictOrder, toQemuJson } from '../src/qjson.js';
import { getopt } from '../src/io/getopt.js';
import { parseCreateOptions, splitOptionList } from '../src/options.js';
import { CopyPipeline, parseCacheMode } from '../src/jobs/common.js';
import { dumpBuffer, printReport } from '../src/io/report.js';

describe('size suffixes (qemu_strtosz)', () => {
  const cases: Array<[string, number | 'invalid' | 'range']> = [
    ['512', 512],
    ['64k', 65536],
    ['64K', 65536],
    ['10M', 10485760],
    ['2G', 2147483648],
    ['1T', 1099511627776],
    ['1P', 2 ** 50],
    ['1.5G', 1610612736],
    ['1.k', 1024],
    ['0x1000', 4096],
    ['08', 8],
    ['+5', 5],
    [' 7', 7],
    ['1b', 1],
    ['1B', 1],
    ['1.0', 1],
    ['1.', 1],
    ['1.0005k', 1025],
    ['1.00048828125k', 1025],
    ['7.99P', 8995940255672566],
    ['0x10k', 'invalid'],
    ['1e3', 'invalid'],
    ['-1', 'invalid'],
    ['0.5', 'invalid'],
    ['1.5', 'invalid'],
    ['abc', 'invalid'],
    ['1KB', 'invalid'],
    ['', 'invalid'],
    ['0x', 'invalid'],
    ['1Q', 'invalid'],
    ['8E', 'range'],
    ['8P', 'range'],
    ['1.5e', 'range'],
  ];
  it.each(cases)('%j -> %j', (text, want) => {
    const r = parseSizeResult(text);
    if (typeof want === 'number') expect(r).toEqual({ ok: true, value: want });
    else expect(r).toEqual({ ok: false, error: want });
  });

  it('throws one clear line for garbage', () => {
    expect(() => parseSize('12X', 'image size')).toThrow(/^invalid image size '12X': use a number of bytes/);
    expect(() => parseSize('9E')).toThrow(/too large/);
  });
});

describe('qemu number formats', () => {
  it('cvtstr like qemu-io', () => {
    expect(cvtstr(65536)).toBe('64 KiB');
    expect(cvtstr(1536)).toBe('1.500 KiB');
    expect(cvtstr(512)).toBe('512 bytes');
    expect(cvtstr(0)).toBe('0 bytes');
    expect(cvtstr(500.5)).toBe('500.500000 bytes');
    expect(cvtstr(6 * 2 ** 30)).toBe('6 GiB');
    expect(cvtstr(0x1ffa00)).toBe('1.999 MiB');
    // glibc rounds exact ties to even: 1.0625 KiB -> 1.062
    expect(cvtstr(1088)).toBe('1.062 KiB');
  });

  it('size_to_str like qemu-img', () => {
    expect(sizeToStr(1048576)).toBe('1 MiB');
    expect(sizeToStr(331776)).toBe('324 KiB');
    expect(sizeToStr(69632)).toBe('68 KiB');
    expect(sizeToStr(0)).toBe('0 B');
    expect(sizeToStr(512)).toBe('512 B');
    expect(sizeToStr(1000)).toBe('0.977 KiB');
    expect(sizeToStr(1048575)).toBe('1 MiB');
    expect(sizeToStr(1.5 * 2 ** 30)).toBe('1.5 GiB');
    expect(sizeToStr(6442450944)).toBe('6 GiB');
  });

  it('printf %.Nf and timestr', () => {
    expect(cFixed(0.0625, 3)).toBe('0.062');
    expect(cFixed(0.0635, 3)).toBe('0.064');
    expect(cFixed(2.5, 0)).toBe('2');
    expect(timestr(0.004)).toBe('00.00 sec');
    expect(timestr(1.234)).toBe('0:00:01.23');
    expect(timestr(0.5, true)).toBe('0:00:00.50');
  });

  it('print_report and dump_buffer', () => {
    expect(printReport('wrote', 0.5, 0, 512, 512, 1, false)).toBe(
      'wrote 512/512 bytes at offset 0\n512 bytes, 1 ops; 00.50 sec (1 KiB/sec and 2.0000 ops/sec)\n',
    );
    expect(printReport('read', 0.5, 0, 1024, 1024, 1, true)).toBe('1024,1,0:00:00.50,2048.000,2.000\n');
    const buf = new Uint8Array(20).fill(0xcd);
    buf.set([0x41, 0x7a, 0x30, 0x20], 16);
    expect(dumpBuffer(buf, 0x10)).toBe(
      '00000010:  cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd  ................\n'
        + '00000020:  41 7a 30 20  Az0.\n',
    );
  });
});

describe('qemu JSON', () => {
  it('orders keys as a QDict iterates them', () => {
    const keys = [
      'filename',
      'format',
      'dirty-flag',
      'actual-size',
      'virtual-size',
      'cluster-size',
      'backing-filename',
      'full-backing-filename',
      'backing-filename-format',
      'format-specific',
    ];
    expect(qdictOrder(Object.fromEntries(keys.map((k) => [k, 1])))).toEqual([
      'backing-filename-format',
      'virtual-size',
      'filename',
      'cluster-size',
      'format',
      'actual-size',
      'format-specific',
      'full-backing-filename',
      'backing-filename',
      'dirty-flag',
    ]);
  });

  it('pretty-prints with four spaces and escapes like QEMU', () => {
    expect(toQemuJson({ a: [1, { b: 'x"\u00e9' }], c: true })).toBe(
      '{\n    "a": [\n        1,\n        {\n            "b": "x\\"\\u00E9"\n        }\n    ],\n    "c": true\n}',
    );
  });
});

describe('qemu-io getopt', () => {
  it('bundles, attached values and permutation', () => {
    const r = getopt(['-qP', '5', '0', '512', '-v'], 'CP:qv', 'read');
    expect(r.ok && [...r.flags]).toEqual([
      ['q', true],
      ['P', '5'],
      ['v', true],
    ]);
    expect(r.ok && r.operands).toEqual(['0', '512']);
    const r2 = getopt(['-P0x1f', '--', '-1'], 'P:', 'read');
    expect(r2.ok && r2.flags.get('P')).toBe('0x1f');
    expect(r2.ok && r2.operands).toEqual(['-1']);
  });

  it('reports bad options as glibc does', () => {
    expect(getopt(['-x'], 'P:', 'read')).toEqual({ ok: false, message: "read: invalid option -- 'x'" });
    expect(getopt(['-P'], 'P:', 'read')).toEqual({ ok: false, message: "read: option requires an argument -- 'P'" });
  });
});

describe('-o creation options', () => {
  it('splits with ,, as a literal comma', () => {
    expect(splitOptionList('a=1,b=x,,y,help')).toEqual([
      ['a', '1'],
      ['b', 'x,y'],
      ['help', undefined],
    ]);
  });

  it('maps version=N to cow variants and refuses options raw lacks', () => {
    expect(parseCreateOptions('cow', ['version=2']).driverOptions).toEqual({ variant: 'v2-qemu-lp64' });
    expect(parseCreateOptions('cow', ['version=3,alignment=512']).driverOptions).toEqual({
      variant: 'v3',
      alignment: 512,
    });
    expect(() => parseCreateOptions('cow', ['version=4'])).toThrow(/invalid cow version/);
    expect(() => parseCreateOptions('raw', ['version=2'])).toThrow(/format raw does not support option 'version'/);
    expect(parseCreateOptions('raw', ['size=1M']).size).toBe(1048576);
  });
});

describe('copy jobs: cache modes and the pipeline', () => {
  it("parseCacheMode takes qemu-img's modes, defaults to writeback, refuses others", () => {
    expect(parseCacheMode(undefined)).toBe('writeback');
    for (const m of ['writeback', 'unsafe', 'none', 'writethrough', 'directsync']) expect(parseCacheMode(m)).toBe(m);
    expect(() => parseCacheMode('fast')).toThrow(
      "invalid cache mode 'fast': use one of writeback, unsafe, none, writethrough, directsync",
    );
  });

  it('CopyPipeline keeps at most depth tasks in flight, each on its own slot; drain() waits for all', async () => {
    let next = 0;
    const pipeline = new CopyPipeline(3, () => ({ id: next++ }));
    let inflight = 0,
      most = 0;
    const busy = new Set<number>();
    const done: number[] = [];
    for (let i = 0; i < 10; i++) {
      await pipeline.start(async (slot) => {
        expect(busy.has(slot.id)).toBe(false);
        busy.add(slot.id);
        most = Math.max(most, ++inflight);
        await new Promise((r) => setTimeout(r, (i * 7) % 5));
        inflight--;
        busy.delete(slot.id);
        done.push(i);
      });
    }
    await pipeline.drain();
    expect(most).toBe(3);
    expect(next).toBe(3);
    expect(done.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('CopyPipeline: the first failure stops new tasks and is thrown; settle() waits without throwing', async () => {
    const pipeline = new CopyPipeline(2, () => undefined);
    let finished = 0;
    await pipeline.start(async () => {
      await new Promise((r) => setTimeout(r, 5));
      finished++;
    });
    await pipeline.start(async () => {
      throw new Error('boom');
    });
    await expect(
      (async () => {
        for (let i = 0; i < 5; i++)
          await pipeline.start(async () => {
            finished++;
          });
      })(),
    ).rejects.toThrow('boom');
    await pipeline.settle();
    await expect(pipeline.drain()).rejects.toThrow('boom');
    expect(finished).toBeGreaterThanOrEqual(1);
  });
});

describe("hostServeVfs (blk serve's host Vfs)", () => {
  it('a large read runs on the thread pool: the event loop turns before it completes (a small one is read synchronously)', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { openImage } = await import('@blk/images');
    const { hostServeVfs } = await import('../src/host-io.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-serve-vfs-'));
    try {
      const file = path.join(dir, 'disk.raw');
      fs.writeFileSync(file, new Uint8Array(8 * 1024 * 1024).fill(0x3c));
      const image = await openImage(file, { format: 'raw', readOnly: true, vfs: hostServeVfs() });
      try {
        const turned = async (length: number) => {
          const into = new Uint8Array(length);
          let done = false;
          const read = image.readInto(0, into).then(() => {
            done = true;
          });
          // A read done on the main thread has completed (its promise settles first); one on the pool has not.
          await new Promise((r) => setImmediate(r));
          const pending = !done;
          await read;
          expect(into.every((b) => b === 0x3c)).toBe(true);
          return pending;
        };
        expect(await turned(8 * 1024 * 1024)).toBe(true);
        expect(await turned(4096)).toBe(false);
        // Small reads stay synchronous below (the drivers' fast path); long ones are sent to read().
        const storage = await hostServeVfs().open(file, { readOnly: true });
        expect(storage.capabilities.syncRead).toBe(true);
        expect(storage.capabilities.limits.syncReadMax).toBe(128 * 1024 - 1);
        await storage.close();
      } finally {
        await image.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("ThreadedIoVfs (the copy jobs' host Vfs)", () => {
  it('flushes on the thread pool (flushOnPool), so that a flush behind a copy does not stop its event loop', async () => {
    const { MemoryVfs } = await import('@blk/core');
    const { ThreadedIoVfs } = await import('../src/host-io.js');
    const calls: string[] = [];
    const inner = new MemoryVfs();
    inner.put('/f', new Uint8Array(1024));
    // A storage offering the pool calls of NodeFileStorage, recording which flush is used.
    const pooled = {
      ...inner,
      open: async (path: string, o?: Parameters<MemoryVfs['open']>[1]) => {
        const storage = await inner.open(path, o);
        return Object.assign(storage, {
          capabilities: { ...storage.capabilities, pool: true },
          readOnPool: (offset: number, into: Uint8Array) => storage.read(offset, into),
          writeOnPool: (offset: number, data: Uint8Array) => storage.write!(offset, data),
          flushOnPool: async () => {
            calls.push('flushOnPool');
          },
          flush: async () => {
            calls.push('flush');
          },
        });
      },
    } as unknown as MemoryVfs;
    const storage = await new ThreadedIoVfs(pooled).open('/f', {});
    await storage.flush!();
    expect(calls).toEqual(['flushOnPool']);
    await storage.close();
  });

  it('hostCopyVfs: under -t unsafe (no flush to overlap) large reads and writes stay synchronous; other modes use the pool', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { hostCopyVfs } = await import('../src/host-io.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-copy-vfs-'));
    try {
      const file = path.join(dir, 'f.raw');
      fs.writeFileSync(file, new Uint8Array(1024 * 1024).fill(7));
      const unsafe = await hostCopyVfs('unsafe').open(file, { readOnly: true });
      const pooled = await hostCopyVfs('writeback').open(file, { readOnly: true });
      try {
        // The storage reads synchronously (NodeFileStorage's own), even a 1 MiB request: no pool round trip.
        expect(unsafe.capabilities.syncRead).toBe(true);
        const into = new Uint8Array(1024 * 1024);
        expect(unsafe.readSync!(0, into)).toBe(into.length);
        expect(into[into.length - 1]).toBe(7);
        // Under writeback the copy's large requests go to the pool: no synchronous read offered.
        expect(pooled.capabilities.syncRead ?? false).toBe(false);
      } finally {
        await unsafe.close();
        await pooled.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('close() waits for thread-pool reads in flight, so their descriptor number is never reused under them', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { NodeVfs } = await import('@blk/core');
    const { ThreadedIoVfs } = await import('../src/host-io.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-threaded-'));
    try {
      const size = 32 * 1024 * 1024;
      for (let round = 0; round < 3; round++) {
        const a = path.join(dir, `a${round}`);
        fs.writeFileSync(a, new Uint8Array(size).fill(0xaa));
        const storage = await new ThreadedIoVfs(new NodeVfs()).open(a, { readOnly: true });
        // Past the end: a second call finds the end of the file; it must still read this file.
        const into = new Uint8Array(2 * size);
        const read = storage.read(0, into);
        await storage.close();
        const b = path.join(dir, `b${round}`);
        fs.writeFileSync(b, new Uint8Array(3 * size).fill(0xbb));
        const fdB = fs.openSync(b, 'r');
        try {
          expect(await read).toBe(size);
          // memcmp, not a JS callback per byte (seconds over 64 MiB on a busy machine).
          const filledWith = (b: Uint8Array, v: number) =>
            Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.alloc(b.byteLength, v));
          expect(filledWith(into.subarray(0, size), 0xaa)).toBe(true);
          expect(filledWith(into.subarray(size), 0)).toBe(true);
        } finally {
          fs.closeSync(fdB);
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
