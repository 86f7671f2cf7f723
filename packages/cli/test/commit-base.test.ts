/** blk commit -b BASE: commit a chain into an image further down, side by side with qemu-img commit -b. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryVfs, createImage, openImage, type Storage, type Vfs } from '@blk/images';
import { commitImage } from '../src/jobs/commit.js';
import { commitIntoBase } from '../src/jobs/commit.js';
import { blk, qemuImgAsBlk, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('commit-b');

const KiB = 1024;
const SIZE = 1024 * KiB;
const P = '--backing-probe'; // a cow over a cow: UML headers record no backing format

/** base (raw, 0x01 over 256k) <- mid (0x02 at 64k+128k) <- top (0x03 at 128k+128k), as blk cow or qemu qcow2 images. */
function chain(sub: string, kind: 'blk' | 'qemu'): { base: string; mid: string; top: string } {
  const d = path.join(scratch.dir, sub);
  fs.mkdirSync(d);
  const base = path.join(d, 'base.raw');
  rawFile(base, SIZE, [[0, 256 * KiB, 1]]);
  const ext = kind === 'blk' ? 'cow' : 'qcow2';
  const mid = path.join(d, `mid.${ext}`);
  const top = path.join(d, `top.${ext}`);
  if (kind === 'blk') {
    expect(blk(['create', '-q', '-f', 'cow', '-b', base, mid]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 2 64k 128k', mid]).code).toBe(0);
    expect(blk(['create', '-q', '-f', 'cow', '-b', mid, '-F', 'cow', top]).code).toBe(0);
    expect(blk(['io', P, '-c', 'write -P 3 128k 128k', top]).code).toBe(0);
  } else {
    expect(qemuImgAsBlk(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', mid]).code).toBe(0);
    expect(qemuImgAsBlk(['create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top]).code).toBe(0);
    qemuIo(mid, 'write -P 2 64k 128k');
    qemuIo(top, 'write -P 3 128k 128k');
  }
  return { base, mid, top };
}

function qemuIo(file: string, cmd: string): void {
  expect(spawnSync('qemu-io', ['-c', cmd, file], { encoding: 'utf8' }).status).toBe(0);
}

describe('blk commit -b', () => {
  it("commits every layer above BASE into it; the top keeps its data and the chain reads the same (qemu-img's result)", () => {
    const b = chain('three', 'blk');
    const before = path.join(scratch.dir, 'three', 'before.raw');
    expect(blk(['convert', P, b.top, before]).code).toBe(0);
    const midBytes = fs.readFileSync(b.mid);
    const r = blk(['commit', P, '-b', b.base, b.top]);
    expect(r).toMatchObject({ code: 0, stdout: 'Image committed.\n', stderr: '' });
    // Through the top: the same disk. BASE: that disk too (every layer's data, the upper one's where they overlap).
    expect(blk(['compare', P, b.top, before])).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    expect(fs.readFileSync(b.base).equals(fs.readFileSync(before))).toBe(true);
    // -b implies -d: the top keeps its data; the layer in between keeps its data (only its header's record changes).
    expect(blk(['map', P, b.top]).stdout).toMatch(
      new RegExp(`0x20000 +0x20000 +0x[0-9a-f]+ +${b.top.replace(/[.]/g, '\\.')}`),
    );
    expect(
      fs
        .readFileSync(b.mid)
        .subarray(512 * 9 + 4096)
        .equals(midBytes.subarray(512 * 9 + 4096)),
    ).toBe(true);
    expect(blk(['check', P, b.top]).code).toBe(0);

    // qemu-img commit -b on the same chain in qcow2 leaves the same bytes in BASE.
    const q = chain('three-q', 'qemu');
    expect(qemuImgAsBlk(['commit', '-b', q.base, q.top])).toMatchObject({ code: 0, stdout: 'Image committed.\n' });
    expect(fs.readFileSync(q.base).equals(fs.readFileSync(b.base))).toBe(true);
  });

  it('BASE named relative to the current directory or as the chain names it; the direct backing file keeps the top (-d implied)', () => {
    const b = chain('direct', 'blk');
    const r = blk(['commit', P, '-b', './mid.cow', 'top.cow'], { cwd: path.dirname(b.top) });
    expect(r).toMatchObject({ code: 0, stdout: 'Image committed.\n' });
    // Plain commit empties the overlay; -b does not.
    expect(blk(['map', P, '--output=json', b.top]).stdout).toContain('"depth": 0, "present": true');
    expect(blk(['io', P, '-c', 'read -P 3 128k 128k', b.top]).stdout).not.toContain('verification failed');
    expect(blk(['io', '-c', 'read -P 3 128k 128k', b.mid]).stdout).not.toContain('verification failed');
  });

  it("a BASE outside the chain: qemu-img's message, exit 1, nothing written", () => {
    const b = chain('outside', 'blk');
    const q = chain('outside-q', 'qemu');
    const other = path.join(scratch.dir, 'other.raw');
    rawFile(other, SIZE);
    const stamp = fs.readFileSync(b.base);
    for (const name of ['nothere.raw', 'top', other]) {
      const bArg = name === 'top' ? 'top.cow' : name;
      const qArg = name === 'top' ? 'top.qcow2' : name;
      const rb = blk(['commit', P, '-b', bArg, 'top.cow'], { cwd: path.dirname(b.top) });
      const rq = spawnSync('qemu-img', ['commit', '-b', qArg, 'top.qcow2'], {
        cwd: path.dirname(q.top),
        encoding: 'utf8',
      });
      expect([rb.code, rq.status]).toEqual([1, 1]);
      expect(rb.stderr).toBe(`blk: Did not find '${bArg}' in the backing chain of 'top.cow'\n`);
      expect(rq.stderr).toBe(`qemu-img: Did not find '${qArg}' in the backing chain of 'top.qcow2'\n`);
    }
    expect(fs.readFileSync(b.base).equals(stamp)).toBe(true);
  });

  it('a layer whose backing file changed after it was made is refused (--force commits anyway)', () => {
    const b = chain('changed', 'blk');
    const stamp = fs.readFileSync(b.base);
    const later = new Date(Date.now() + 10_000);
    fs.utimesSync(b.base, later, later); // base "modified" after mid was made over it
    const r = blk(['commit', P, '-b', b.base, b.top]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /mid\.cow: backing file .*base\.raw was modified after the overlay was made .*use --force/,
    );
    expect(fs.readFileSync(b.base).equals(stamp)).toBe(true);
    const f = blk(['commit', P, '--force', '-b', b.base, b.top]);
    expect(f.code).toBe(0);
    expect(f.stderr).toMatch(/warning: .*committing anyway \(--force\)/);
  });

  it('guest data that would make a default-raw BASE probe as cow is refused before anything is written', () => {
    const b = chain('guest-header', 'blk');
    const decoy = path.join(scratch.dir, 'guest-header', 'decoy.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', decoy, '1M']).code).toBe(0);
    const sector = path.join(scratch.dir, 'guest-header', 'sector.bin');
    fs.writeFileSync(sector, fs.readFileSync(decoy).subarray(0, 512));
    expect(blk(['io', P, '-c', `write -s ${sector} 0 512`, b.top]).code).toBe(0);
    const baseBytes = fs.readFileSync(b.base);
    const topBytes = fs.readFileSync(b.top);
    const r = blk(['commit', P, '-b', b.base, b.top]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/probe as cow/);
    expect(fs.readFileSync(b.base).equals(baseBytes)).toBe(true);
    expect(fs.readFileSync(b.top).equals(topBytes)).toBe(true); // not even marked
  });

  it('an interrupted commit -b is finished by the same command only: its journal names the top and BASE', async () => {
    const mem = new MemoryVfs();
    await createImage('/d/base.raw', { vfs: mem, format: 'raw', size: SIZE });
    const probe = { format: 'probe' as const };
    const fill = async (file: string, byte: number, at: number) => {
      const image = await openImage(file, { vfs: mem, format: 'cow', backing: probe });
      await image.write(at, new Uint8Array(192 * KiB).fill(byte));
      await image.close();
    };
    await createImage('/d/mid.cow', { vfs: mem, format: 'cow', backing: '/d/base.raw' });
    await fill('/d/mid.cow', 2, 0);
    await createImage('/d/top.cow', { vfs: mem, format: 'cow', backing: { path: '/d/mid.cow', format: 'cow' } });
    await fill('/d/top.cow', 3, 128 * KiB);
    const view = async (v: Vfs) => {
      const image = await openImage('/d/top.cow', { vfs: v, format: 'cow', readOnly: true, backing: probe });
      try {
        return await image.read(0, SIZE);
      } finally {
        await image.close();
      }
    };
    const before = await view(mem);
    // The process dies at BASE's second data write: the top is marked, the journal is there.
    let writes = 0;
    const dying: Vfs = Object.create(mem, {
      open: {
        value: async (p: string, o: Parameters<Vfs['open']>[1]) => {
          const st = await mem.open(p, o);
          if (p !== '/d/base.raw') return st;
          return Object.create(st, {
            write: {
              value: async (off: number, data: Uint8Array) => {
                if (++writes === 2) throw new Error('killed');
                return st.write(off, data);
              },
            },
          }) as Storage;
        },
      },
    }) as Vfs;
    const opts = { backingProbe: true, chunkSize: 64 * KiB };
    await expect(commitIntoBase('/d/top.cow', '/d/base.raw', { ...opts, vfs: dying })).rejects.toThrow('killed');
    await expect(view(mem)).rejects.toThrow(/mtime/); // marked: refused until finished
    expect(await mem.exists('/d/top.cow.blk-commit')).toBe(true);
    // A plain commit of the top would commit into mid.cow: it does not take the mark for its own (the journal
    // names BASE, and mid.cow's own link to the changed BASE is refused); mid.cow stays as it was.
    const midBytes = async () => {
      const st = await mem.open('/d/mid.cow', { readOnly: true });
      const bytes = new Uint8Array(await st.size());
      await st.read(0, bytes);
      await st.close();
      return Buffer.from(bytes);
    };
    const mid = await midBytes();
    await expect(commitImage('/d/top.cow', { ...opts, vfs: mem })).rejects.toThrow();
    expect((await midBytes()).equals(mid)).toBe(true);
    // The same commit -b finishes it.
    await commitIntoBase('/d/top.cow', '/d/base.raw', { ...opts, vfs: mem });
    expect(Buffer.from(await view(mem)).equals(Buffer.from(before))).toBe(true);
    expect(await mem.exists('/d/top.cow.blk-commit')).toBe(false);
    const base = await openImage('/d/base.raw', { vfs: mem, format: 'raw', readOnly: true });
    expect(Buffer.from(await base.read(0, SIZE)).equals(Buffer.from(before))).toBe(true);
    await base.close();

    // The mark without a journal (a stranger's header, or a journal gone) proves nothing: refused.
    const image = await openImage('/d/top.cow', { vfs: mem, format: 'cow', backing: { mode: 'ignore' } });
    const ref = image.backingReference!;
    await image.setBackingReference({ path: ref.path, facts: { size: ref.expect!.size!, mtimeSec: 0 } });
    await image.close();
    await expect(commitIntoBase('/d/top.cow', '/d/base.raw', { ...opts, vfs: mem })).rejects.toThrow(
      /mark of an interrupted commit, but no commit journal/,
    );
  });
});
