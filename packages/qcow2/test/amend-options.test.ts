/**
 * The rest of qemu-img amend's qcow2 options through the spawned `blk amend`, against `qemu-img
 * amend` on twin copies: size (grow, shrink, with compat and refcount_bits, in QEMU's order: a
 * resize before a downgrade, after anything else), backing_file/backing_fmt (accepted only when
 * both equal the image's), data_file, data_file_raw, encrypt.*, create-only options, a downgrade
 * over snapshots of another size or of a zstd image (allowed without compressed clusters), and a
 * downgrade over zero clusters (expanded, over a backing file too; byte for byte what qemu-img
 * writes without snapshots; with snapshots blk stays consistent where qemu-img 7.2 is not). Same exit codes, qemu-img's
 * words, and after a success the same virtual size and guest data, which `qemu-img check` passes;
 * after a refusal blk's file is unchanged (qemu-img sometimes applies the steps before the failing
 * one: noted).
 */
import * as fs from 'node:fs';
import { DriverRegistry, openImage as openIn, type MemoryVfs } from '@blk/core';
import { CrashSimVfs, Rng } from '@blk/faults';
import { rawDriver } from '@blk/raw';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qcow2Driver } from '../src/index.js';
import { crashAtPoints, writePoints } from './crash-points.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 amend option tests are skipped');

let dir: string;
const { spawn: run, ok, p } = qemuTools(() => dir);
const info = (file: string) => JSON.parse(ok('qemu-img', 'info', '-U', '--output=json', file));

/**
 * qemu-img's message as blk prints it: `blk: FILE: ` for `qemu-img: `, and a second line (qemu's
 * hint) joined to the first with ': ', lower-cased, its final period and qemu-img's name changed.
 */
