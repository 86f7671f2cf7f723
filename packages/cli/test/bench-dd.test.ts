/** blk bench and blk dd, side by side with qemu-img bench and qemu-img dd. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FilterStorage, MemoryVfs, createImage, type Storage, type Vfs } from '@blk/images';
import { benchImage } from '../src/jobs/bench.js';
import { blk, qemuImgAsBlk, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('bench-dd');

const timed = (out: string) => out.replace(/Run completed in \d+\.\d{3} seconds\./, 'Run completed in X seconds.');

describe('blk bench', () => {
  it("prints qemu-img bench's lines for the same options", () => {
    const img = path.join(scratch.dir, 'read.raw');
    rawFile(img, 1 << 20, [[0, 65536, 5]]);
    for (const args of [
      ['-c', '100', '-d', '4', '-s', '4k'],
      ['-c', '10', '-S', '0'],
      ['-c', '0'],
      ['-c', '300', '-d', '2', '-s', '8k', '-o', '64k', '-S', '16k'],
      ['-w', '-c', '10', '-d', '2', '--flush-interval=2'],
      ['-w', '-c', '10', '-d', '2', '--flush-interval=3', '--no-drain'],
      ['-c', '10', '-q', '-U', '-t', 'writeback', '-i', 'threads'],
    ]) {
      const q = qemuImgAsBlk(['bench', '-f', 'raw', ...args, img]);
      const b = blk(['bench', '-f', 'raw', ...args, img]);
      expect({ args, code: b.code, out: timed(b.stdout) }).toEqual({ args, code: q.code, out: timed(q.stdout) });
      expect(b.stdout).toMatch(/Run completed in \d+\.\d{3} seconds\.\n$/);
    }
  });

  it('a write test writes the pattern where qemu-img bench writes it (offsets, step, wrap at the end)', () => {
    const args = ['-w', '-c', '40', '-d', '3', '-s', '4k', '-S', '12k', '-o', '8k', '--pattern=0x41'];
    const a = path.join(scratch.dir, 'w-blk.raw');
    const q = path.join(scratch.dir, 'w-qemu.raw');
    rawFile(a, 256 * 1024, [[0, 256 * 1024, 7]]);
    fs.copyFileSync(a, q);
    expect(qemuImgAsBlk(['bench', '-f', 'raw', ...args, q]).code).toBe(0);
    expect(blk(['bench', '-f', 'raw', ...args, a]).code).toBe(0);
    expect(fs.readFileSync(a).equals(fs.readFileSync(q))).toBe(true);
    expect(fs.readFileSync(a)[8192]).toBe(0x41);
  });

  it("bad options and failing requests: qemu-img's messages and exit code 1", () => {
    const img = path.join(scratch.dir, 'err.raw');
    rawFile(img, 1 << 20);
    for (const args of [
      ['-c', 'x'],
      ['-d', 'x'],
      ['-s', 'x'],
      ['-s', '2G'],
      ['-S', 'x'],
      ['-o', 'x'],
      ['-w', '--flush-interval=x'],
      ['--pattern=300'],
      ['--pattern=x'],
      ['-i', 'foo'],
      ['-c', '10', '--flush-interval=2'],
      ['-w', '-c', '10', '-d', '4', '--flush-interval=2'],
    ]) {
      const q = qemuImgAsBlk(['bench', '-f', 'raw', ...args, img]);
      const b = blk(['bench', '-f', 'raw', ...args, img]);
      expect({ args, code: b.code }).toEqual({ args, code: q.code });
      expect(b.code).toBe(1);
      // qemu-img splits the suffix hint over two lines; blk says it on one.
      expect(b.stderr.split('\n')[0]!.replace(/ for .*/, '')).toBe(q.stderr.split('\n')[0]!.replace(/ for$/, ''));
    }
    expect(blk(['bench', '-t', 'foo', img])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^blk: invalid cache mode 'foo'/),
    });
    // A request past the end: qemu-img prints the plan, then fails.
    const q = qemuImgAsBlk(['bench', '-f', 'raw', '-c', '10', '-o', '2M', img]);
    const b = blk(['bench', '-f', 'raw', '-c', '10', '-o', '2M', img]);
    expect([b.code, b.stdout]).toEqual([q.code, q.stdout]);
    expect(b.stderr).toMatch(/^blk: Failed request: .*reaches past the end of the image/);
    // qemu-img waits forever with -d 0; blk refuses it.
    expect(blk(['bench', '-d', '0', img])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^blk: Invalid queue depth specified/),
    });
    expect(blk(['bench', '-n', img]).stderr).toMatch(/native AIO\) is not supported/);
  });

  it('keeps DEPTH requests in flight on the image, never more', async () => {
    // A Vfs whose reads take a few ms: the bench job must have `depth` of them pending at once.
    const mem = new MemoryVfs();
    await createImage('/img.raw', { vfs: mem, format: 'raw', size: 1 << 20 });
    let inFlight = 0;
    let most = 0;
    const slow: Vfs = Object.create(mem, {
      open: {
        value: async (p: string, o: Parameters<Vfs['open']>[1]) => {
          const s = await mem.open(p, o);
          // A filter that overrides read() loses the synchronous read below (FilterStorage narrows syncRead),
          // so every read of the bench goes through the slow one.
          const wrapped: Storage = new (class extends FilterStorage {
            override async read(offset: number, into: Uint8Array): Promise<number> {
              inFlight++;
              most = Math.max(most, inFlight);
              await new Promise((r) => setTimeout(r, 2));
              inFlight--;
              return s.read(offset, into);
            }
          })(s);
          return wrapped;
        },
      },
    });
    for (const depth of [1, 8]) {
      most = 0;
      const r = await benchImage('/img.raw', { vfs: slow, format: 'raw', count: 64, depth, bufferSize: 4096 });
      expect(r).toMatchObject({ count: 64, depth, step: 4096 });
      expect(most).toBe(depth);
    }
  });
});

