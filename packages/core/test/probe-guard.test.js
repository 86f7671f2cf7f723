/**
 * The probe guard: when raw was *guessed* for a writable image, a write that
 * would make the file probe as another format is refused (a guest must not be
 * able to turn its disk into, say, an overlay naming /etc/shadow as backing).
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { makeOverlayFile, overlayDriver } from './fixtures/overlay-driver.js';
import { ascii } from './fixtures/helpers.js';
const registry = new DriverRegistry([overlayDriver, rawDriver]);
function rawFile(content = new Uint8Array(8192)) {
    const vfs = new MemoryVfs();
    vfs.put('/guest.img', content);
    return vfs;
}
describe('probe guard', () => {
    it("refuses a write that would make a probed raw image probe as another format, with 'probe-guard'", async () => {
        const vfs = rawFile();
        const image = await openImage('/guest.img', { registry, vfs });
        expect(image.format).toBe('raw');
        const err = await image.write(0, ascii('OVL1')).catch((e) => e);
        expect(err).toMatchObject({ kind: 'probe-guard', path: '/guest.img', offset: 0 });
        expect(err.message).toContain('ovl');
        expect(vfs.file('/guest.img').snapshot().subarray(0, 4)).toEqual(new Uint8Array(4));
    });
    it('judges the write together with the bytes already there (completing a magic is refused too)', async () => {
        const content = new Uint8Array(8192);
        content.set(ascii('OV'));
        const image = await openImage('/guest.img', { registry, vfs: rawFile(content) });
        await expect(image.write(2, ascii('L1'))).rejects.toMatchObject({ kind: 'probe-guard', offset: 2 });
    });
    it('allows writes in the probe window that keep the image raw', async () => {
        const vfs = rawFile();
        const image = await openImage('/guest.img', { registry, vfs });
        await image.write(0, ascii('OVL2'));
        expect(await image.read(0, 4)).toEqual(ascii('OVL2'));
    });
    it('allows the same write when the format was named', async () => {
        const vfs = rawFile();
        const image = await openImage('/guest.img', { registry, vfs, format: 'raw' });
        await image.write(0, ascii('OVL1'));
        expect(vfs.file('/guest.img').snapshot().subarray(0, 4)).toEqual(ascii('OVL1'));
    });
    it('does not check writes past the probe window', async () => {
        const image = await openImage('/guest.img', { registry, vfs: rawFile() });
        await image.write(4096, ascii('OVL1'));
        expect(await image.read(4096, 4)).toEqual(ascii('OVL1'));
    });
    // Found while writing these tests: the guard used to be set for every
    // probed writable image, whatever the format. On an overlay it judged the
    // *guest's* first bytes, which do not decide how the file probes, so it
    // refused almost every write to the first sectors of a probed overlay
    // (they "would make it probe as raw").
    it('does not guard a probed image of a format other than raw: guest data there does not decide the probe', async () => {
        const vfs = new MemoryVfs();
        vfs.put('/top.ovl', makeOverlayFile({ size: 8192 }));
        const image = await openImage('/top.ovl', { registry, vfs });
        expect(image.format).toBe('ovl');
        await image.write(0, new Uint8Array(512).fill(0x55));
        await image.write(0, ascii('OVL1'));
        expect(await image.read(0, 4)).toEqual(ascii('OVL1'));
    });
});
