/** blk convert -n (existing target), --target-is-zero, -m and -W, side by side with qemu-img convert. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryVfs, createImage, openImage, type Storage, type Vfs } from '@blk/images';
import { convertImage } from '../src/jobs/convert.js';
import { blk, qemuImgAsBlk, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('convert-n');

const MiB = 1 << 20;

function filled(name: string, size: number, byte: number): string {
  const file = path.join(scratch.dir, name);
  fs.writeFileSync(file, Buffer.alloc(size, byte));
  return file;
}

describe('blk convert -n', () => {
  it('writes into the existing target in place, zeros over its old data, the tail past the source untouched (as qemu-img)', () => {
    const src = path.join(scratch.dir, 'src.raw');
    rawFile(src, MiB, [
      [0, 65536, 5],
      [300000, 5000, 6],
    ]);
    for (const extra of [[], ['-S', '0'], ['-W', '-m', '16']]) {
      const q = filled('q.raw', 2 * MiB, 0xaa);
      const b = filled('b.raw', 2 * MiB, 0xaa);
      const ino = fs.statSync(b).ino;
      const rq = qemuImgAsBlk(['convert', '-n', '-f', 'raw', '-O', 'raw', ...extra, src, q]);
      const rb = blk(['convert', '-n', '-f', 'raw', '-O', 'raw', ...extra, src, b]);
      expect({ extra, code: rb.code, out: rb.stdout, err: rb.stderr }).toEqual({
        extra,
        code: rq.code,
        out: rq.stdout,
        err: rq.stderr,
      });
      expect(rb.code).toBe(0);
      expect(fs.readFileSync(b).equals(fs.readFileSync(q))).toBe(true);
      // Where the source reads zeros, holes (write-zeroes with unmap), as qemu-img leaves them.
      const map = (f: string) =>
        spawnSync('qemu-img', ['map', '--output=json', '-f', 'raw', f], { encoding: 'utf8' }).stdout;
      expect({ extra, map: map(b) }).toEqual({ extra, map: map(q) });
      expect(fs.statSync(b).ino).toBe(ino); // in place: no temporary file renamed over it
      expect(fs.readFileSync(b)[65536]).toBe(0);
      expect(fs.readFileSync(b)[MiB]).toBe(0xaa);
    }
  });

  it("--target-is-zero leaves the target's bytes where the source reads zeros (as qemu-img)", () => {
    const src = path.join(scratch.dir, 'src-z.raw');
    rawFile(src, MiB, [[0, 65536, 5]]);
    const q = filled('qz.raw', MiB, 0xaa);
    const b = filled('bz.raw', MiB, 0xaa);
    expect(qemuImgAsBlk(['convert', '-n', '--target-is-zero', '-f', 'raw', '-O', 'raw', src, q]).code).toBe(0);
    expect(blk(['convert', '-n', '--target-is-zero', '-f', 'raw', '-O', 'raw', src, b]).code).toBe(0);
    expect(fs.readFileSync(b).equals(fs.readFileSync(q))).toBe(true);
    expect(fs.readFileSync(b)[65536]).toBe(0xaa);
  });

  it('into an existing cow overlay (format probed without -O): the overlay reads as the source, over its backing data', () => {
    const src = path.join(scratch.dir, 'src-c.raw');
    rawFile(src, MiB, [[4096, 8192, 7]]);
    const base = filled('base-c.raw', MiB, 0x33);
    const top = path.join(scratch.dir, 'top-c.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', base, top]).code).toBe(0);
    const r = blk(['convert', '-n', src, top]);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(blk(['compare', src, top])).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    expect(blk(['info', '--output=json', top]).stdout).toContain('"format": "cow"');
    expect(fs.readFileSync(base).every((x) => x === 0x33)).toBe(true);
  });

  it('a second identical run writes nothing', () => {
    const src = path.join(scratch.dir, 'src-r.raw');
    rawFile(src, MiB, [[0, 4096, 1]]);
    const b = filled('br.raw', MiB, 0);
    expect(blk(['convert', '-n', src, b]).code).toBe(0);
    const past = new Date(Date.now() - 3_600_000);
    fs.utimesSync(b, past, past);
    const stamp = fs.statSync(b).mtimeMs;
    expect(blk(['convert', '-n', '-t', 'unsafe', src, b]).code).toBe(0);
    expect(fs.statSync(b).mtimeMs).toBe(stamp);
  });

  it('refuses what qemu-img refuses, with its messages: a smaller or missing target, -o, --target-is-zero without -n', () => {
    const src = path.join(scratch.dir, 'src-e.raw');
    rawFile(src, MiB, [[0, 4096, 1]]);
    const small = filled('small.raw', MiB / 2, 0xaa);
    let q = qemuImgAsBlk(['convert', '-n', '-f', 'raw', '-O', 'raw', src, small]);
    let b = blk(['convert', '-n', '-f', 'raw', '-O', 'raw', src, small]);
    expect([b.code, q.code]).toEqual([1, 1]);
    expect(b.stderr).toBe(`blk: ${small}: output file is smaller than input file (524288 < 1048576 bytes)\n`);
    expect(q.stderr).toBe('blk: output file is smaller than input file\n');
    expect(fs.readFileSync(small).every((x) => x === 0xaa)).toBe(true);

    const missing = path.join(scratch.dir, 'missing.raw');
    expect(qemuImgAsBlk(['convert', '-n', '-f', 'raw', '-O', 'raw', src, missing]).code).toBe(1);
    expect(blk(['convert', '-n', '-f', 'raw', '-O', 'raw', src, missing])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/no such file/),
    });
    expect(fs.existsSync(missing)).toBe(false);

    for (const args of [
      ['-n', '-o', 'preallocation=full'],
      ['--target-is-zero'],
      ['-m', '0'],
      ['-m', '17'],
      ['-m', 'x'],
    ]) {
      const dst = filled('e.raw', 2 * MiB, 0xaa);
      q = qemuImgAsBlk(['convert', '-f', 'raw', '-O', 'raw', ...args, src, dst]);
      b = blk(['convert', '-f', 'raw', '-O', 'raw', ...args, src, dst]);
      expect({ args, code: b.code, err: b.stderr }).toEqual({ args, code: q.code, err: q.stderr });
      expect(fs.readFileSync(dst).every((x) => x === 0xaa)).toBe(true);
    }
  });

  it('a target probed as raw is not turned into another format: refused before anything is written', () => {
    const decoy = path.join(scratch.dir, 'decoy.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', decoy, '1M']).code).toBe(0);
    const src = path.join(scratch.dir, 'src-h.raw');
    rawFile(src, MiB);
    const fd = fs.openSync(src, 'r+');
    fs.writeSync(fd, fs.readFileSync(decoy).subarray(0, 512), 0, 512, 0);
    fs.closeSync(fd);
    const b = filled('bh.raw', MiB, 0x55);
    const r = blk(['convert', '-n', '-f', 'raw', src, b]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/probe as cow/);
    expect(fs.readFileSync(b).every((x) => x === 0x55)).toBe(true);
    // Naming the format writes it as asked.
    expect(blk(['convert', '-n', '-f', 'raw', '-O', 'raw', src, b]).code).toBe(0);
    expect(fs.readFileSync(b).equals(fs.readFileSync(src))).toBe(true);
  });
});

describe('blk convert -W and -m', () => {
  /** A Vfs over memory where reads of the source's first chunk are slow, recording the offsets written to any other file. */
  function slowFirstChunk(mem: MemoryVfs, written: number[]): Vfs {
    return Object.create(mem, {
      open: {
        value: async (p: string, o: Parameters<Vfs['open']>[1]) => {
          const s = await mem.open(p, o);
          return Object.create(s, {
            // No synchronous path around the slow read.
            readSync: { value: undefined },
            capabilities: { value: { ...s.capabilities, syncRead: false } },
            read: {
              value: async (offset: number, into: Uint8Array) => {
                if (p === '/src.raw' && offset === 0) await new Promise((r) => setTimeout(r, 30));
                return s.read(offset, into);
              },
            },
            write: {
              value: async (offset: number, data: Uint8Array) => {
                if (p !== '/src.raw') written.push(offset);
                return s.write(offset, data);
              },
            },
          }) as Storage;
        },
      },
    }) as Vfs;
  }

  it('without -W the target is written front to back even when a later chunk is read first; -W writes as reads finish', async () => {
    const chunk = 64 * 1024;
    for (const outOfOrder of [false, true]) {
      const mem = new MemoryVfs();
      await createImage('/src.raw', { vfs: mem, format: 'raw', size: 8 * chunk });
      const s = await openImage('/src.raw', { vfs: mem, format: 'raw' });
      await s.write(0, new Uint8Array(8 * chunk).fill(9));
      await s.close();
      const written: number[] = [];
      await convertImage('/src.raw', '/dst.raw', {
        vfs: slowFirstChunk(mem, written),
        chunkSize: chunk,
        parallel: 4,
        outOfOrder,
      });
      const sorted = [...written].sort((a, b) => a - b);
      if (outOfOrder) expect(written).not.toEqual(sorted);
      else expect(written).toEqual(sorted);
      const d = await openImage('/dst.raw', { vfs: mem, format: 'raw', readOnly: true });
      expect((await d.read(0, 8 * chunk)).every((x) => x === 9)).toBe(true);
      await d.close();
    }
  });
});
