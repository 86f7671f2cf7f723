import { describe, expect, it } from 'vitest';
import { MemoryVfs, createImage, openImage } from '@blk/images';

const MiB = 1024 * 1024;

async function cowOverCow(vfs: MemoryVfs): Promise<void> {
  await createImage('/base.img', { format: 'raw', size: MiB, vfs });
  await createImage('/mid.cow', { format: 'cow', backing: '/base.img', vfs });
  await createImage('/top.cow', { format: 'cow', backing: { path: '/mid.cow', format: 'cow' }, vfs });
}

describe('backing files whose format nobody named', () => {
  it('refuses a COW backing file under the default raw policy instead of reading its header as data', async () => {
    const vfs = new MemoryVfs();
    await cowOverCow(vfs);
    const err = await openImage('/mid.cow', { vfs }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeNull(); // mid.cow over a raw file: fine
    const failure = await openImage('/top.cow', { vfs }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(failure).toMatchObject({ kind: 'backing-format', path: '/mid.cow' });
    expect(String((failure as Error).message)).toMatch(/looks like a cow image/);
  });

  it('opens the same chain when the backing format is named or probing is asked for', async () => {
    const vfs = new MemoryVfs();
    await cowOverCow(vfs);
    for (const format of ['probe', (_: unknown, depth: number) => (depth === 1 ? 'cow' : 'raw')] as const) {
      const top = await openImage('/top.cow', { vfs, backing: { format } });
      expect(top.chain().map((i) => i.format)).toEqual(['cow', 'cow', 'raw']);
      await top.close();
    }
  });

  it('reads a disguised raw backing file as raw when raw is named explicitly', async () => {
    const vfs = new MemoryVfs();
    await cowOverCow(vfs);
    const top = await openImage('/top.cow', { vfs, backing: { format: 'raw', onMismatch: 'accept' } });
    expect(top.backing?.format).toBe('raw');
    const head = await top.read(0, 4);
    expect([...head]).toEqual([0x4f, 0x4f, 0x4f, 0x4d]); // the COW magic, read as raw data
    await top.close();
  });
});
