/**
 * The rest of qemu-img amend's qcow2 options through the spawned `blk amend`, against `qemu-img
 * amend` on twin copies: size (grow, shrink, with compat and refcount_bits, in QEMU's order: a
 * resize before a downgrade, after anything else), backing_file/backing_fmt (accepted only when
 * both equal the image's), data_file, data_file_raw, encrypt.*, create-only options, and a
 * downgrade over snapshots of another size. Same exit codes, qemu-img's words, and after a
 * success the same virtual size and guest data, which `qemu-img check` passes; after a refusal
 * blk's file is unchanged (qemu-img sometimes applies the steps before the failing one: noted).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 amend option tests are skipped');

let dir: string;
const p = (name: string) => path.join(dir, name);

function run(cmd: string, args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}
function ok(cmd: string, ...args: string[]): string {
  const r = run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.err}`);
  return r.out;
}
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
  ])('%s, -o %s', (image, option, qemuPartial) => {
    const mine = p(`b-${image}`);
    const theirs = p(`q-${image}`);
    fs.copyFileSync(p(image), mine);
    fs.copyFileSync(p(image), theirs);
    const q = run('qemu-img', ['amend', '-o', option, theirs]);
    const b = blk(['amend', '-f', 'qcow2', '-o', option, mine]);
    expect(b.code, b.stderr).toBe(q.code);
    if (q.code !== 0) {
      expect(b.stderr).toBe(asBlk(q.err, mine));
      expect(fs.readFileSync(mine).equals(fs.readFileSync(p(image))), 'blk left the file unchanged').toBe(true);
      if (!qemuPartial) expect(fs.readFileSync(theirs).equals(fs.readFileSync(p(image)))).toBe(true);
      return;
    }
    expect(b.stderr).toBe('');
    expect(run('qemu-img', ['check', mine]).code).toBe(0);
    const [bi, qi] = [info(mine), info(theirs)];
    expect(bi['virtual-size']).toBe(qi['virtual-size']);
    expect(bi['format-specific']).toEqual(qi['format-specific']);
    expect(bi['backing-filename']).toBe(qi['backing-filename']);
    expect(run('qemu-img', ['compare', '-q', mine, theirs]).code).toBe(0);
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
});