describe('blk dd', () => {
  it('copies what qemu-img dd copies (bs, count from the start, skip) into a new image', () => {
    const src = path.join(scratch.dir, 'dd-src.raw');
    rawFile(src, 1 << 20, [
      [0, 65536, 5],
      [100000, 3000, 9],
      [700 * 1024, 4096, 1],
    ]);
    const cases = [
      [],
      ['bs=64k', 'count=2', 'skip=1'],
      ['bs=1000', 'count=3'],
      ['bs=1M', 'count=3'],
      ['bs=3000', 'skip=30'],
      ['bs=1k', 'count=0'],
      ['bs=64k', 'skip=16'],
    ];
    for (const [i, ops] of cases.entries()) {
      const q = path.join(scratch.dir, `dd-q${i}.raw`);
      const b = path.join(scratch.dir, `dd-b${i}.raw`);
      const rq = qemuImgAsBlk(['dd', '-f', 'raw', '-O', 'raw', ...ops, `if=${src}`, `of=${q}`]);
      const rb = blk(['dd', '-f', 'raw', ...ops, `if=${src}`, `of=${b}`]);
      expect({ ops, code: rb.code, out: rb.stdout, err: rb.stderr }).toEqual({
        ops,
        code: rq.code,
        out: rq.stdout,
        err: rq.stderr,
      });
      expect(fs.readFileSync(b).equals(fs.readFileSync(q))).toBe(true);
    }
    // Skipping past the end: qemu-img's message (a warning in blk), an empty output, exit 0.
    const rq = qemuImgAsBlk([
      'dd',
      '-f',
      'raw',
      'bs=64k',
      'skip=100',
      `if=${src}`,
      `of=${path.join(scratch.dir, 'dd-qe.raw')}`,
    ]);
    const rb = blk(['dd', '-f', 'raw', 'bs=64k', 'skip=100', `if=${src}`, `of=${path.join(scratch.dir, 'dd-be.raw')}`]);
    expect([rb.code, fs.statSync(path.join(scratch.dir, 'dd-be.raw')).size]).toEqual([rq.code, 0]);
    expect(rb.stderr).toBe(`blk: warning: ${src}: cannot skip to specified offset\n`);
    expect(rq.stderr).toBe(`blk: ${src}: cannot skip to specified offset\n`);
  });

  it('writes the output format: a cow copy of a range reads what qemu-img dd copies', () => {
    const src = path.join(scratch.dir, 'dd-src2.raw');
    rawFile(src, 1 << 20, [
      [0, 1 << 20, 3],
      [65536, 512, 0],
    ]);
    const q = path.join(scratch.dir, 'dd-q.raw');
    const b = path.join(scratch.dir, 'dd-b.cow');
    expect(qemuImgAsBlk(['dd', '-f', 'raw', 'bs=4k', 'count=64', 'skip=8', `if=${src}`, `of=${q}`]).code).toBe(0);
    // Without a backing file cow is QEMU's layout (v2-qemu-lp64), as QEMU's cow driver made it.
    const r = blk(['dd', '-f', 'raw', '-O', 'cow', 'bs=4k', 'count=64', 'skip=8', `if=${src}`, `of=${b}`]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(blk(['compare', '-f', 'raw', '-F', 'cow', q, b])).toMatchObject({
      code: 0,
      stdout: 'Images are identical.\n',
    });
    expect(fs.readdirSync(scratch.dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it("operand errors: qemu-img's messages, exit 1, no output file", () => {
    const src = path.join(scratch.dir, 'dd-src3.raw');
    rawFile(src, 65536);
    const of = path.join(scratch.dir, 'dd-none.raw');
    for (const ops of [['bs=0'], ['bs=1x'], ['count=-1'], ['skip=x'], ['foo=1'], ['a']]) {
      const args = ['dd', '-f', 'raw', ...ops, `if=${src}`, `of=${of}`];
      const q = qemuImgAsBlk(args);
      const b = blk(args);
      expect({ ops, code: b.code }).toEqual({ ops, code: q.code });
      expect(b.stderr.split('\n')[0]!.replace(/ for .*/, '')).toBe(q.stderr.split('\n')[0]!.replace(/ for$/, ''));
      expect(fs.existsSync(of)).toBe(false);
    }
    expect(blk(['dd', `if=${src}`])).toMatchObject({
      code: 1,
      stderr: 'blk: Must specify both input and output files\n',
    });
  });
});
