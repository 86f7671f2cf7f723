/**
 * RoutingVfs: every one-path call reaches the Vfs that `route` picks, and a rename never moves a
 * file from one routed Vfs to another (it would have to copy; it is refused as not-supported).
 */
import { describe, expect, it } from 'vitest';
import { MemoryVfs, RoutingVfs, type Vfs } from '@blk/core';

class TwoDisks extends RoutingVfs {
  constructor(
    readonly a: MemoryVfs,
    readonly b: MemoryVfs,
  ) {
    super();
  }
  protected route(path: string): Vfs {
    return path.startsWith('/b/') ? this.b : this.a;
  }
  resolve(base: string, path: string): string {
    return this.a.resolve(base, path);
  }
  cwd(): string {
    return '/';
  }
}

describe('RoutingVfs', () => {
  it('sends open, stat, exists, remove and rename to the routed Vfs', async () => {
    const a = new MemoryVfs();
    const b = new MemoryVfs();
    a.put('/x.img', new Uint8Array(10));
    b.put('/b/y.img', new Uint8Array(20));
    const vfs = new TwoDisks(a, b);
    expect((await vfs.stat('/x.img')).size).toBe(10);
    expect((await vfs.stat('/b/y.img')).size).toBe(20);
    expect(await vfs.exists('/b/x.img')).toBe(false);
    const s = await vfs.open('/b/y.img');
    expect(await s.size()).toBe(20);
    await s.close();
    await vfs.rename('/b/y.img', '/b/z.img');
    expect([...b.files.keys()]).toEqual(['/b/z.img']);
    await vfs.remove('/x.img');
    expect(a.files.size).toBe(0);
  });

  it('refuses a rename between two routed Vfs and leaves both untouched', async () => {
    const a = new MemoryVfs();
    const b = new MemoryVfs();
    a.put('/x.img', new Uint8Array(10));
    const vfs = new TwoDisks(a, b);
    await expect(vfs.rename('/x.img', '/b/x.img')).rejects.toMatchObject({ kind: 'not-supported' });
    expect([...a.files.keys()]).toEqual(['/x.img']);
    expect(b.files.size).toBe(0);
  });
});