function asBlk(stderr: string, file: string): string {
  const lines = stderr.trimEnd().split('\n');
  let text = lines[0]!.replace(/^qemu-img: /, '');
  if (lines.length > 1)
    text += `: ${lines[1]![0]!.toLowerCase()}${lines[1]!.slice(1).replace(/\.$/, '').replace('qemu-img', 'blk')}`;
  return `blk: ${file}: ${text}\n`;
}

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-amend-opts');
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', p('base.qcow2'), '4M');
  ok('qemu-io', '-c', 'write -P 7 0 4M', p('base.qcow2'));
  // An overlay (backing file with a recorded format) and a plain image, with data.
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', p('over.qcow2'));
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', p('plain.qcow2'), '4M');
  for (const f of ['over.qcow2', 'plain.qcow2'])
    ok('qemu-io', '-c', 'write -P 1 64k 512k', '-c', 'write -P 2 3M 100k', p(f));
  // Snapshots: of the image's size (a downgrade keeps them) and of a size it no longer has.
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', p('snap.qcow2'), '1M');
  ok('qemu-img', 'snapshot', '-c', 's1', p('snap.qcow2'));
  fs.copyFileSync(p('snap.qcow2'), p('snap-resized.qcow2'));
  ok('qemu-img', 'resize', '-q', p('snap-resized.qcow2'), '2M');
  // zstd: a downgrade drops it when no cluster is compressed.
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', p('zstd.qcow2'), '1M');
  ok('qemu-io', '-c', 'write -P 1 0 64k', p('zstd.qcow2'));
  fs.copyFileSync(p('zstd.qcow2'), p('zstd-c.qcow2'));
  ok('qemu-io', '-c', 'write -c -P 2 64k 64k', p('zstd-c.qcow2'));
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', p('v2snap.qcow2'), '1M');
  ok('qemu-img', 'snapshot', '-c', 's1', p('v2snap.qcow2'));
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('blk amend options as qemu-img amend', () => {
  it.each([
    // [image, options, qemu-img changes the file before it fails]
    ['over.qcow2', 'backing_file=base.qcow2,backing_fmt=qcow2', false],
    ['over.qcow2', 'backing_file=base.qcow2', false],
    ['over.qcow2', 'backing_fmt=qcow2', false],
    ['over.qcow2', 'backing_file=other.qcow2,backing_fmt=qcow2', false],
    ['plain.qcow2', 'backing_file=base.qcow2,backing_fmt=qcow2', false],
    ['plain.qcow2', 'data_file=x.raw', false],
    ['plain.qcow2', 'data_file_raw=off', false],
    ['plain.qcow2', 'data_file_raw=on', false],
    ['plain.qcow2', 'encrypt.state=active', false],
    ['plain.qcow2', 'encrypt.format=luks', false],
    ['plain.qcow2', 'cluster_size=4096', false],
    ['plain.qcow2', 'extended_l2=on', false],
    ['plain.qcow2', 'compression_type=zstd', false],
    ['plain.qcow2', 'preallocation=full', false],
    ['over.qcow2', 'size=8M', false],
    ['over.qcow2', 'size=1M', false],
    ['plain.qcow2', 'size=3000k', false],
    ['plain.qcow2', 'size=1000', false],
    ['plain.qcow2', 'size=0', false],
    ['plain.qcow2', 'compat=0.10,size=8M', false],
    ['plain.qcow2', 'lazy_refcounts=on,size=2M', false],
    ['plain.qcow2', 'refcount_bits=8,size=6M', false],
    ['snap.qcow2', 'compat=0.10', false],
    ['snap.qcow2', 'size=2M', false],
    ['snap-resized.qcow2', 'compat=0.10', false],
    // qemu-img resizes, then refuses the downgrade; blk checks first and changes nothing.
    ['snap.qcow2', 'compat=0.10,size=2M', true],
    ['v2snap.qcow2', 'size=2M', false],
    ['zstd.qcow2', 'compat=0.10', false],
    ['zstd-c.qcow2', 'compat=0.10', false],
  ])('%s, -o %s', (image, option, qemuPartial) => {
    const mine = p(`b-${image}`);
    const theirs = p(`q-${image}`);
    fs.copyFileSync(p(image), mine);
    fs.copyFileSync(p(image), theirs);
    const q = run('qemu-img', ['amend', '-o', option, theirs]);
    const b = blk(['amend', '-f', 'qcow2', '-o', option, mine]);
    expect(b.code, b.stderr).toBe(q.status);
    if (q.status !== 0) {
      expect(b.stderr).toBe(asBlk(q.stderr, mine));
      expect(fs.readFileSync(mine).equals(fs.readFileSync(p(image))), 'blk left the file unchanged').toBe(true);
      if (!qemuPartial) expect(fs.readFileSync(theirs).equals(fs.readFileSync(p(image)))).toBe(true);
      return;
    }
    expect(b.stderr).toBe('');
    expect(run('qemu-img', ['check', mine]).status).toBe(0);
    const [bi, qi] = [info(mine), info(theirs)];
    expect(bi['virtual-size']).toBe(qi['virtual-size']);
    expect(bi['format-specific']).toEqual(qi['format-specific']);
    expect(bi['backing-filename']).toBe(qi['backing-filename']);
    expect(run('qemu-img', ['compare', '-q', mine, theirs]).status).toBe(0);
  });

  it('-o help lists the options qemu-img amend lists (LUKS ones aside)', () => {
    const names = (text: string) =>
      text
        .split('\n')
        .map((l) => /^\s+([a-z_.-]+)=/.exec(l)?.[1])
        .filter((n): n is string => n !== undefined && !n.startsWith('encrypt.'));
    const q = names(ok('qemu-img', 'amend', '-f', 'qcow2', '-o', 'help', p('plain.qcow2')));
    const b = blk(['amend', '-f', 'qcow2', '-o', 'help', p('plain.qcow2')]);
    expect(b.code).toBe(0);
    expect(names(b.stdout)).toEqual(q);
  });

  it.each([
    ['512', false],
    ['65536', false],
    ['512', true],
    ['65536', true],
  ])('compat=0.10 over zero clusters of both kinds (%s B clusters, backing file: %s): as qemu-img', (cs, backing) => {
    const mine = p(`z-${cs}-${backing}.qcow2`);
    if (backing)
      ok(
        'qemu-img',
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        `cluster_size=${cs}`,
        '-b',
        'base.qcow2',
        '-F',
        'qcow2',
        mine,
      );
    else ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', `cluster_size=${cs}`, mine, '4M');
    const io = [
      'write -P 1 0 512k',
      'write -z 128k 64k',
      'write -z -u 1M 64k',
      'write -P 3 2M 64k',
      'write -z 2M 8k',
      'write -z -u 3M 128k',
    ];
    ok('qemu-io', ...io.flatMap((c) => ['-c', c]), mine);
    fs.copyFileSync(mine, p('z-q.qcow2'));
    fs.copyFileSync(mine, p('z-0.qcow2'));
    ok('qemu-img', 'amend', '-o', 'compat=0.10', p('z-q.qcow2'));
    const b = blk(['amend', '-f', 'qcow2', '-o', 'compat=0.10', mine]);
    expect([b.code, b.stderr]).toEqual([0, '']);
    expect(run('qemu-img', ['check', mine]).status).toBe(0);
    expect(info(mine)['format-specific']).toEqual(info(p('z-q.qcow2'))['format-specific']);
    expect(run('qemu-img', ['compare', '-q', mine, p('z-0.qcow2')]).status).toBe(0);
    // Without a backing file nothing is allocated: the same bytes. Over one, each plain zero cluster
    // gets a new cluster of zeros, which QEMU's allocator may place elsewhere with small clusters.
    if (!backing || cs === '65536') expect(fs.readFileSync(mine).equals(fs.readFileSync(p('z-q.qcow2')))).toBe(true);
    else expect(run('qemu-img', ['compare', '-q', mine, p('z-q.qcow2')]).status).toBe(0);
  });

  it('compat=0.10 over zero clusters a snapshot shares: check 0, the image and the snapshot read as before', () => {
    const mine = p('zs.qcow2');
    ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', mine, '4M');
    ok('qemu-io', '-c', 'write -P 1 0 512k', '-c', 'write -z 100k 64k', '-c', 'write -z -u 1M 64k', mine);
    ok('qemu-img', 'snapshot', '-c', 's1', mine);
    ok('qemu-io', '-c', 'write -z -u 0 16k', '-c', 'write -P 4 200k 8k', '-c', 'write -z 200k 4k', mine);
    const raw = (file: string, snapshot?: string) => {
      const out = `${file}.${snapshot ?? 'active'}.raw`;
      ok('qemu-img', 'convert', ...(snapshot ? ['-l', `snapshot.name=${snapshot}`] : []), '-O', 'raw', file, out);
      return fs.readFileSync(out);
    };
    const [active, s1] = [raw(mine), raw(mine, 's1')];
    // (qemu-img 7.2 sets the COPIED bit of the shared zero-alloc clusters from the L2 table's refcount:
    // its own check then finds errors. blk keeps each entry's bit.)
    const b = blk(['amend', '-f', 'qcow2', '-o', 'compat=0.10', mine]);
    expect([b.code, b.stderr]).toEqual([0, '']);
    expect(run('qemu-img', ['check', mine]).status).toBe(0);
    expect(info(mine)['format-specific'].data.compat).toBe('0.10');
    expect(raw(mine).equals(active)).toBe(true);
    expect(raw(mine, 's1').equals(s1)).toBe(true);
  });

  it('refuses compat=0.10 when a zero cluster keeps data a snapshot reads (qemu-img 7.2 overwrites it)', () => {
    const mine = p('zd.qcow2');
    ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', mine, '4M');
    ok('qemu-io', '-c', 'write -P 1 0 64k', mine);
    ok('qemu-img', 'snapshot', '-c', 's1', mine);
    // Without unmap the zero cluster keeps the host cluster the snapshot reads as data.
    ok('qemu-io', '-c', 'write -z 0 16k', mine);
    const before = fs.readFileSync(mine);
    const b = blk(['amend', '-f', 'qcow2', '-o', 'compat=0.10', mine]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/shares its data with a snapshot, which expanding it would overwrite/);
    expect(fs.readFileSync(mine).equals(before)).toBe(true);
  });

  it.each([false, true])(
    'crashes at every write point of a downgrade that expands zero clusters (backing file: %s): check 0 (3 over a backing file), data as before',
    async (backing) => {
      const file = p('zc.qcow2');
      fs.writeFileSync(p('zc-base.raw'), new Uint8Array(1 << 20).fill(0x5a));
      if (backing)
        ok(
          'qemu-img',
          'create',
          '-q',
          '-f',
          'qcow2',
          '-o',
          'cluster_size=4096',
          '-b',
          'zc-base.raw',
          '-F',
          'raw',
          file,
        );
      else ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', file, '1M');
      ok('qemu-io', '-c', 'write -P 1 0 256k', '-c', 'write -z 8k 16k', '-c', 'write -z -u 512k 16k', file);
      ok('qemu-img', 'convert', '-O', 'raw', file, p('zc-before.raw'));
      const before = fs.readFileSync(p('zc-before.raw'));
      const vfs = new CrashSimVfs({ cwd: '/d' });
      vfs.put('/d/img.qcow2', new Uint8Array(fs.readFileSync(file)));
      vfs.put('/d/zc-base.raw', new Uint8Array(fs.readFileSync(p('zc-base.raw'))));
      vfs.syncAll();
      const start = vfs.log.length;
      const image = await openIn('/d/img.qcow2', {
        registry: new DriverRegistry([qcow2Driver, rawDriver]),
        vfs,
        readOnly: false,
      });
      await image.amend(new Map([['compat', '0.10']]));
      await image.close();
      const points = writePoints(vfs.log, start);
      expect(points.length).toBeGreaterThan(3);
      const compats = new Set<string>();
      let n = 0;
      const inspect = (crashed: MemoryVfs): string | undefined => {
        const out = p(`zc-crash-${n++}.qcow2`);
        fs.writeFileSync(out, crashed.file('/d/img.qcow2').snapshot());
        const c = run('qemu-img', ['check', out]);
        // New clusters of zeros (over a backing file) are counted before the entries name them: a
        // crash between leaks them (exit 3), never more.
        if (c.status !== 0 && !(backing && c.status === 3))
          return `qemu-img check exit ${c.status}: ${c.stdout}${c.stderr}`;
        compats.add(info(out)['format-specific'].data.compat);
        ok('qemu-img', 'convert', '-O', 'raw', out, `${out}.raw`);
        if (!fs.readFileSync(`${out}.raw`).equals(before)) return 'the guest data changed';
        fs.rmSync(out);
        fs.rmSync(`${out}.raw`);
        return undefined;
      };
      const { violations } = await crashAtPoints(vfs.log, points, new Rng(0x2e50), 8, inspect);
      expect(violations).toEqual([]);
      expect([...compats].sort()).toEqual(['0.10', '1.1']);
      // The finished downgrade: clean.
      fs.writeFileSync(p('zc-final.qcow2'), vfs.inner.file('/d/img.qcow2').snapshot());
      expect(run('qemu-img', ['check', p('zc-final.qcow2')]).status).toBe(0);
    },
    120_000,
  );
});
