import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the dirty-image repair tests are skipped');

let dir: string;

const { spawn: run, ok } = qemuTools(() => dir);

/** An image whose writer was killed after allocating writes with lazy refcounts: dirty, refcounts stale. */
function leftDirty(name: string): string {
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', name, '16M');
  run('qemu-io', ['-c', 'write -P 7 0 64k', '-c', 'write -P 8 1M 128k', '-c', 'sigraise 9', name]);
  expect(JSON.parse(ok('qemu-img', 'info', '--output=json', name))['dirty-flag']).toBe(true);
  expect(run('qemu-img', ['check', name]).status).toBe(2); // stale refcounts: corruptions
  return name;
}

function twin(name: string): string {
  const copy = `q-${name}`;
  fs.copyFileSync(path.join(dir, name), path.join(dir, copy));
  return copy;
}

function corruptFlagged(name: string): string {
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', name, '16M');
  ok('qemu-io', '-c', 'write -P 5 0 64k', name);
  const file = path.join(dir, name);
  const b = fs.readFileSync(file);
  b[79] = b[79]! | 0x02;
  fs.writeFileSync(file, b);
  return name;
}

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-dirty');
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('dirty and corrupt-flagged qcow2 images (as QEMU)', () => {
  it('blk io on a dirty image: repaired at open, the write lands, qemu-img check 0, dirty bit cleared', () => {
    const b = leftDirty('io.qcow2');
    const q = twin(b);
    const r = blk(['io', '-c', 'write -P 9 2M 64k', '-c', 'read -P 7 0 64k', '-c', 'read -P 8 1M 128k', b], {
      cwd: dir,
    });
    expect(r.code).toBe(0);
    const rq = run('qemu-io', ['-c', 'write -P 9 2M 64k', q]); // qemu-io repairs its twin on open the same way
    // Both print the repair's lines (qcow2_do_open's check) on stderr, and nothing else.
    expect(r.stderr).toContain('Repairing cluster');
    expect(r.stderr).toBe(rq.stderr);
    expect(run('qemu-img', ['check', b]).status).toBe(0);
    expect(JSON.parse(ok('qemu-img', 'info', '--output=json', b))['dirty-flag']).toBe(false);
    expect(run('qemu-img', ['compare', '-q', b, q]).status).toBe(0);
  });

  it('blk check -r all on a dirty image: the output and exit code of qemu-img check -r all', () => {
    const b = leftDirty('check.qcow2');
    const q = twin(b);
    const rb = blk(['check', '-r', 'all', b], { cwd: dir });
    const rq = run('qemu-img', ['check', '-r', 'all', q]);
    expect(rb.code).toBe(rq.status);
    expect(rb.code).toBe(0);
    expect(rb.stdout).toBe(rq.stdout.replaceAll(q, b));
    expect(rb.stderr).toBe(rq.stderr.replaceAll(q, b));
    expect(run('qemu-img', ['check', b]).status).toBe(0);
    expect(JSON.parse(ok('qemu-img', 'info', '--output=json', b))['dirty-flag']).toBe(false);
    expect(run('qemu-img', ['compare', '-q', b, q]).status).toBe(0);
  });

  it('blk check -r all on a corrupt-flagged image: repaired as qemu-img does, the corrupt bit cleared', () => {
    const b = corruptFlagged('corrupt.qcow2');
    const q = twin(b);
    const rb = blk(['check', '-r', 'all', b], { cwd: dir });
    const rq = run('qemu-img', ['check', '-r', 'all', q]);
    expect(rb.code).toBe(rq.status);
    expect(rb.stdout).toBe(rq.stdout.replaceAll(q, b));
    expect(fs.readFileSync(path.join(dir, b))).toEqual(fs.readFileSync(path.join(dir, q)));
    const info = JSON.parse(ok('qemu-img', 'info', '--output=json', b));
    expect(info['format-specific'].data.corrupt).toBe(false);
  });

  it('a writable open of a corrupt-flagged image is refused; check without -r leaves it as it is', () => {
    const b = corruptFlagged('corrupt-w.qcow2');
    const before = fs.readFileSync(path.join(dir, b));
    const r = blk(['io', '-c', 'write 0 4k', b], { cwd: dir });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/marked corrupt/);
    expect(blk(['check', b], { cwd: dir }).code).toBe(0);
    expect(fs.readFileSync(path.join(dir, b))).toEqual(before);
  });
});
