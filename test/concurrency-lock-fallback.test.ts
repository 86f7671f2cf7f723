/**
 * Without the native addon (no C toolchain at install time, an
 * unsupported platform), images still open, without OS locks, after one
 * clear warning; BLK_LOCK=require turns that into an error instead.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockError, NodeVfs, openImage } from '@blk/images';

describe('OS locks: fallback without the addon', () => {
  it('opens images without locks after a single BLK_NO_LOCK warning; BLK_LOCK=require refuses', async () => {
    // BLK_NATIVE_ADDON and BLK_LOCK reach the library as options (the blk command reads the variables).
    const addon = path.join(os.tmpdir(), 'no-such-dir', 'blk_native.node');
    const lock = await import('../packages/native/src/index.js');
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => {
      if (w.code === 'BLK_NO_LOCK') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-nolock-'));
    try {
      const file = path.join(dir, 'disk.raw');
      fs.writeFileSync(file, new Uint8Array(4096));
      expect(lock.lockingAvailable({ addon }).available).toBe(false);
      // Nor the addon's pread/pwrite: storages use Node's fs calls, and the image still reads.
      expect(lock.nativeSyscalls({ addon })).toBeUndefined();
      const vfs = new lock.LockingVfs(new NodeVfs(), { addon });
      const a = await openImage(file, { vfs, format: 'raw' });
      expect(await a.read(0, 16)).toEqual(new Uint8Array(16));
      const b = await openImage(file, { vfs, format: 'raw' }); // not locked: both open
      await a.close();
      await b.close();
      await new Promise((r) => setImmediate(r));
      expect(warnings.length).toBe(1);
      expect(warnings[0]).toMatch(/WITHOUT OS advisory locks/);
      const requiring = new lock.LockingVfs(new NodeVfs(), { addon, policy: 'require' });
      const err = await openImage(file, { vfs: requiring, format: 'raw' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlockError);
      expect((err as BlockError).kind).toBe('not-supported');
    } finally {
      process.off('warning', onWarning);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('OS locks: the policy is an option', () => {
  it('an unknown lock policy is refused when the Vfs is made (a typo must not mean "lock" or "do not")', async () => {
    const lock = await import('../packages/native/src/index.js');
    expect(() => new lock.LockingVfs(new NodeVfs(), { policy: 'of' as never })).toThrow(
      expect.objectContaining({ kind: 'invalid-argument', field: 'policy' }),
    );
  });
});
