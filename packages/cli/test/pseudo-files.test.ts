/**
 * Files of the kernel's pseudo file systems (/proc, /sys, cgroup, ...) are kernel interfaces, not
 * storage. A backing name inside an image is untrusted data and `blk commit` writes into the backing
 * file, so a hostile image naming /proc/sys/kernel/core_pattern must not become a write there when
 * root commits it. blk refuses /proc files outright (qemu-img cannot open them either: their size is
 * not seekable) and the other pseudo file systems' files for writing; reading a sysfs attribute as a
 * raw image stays possible, as with qemu-img. The write target used here is the blk process's own
 * /proc/self/comm, harmless even if the guard were broken.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { NodeFileStorage } from '@blk/core';
import { describe, expect, it } from 'vitest';
import { blk, hasCommand, scratchDir } from './helpers.js';

const SYSFS_FILE = '/sys/kernel/mm/transparent_hugepage/enabled';
const hasSysfs = fs.existsSync(SYSFS_FILE);
const scratch = scratchDir('pseudo-files');

describe('pseudo file systems', () => {
  it('NodeFileStorage refuses a /proc file (special-file, naming the file system) read or written', async () => {
    for (const readOnly of [false, true]) {
      const err = await NodeFileStorage.open('/proc/self/comm', { readOnly }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, `readOnly ${readOnly}`).toMatchObject({ kind: 'special-file', path: '/proc/self/comm' });
      expect(String((err as Error).message)).toMatch(/proc pseudo file system/);
    }
  });

  it.skipIf(!hasSysfs)('a sysfs attribute opens read-only as a raw image, and is refused for writing', async () => {
    const storage = await NodeFileStorage.open(SYSFS_FILE, { readOnly: true });
    await storage.close();
    const r = blk(['io', '-f', 'raw', '-c', 'read 0 1', SYSFS_FILE]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(SYSFS_FILE);
    expect(r.stderr).toMatch(/sysfs pseudo file system/);
    expect(blk(['io', '-r', '-f', 'raw', '-c', 'read 0 1', SYSFS_FILE]).code).toBe(0);
  });

  it.skipIf(!hasCommand('qemu-img'))(
    'blk commit of an overlay whose backing name is /proc/self/comm is refused before any write',
    () => {
      const top = scratch.p('top.qcow2');
      // -u: qemu-img itself cannot open the named backing file, so the overlay is made without it.
      const made = spawnSync('qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-u',
        '-F',
        'raw',
        '-b',
        '/proc/self/comm',
        top,
        '1M',
      ]);
      expect(made.status, String(made.stderr)).toBe(0);
      const before = fs.readFileSync(top);
      const r = blk(['commit', top]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('/proc/self/comm');
      expect(r.stderr).toMatch(/proc pseudo file system/);
      expect(fs.readFileSync(top).equals(before)).toBe(true);
    },
  );

  it('a convert target on /proc is refused, naming it', () => {
    const src = scratch.p('src.raw');
    fs.writeFileSync(src, Buffer.alloc(4096, 0x42));
    const r = blk(['convert', '-n', '-f', 'raw', '-O', 'raw', src, '/proc/self/comm']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('/proc/self/comm');
    expect(r.stderr).toMatch(/proc pseudo file system/);
  });
});
