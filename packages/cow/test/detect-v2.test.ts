import { describe, expect, it } from 'vitest';
import { MemoryVfs, createImage, openImage } from '@blk/images';
import { detectVariant } from '../src/index.js';

describe('telling the three v2 layouts apart when bitmap bytes look like a sector size', () => {
  // Sector 17's bit is bit 1 of bitmap byte 2: an ilp32 bitmap (at 1048) then starts 00 00 02 00,
  // which reads as "sector size 512" where the lp64 layout keeps its sector size.
  it('keeps an i386 QEMU overlay i386 after a write to sector 17 (found by the property suite)', async () => {
    const vfs = new MemoryVfs();
    await createImage('/base.img', { format: 'raw', size: 64 * 512, vfs });
    await createImage('/o.cow', {
      format: 'cow',
      backing: '/base.img',
      vfs,
      driverOptions: { variant: 'v2-qemu-ilp32' },
    });
    const image = await openImage('/o.cow', { vfs, format: 'cow', driverOptions: { variant: 'v2-qemu-ilp32' } });
    await image.write(17 * 512, new Uint8Array(512).fill(7));
    await image.close();
    const head = vfs.file('/o.cow').snapshot();
    expect([...head.subarray(1048, 1052)]).toEqual([0, 0, 2, 0]);
    expect(detectVariant(head, head.length)).toMatchObject({ ok: true, variant: 'v2-qemu-ilp32' });
    const reopened = await openImage('/o.cow', { vfs });
    expect(reopened.info().formatSpecific.variant).toBe('v2-qemu-ilp32');
    expect((await reopened.read(17 * 512, 512))[0]).toBe(7);
    await reopened.close();
  });

  it('still detects an lp64 overlay of one sector, whose size field ends in 00 00 02 00', async () => {
    const vfs = new MemoryVfs();
    await createImage('/base.img', { format: 'raw', size: 512, vfs });
    await createImage('/o.cow', {
      format: 'cow',
      backing: '/base.img',
      vfs,
      driverOptions: { variant: 'v2-qemu-lp64' },
    });
    const head = vfs.file('/o.cow').snapshot();
    expect(detectVariant(head, head.length)).toMatchObject({ ok: true, variant: 'v2-qemu-lp64' });
  });
});
