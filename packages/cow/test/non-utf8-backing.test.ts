/**
 * A backing path whose bytes are not UTF-8 (issue 10, point 9): decoding it
 * with U+FFFD names another file, so it is kept as bytes, never opened under
 * the decoded name, and never written back in place of the stored bytes.
 */
import { describe, expect, it } from 'vitest';
import { MemoryVfs, createImage, openImage } from '@blk/images';
import { parseHeader } from '../src/codec.js';

const SIZE = 64 * 1024;
const PATH_OFFSET = 32; // v3

/** /d/top.cow naming `/d/b\xffse.raw`; /d/b\ufffdse.raw (the lossy decoding) exists and is another file. */
async function setUp(): Promise<MemoryVfs> {
  const vfs = new MemoryVfs();
  vfs.put('/d/bXYZse.raw', new Uint8Array(SIZE).fill(0x11));
  await createImage('/d/top.cow', { vfs, format: 'cow', backing: '/d/bXYZse.raw' });
  const file = vfs.file('/d/top.cow');
  const stored = new Uint8Array([
    ...new TextEncoder().encode('/d/b'),
    0xff,
    ...new TextEncoder().encode('se.raw'),
    0,
    0,
  ]);
  file.writeAt(PATH_OFFSET, stored);
  // Same size and mtime as the real backing file: only the name tells them apart.
  vfs.put('/d/b\ufffdse.raw', new Uint8Array(SIZE).fill(0x22)).mtimeSec = vfs.file('/d/bXYZse.raw').mtimeSec;
  return vfs;
}

describe('backing paths that are not UTF-8', () => {
  it('the codec keeps the stored bytes beside a lossy rendering, and valid UTF-8 (with a BOM) exactly', () => {
    const header = new Uint8Array(4128);
    header.set([0x4f, 0x4f, 0x4d, 0x4d]); // magic written big-endian: "OOOM"
    const dv = new DataView(header.buffer);
    dv.setUint32(0, 0x4f4f4f4d);
    dv.setUint32(4, 3);
    header.set([0x61, 0xc3, 0x28, 0x62], PATH_OFFSET); // 0xc3 0x28: an invalid sequence
    const bad = parseHeader(header, 'v3');
    expect(bad.backingFileBytes).toEqual(new Uint8Array([0x61, 0xc3, 0x28, 0x62]));
    expect(bad.backingFile).toBe('a\ufffd(b');
    header.set([0xef, 0xbb, 0xbf, 0x62, 0], PATH_OFFSET); // a BOM is a name's bytes, not a marker
    const bom = parseHeader(header, 'v3');
    expect(bom.backingFileBytes).toBeUndefined();
    expect(new TextEncoder().encode(bom.backingFile)).toEqual(new Uint8Array([0xef, 0xbb, 0xbf, 0x62]));
  });

  it('opening the chain is refused (not-supported, field backing_file) instead of opening the U+FFFD file', async () => {
    const vfs = await setUp();
    await expect(openImage('/d/top.cow', { vfs, readOnly: true })).rejects.toMatchObject({
      kind: 'not-supported',
      field: 'backing_file',
      path: '/d/top.cow',
    });
  });

  it('with the chain ignored the image opens, shows the bytes, has no resolved path, and its header is never rewritten with the decoded string', async () => {
    const vfs = await setUp();
    const before = vfs.file('/d/top.cow').snapshot();
    const image = await openImage('/d/top.cow', { vfs, backing: { mode: 'ignore' } });
    expect(image.backingReference?.rawPath?.[4]).toBe(0xff);
    expect(image.info().backing?.resolved).toBeUndefined();
    const ref = image.backingReference!;
    await expect(
      image.setBackingReference({ path: ref.path, facts: { size: SIZE, mtimeSec: 0 } }),
    ).rejects.toMatchObject({
      kind: 'not-supported',
      field: 'backing_file',
    });
    // A new path of the user's choosing replaces it (rebase -u).
    await image.setBackingReference({
      path: '/d/bXYZse.raw',
      facts: { size: SIZE, mtimeSec: vfs.file('/d/bXYZse.raw').mtimeSec },
    });
    await image.close();
    expect(vfs.file('/d/top.cow').snapshot()).not.toEqual(before);
    const chain = await openImage('/d/top.cow', { vfs, readOnly: true });
    expect((await chain.read(0, 4))[0]).toBe(0x11);
    await chain.close();
  });

  it("backing.onMismatch 'update' does not rewrite such a header", async () => {
    const vfs = await setUp();
    const before = vfs.file('/d/top.cow').snapshot();
    await expect(
      openImage('/d/top.cow', { vfs, backing: { onMismatch: 'update', overridePath: '/d/bXYZse.raw' } }),
    ).resolves.toBeDefined();
    vfs.file('/d/bXYZse.raw').mtimeSec += 10;
    await expect(
      openImage('/d/top.cow', { vfs, backing: { onMismatch: 'update', overridePath: '/d/bXYZse.raw' } }),
    ).rejects.toMatchObject({ kind: 'not-supported', field: 'backing_file' });
    expect(vfs.file('/d/top.cow').snapshot()).toEqual(before);
  });
});
