import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 CLI parity tests are skipped');

let dir: string;

const { spawn: run, ok } = qemuTools(() => dir);

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-cli');
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', 'base.qcow2', '16M');
  ok('qemu-io', '-c', 'write 0 128k', '-c', 'write -z 1M 64k', '-c', 'write 5M 1M', 'base.qcow2');
  fs.mkdirSync(path.join(dir, 'sub'));
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', '../base.qcow2', '-F', 'qcow2', 'sub/top.qcow2');
  ok('qemu-io', '-c', 'write 64k 64k', '-c', 'write 6M 64k', 'sub/top.qcow2');
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', 'dirty.qcow2', '16M');
  // A writer killed after an allocating write: the dirty bit stays set and the refcounts are stale.
  run('qemu-io', ['-c', 'write 0 64k', '-c', 'sigraise 9', 'dirty.qcow2']);
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('blk on qcow2 prints what qemu-img prints', () => {
  it.each([['base.qcow2'], ['sub/top.qcow2']])('map %s: human (with backing layer names) and JSON', (name) => {
    for (const args of [[], ['--output=json']]) {
      const q = ok('qemu-img', 'map', ...args, name);
      const b = blk(['map', ...args, name], { cwd: dir });
      expect(b.stderr).toBe('');
      expect(b.stdout).toBe(q);
    }
  });

  it('info of an image left dirty (lazy refcounts, writer killed): dirty flag, human and JSON', () => {
    expect(JSON.parse(ok('qemu-img', 'info', '--output=json', 'dirty.qcow2'))['dirty-flag']).toBe(true);
    expect(blk(['info', 'dirty.qcow2'], { cwd: dir }).stdout).toBe(ok('qemu-img', 'info', 'dirty.qcow2'));
    expect(blk(['info', '--output=json', 'dirty.qcow2'], { cwd: dir }).stdout).toBe(
      ok('qemu-img', 'info', '--output=json', 'dirty.qcow2'),
    );
  });

  it('check of the dirty image: the stale refcounts are corruptions, exit 2, as qemu-img', () => {
    const q = run('qemu-img', ['check', 'dirty.qcow2']);
    const b = blk(['check', 'dirty.qcow2'], { cwd: dir });
    expect(q.status).toBe(2);
    expect(b.code).toBe(2);
    expect(b.stdout).toBe(q.stdout);
    expect(b.stderr).toBe(q.stderr);
  });

  it.each([[''], ['cluster_size=4k,compat=0.10'], ['refcount_bits=1,lazy_refcounts=on']])(
    'convert -O qcow2 -o %s of a raw file with holes: qemu-img check 0, compare identical',
    (opts) => {
      fs.writeFileSync(path.join(dir, 'src.raw'), new Uint8Array(0));
      ok('qemu-img', 'create', '-q', '-f', 'raw', 'src.raw', '32M');
      ok('qemu-io', '-f', 'raw', '-c', 'write -P 7 1M 3M', '-c', 'write -P 9 20M 100k', 'src.raw');
      const r = blk(['convert', '-O', 'qcow2', ...(opts ? ['-o', opts] : []), 'src.raw', 'out.qcow2'], { cwd: dir });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(run('qemu-img', ['check', 'out.qcow2']).status).toBe(0);
      expect(ok('qemu-img', 'compare', '-f', 'raw', '-F', 'qcow2', 'src.raw', 'out.qcow2')).toContain(
        'Images are identical.',
      );
    },
  );
});
