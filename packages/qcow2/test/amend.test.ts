/**
 * amend for qcow2 (the header-only changes) against `qemu-img amend` on twin copies:
 * compat 0.10 -> 1.1, lazy_refcounts on/off, 1.1 -> 0.10 of an image without zero clusters leave
 * byte-identical files, which `qemu-img check` passes; a downgrade over zero clusters and what
 * amend cannot change are refused, the file untouched. refcount_bits: amend-refcount.test.ts.
 */
import * as fs from 'node:fs';
import { isBlockError, NodeVfs, openImage } from '@blk/images';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { amendQcow2 } from '../src/amend.js';
import { parseHeader } from '../src/header.js';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 amend interop tests are skipped');

let dir: string;
const { ok, p } = qemuTools(() => dir);

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-amend');
  fs.writeFileSync(p('base.raw'), new Uint8Array(4 * 1024 * 1024));
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function amend(file: string, options: Record<string, string>): Promise<void> {
  const storage = await new NodeVfs().open(file, { readOnly: false });
  try {
    const size = await storage.size();
    const head = new Uint8Array(Math.min(size, 2 * 1024 * 1024));
    await storage.read(0, head);
    await amendQcow2(
      storage,
      parseHeader(head, size, { path: file, driver: 'qcow2' }),
      new Map(Object.entries(options)),
    );
  } finally {
    await storage.close();
  }
}

/** A qcow2 image with data (and, with `backing`, over base.raw with a recorded format). */
function make(name: string, createOpts: string, backing: boolean, io: string[] = ['write -P 1 0 128k']): string {
  const file = p(name);
  ok(
    'qemu-img',
    'create',
    '-q',
    '-f',
    'qcow2',
    ...(createOpts ? ['-o', createOpts] : []),
    ...(backing ? ['-b', p('base.raw'), '-F', 'raw'] : []),
    file,
    ...(backing ? [] : ['4M']),
  );
  ok('qemu-io', ...io.flatMap((c) => ['-c', c]), file);
  return file;
}

describe.skipIf(!QEMU)('qcow2 amend writes what qemu-img amend writes', () => {
  it.each([
    ['compat=0.10', true, { compat: '1.1' }],
    ['compat=0.10', false, { compat: 'v3', lazy_refcounts: 'on' }],
    ['', true, { lazy_refcounts: 'on' }],
    ['lazy_refcounts=on', false, { lazy_refcounts: 'off' }],
    ['', true, { compat: '0.10' }],
    ['cluster_size=4k', false, { compat: 'v2' }],
    ['', false, { compat: '1.1', lazy_refcounts: 'off' }],
  ])('created with -o %s (backing file: %s), amend %o', async (createOpts, backing, options) => {
    const mine = make('m.qcow2', createOpts, backing);
    fs.copyFileSync(mine, p('q.qcow2'));
    const list = Object.entries(options)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    ok('qemu-img', 'amend', '-o', list, p('q.qcow2'));
    await amend(mine, options);
    expect(Buffer.compare(fs.readFileSync(mine), fs.readFileSync(p('q.qcow2')))).toBe(0);
    ok('qemu-img', 'check', mine);
  });

  it.each([
    [{ refcount_bits: '3' }, 'Refcount width must be a power of two and may not exceed 64 bits'],
    [{ cluster_size: '4096' }, "Invalid parameter 'cluster_size': this option is only supported for image creation"],
    [{ compat: '0.9' }, "Parameter 'version' does not accept value '0.9'"],
    [{ nonsense: '1' }, "Invalid parameter 'nonsense'"],
    [{ backing_file: 'x' }, 'Cannot amend the backing file'],
    [{ size: '8388608' }, 'changing the size needs the image open'],
  ])('refuses %o, leaving the file as it was', async (options, message) => {
    const file = make('r.qcow2', '', false);
    const before = fs.readFileSync(file);
    const err = await amend(file, options).catch((e: unknown) => e);
    expect(isBlockError(err) && err.message).toContain(message);
    expect(Buffer.compare(fs.readFileSync(file), before)).toBe(0);
  });

  it('refuses a downgrade over zero clusters without the open image (their expansion goes through its caches)', async () => {
    const file = make('z.qcow2', '', true, ['write -P 1 0 64k', 'write -z 1M 64k']);
    const before = fs.readFileSync(file);
    const err = await amend(file, { compat: '0.10' }).catch((e: unknown) => e);
    expect(isBlockError(err) && err.message).toContain('zero clusters');
    expect(Buffer.compare(fs.readFileSync(file), before)).toBe(0);
  });

  it('blk amend (spawned) upgrades compat, once the driver can open qcow2 for writing', async (ctx) => {
    const file = make('cli.qcow2', 'compat=0.10', false);
    const writable = await openImage(file, { format: 'qcow2', readOnly: false }).then(
      async (img) => {
        await img.close();
        return true;
      },
      () => false,
    );
    if (!writable) {
      console.warn('qcow2 cannot be opened for writing in this build (no write engine): blk amend is not run');
      ctx.skip();
      return;
    }
    const r = blk(['amend', '-o', 'compat=1.1', file]);
    expect(r.code).toBe(0);
    expect(JSON.parse(ok('qemu-img', 'info', '--output=json', file))['format-specific'].data.compat).toBe('1.1');
  });
});
