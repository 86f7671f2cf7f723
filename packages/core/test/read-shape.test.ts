/**
 * The one-shape read (`DriverImage.read` returns undefined when it completed
 * synchronously, a promise otherwise): a driver with no second, synchronous
 * read method gets the fast path, and a read that goes asynchronous after
 * starting untracked still holds back an overlapping write issued after it.
 */
import { describe, expect, it } from 'vitest';
import {
  Image,
  MemoryFile,
  MemoryStorage,
  type BlockDriver,
  type BlockStatus,
  type DriverImage,
  type ReadBelow,
  type Storage,
} from '@blk/core';

const SS = 512;

/** A flat format (guest byte i at file offset i) with one `read` that is synchronous when the storage is. */
class FlatImage implements DriverImage {
  readonly sectorSize = SS;
  readonly events: string[] = [];
  /** While set, reads wait for it (an asynchronous read, as over a remote storage). */
  gate: Promise<void> | undefined;
  /** While set, writes wait for it before they write. */
  writeGate: Promise<void> | undefined;

  constructor(
    readonly driver: BlockDriver,
    private readonly storage: Storage,
    readonly size: number,
  ) {}

  read(offset: number, into: Uint8Array, _below: ReadBelow): void | Promise<void> {
    if (this.gate === undefined && this.storage.readSync?.(offset, into) === into.length) {
      this.events.push(`read ${offset} sync`);
      return undefined;
    }
    return this.readLater(offset, into);
  }

  private async readLater(offset: number, into: Uint8Array): Promise<void> {
    this.events.push(`read ${offset} start`);
    await this.gate;
    await this.storage.read(offset, into);
    this.events.push(`read ${offset} end`);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.events.push(`write ${offset}`);
    await this.writeGate;
    await this.storage.write(offset, data);
  }

  async blockStatus(_offset: number, length: number): Promise<BlockStatus> {
    return { allocated: true, length };
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}

  info(): Record<string, unknown> {
    return {};
  }
}

const flatDriver: BlockDriver = {
  name: 'flat',
  probeBytes: 0,
  probe: () => 0,
  open: () => Promise.reject(new Error('not used')),
};

function flatImage(content: Uint8Array): { image: Image; flat: FlatImage } {
  const storage = new MemoryStorage(new MemoryFile(content), '/flat');
  const flat = new FlatImage(flatDriver, storage, content.length);
  return { image: new Image({ path: '/flat', driverImage: flat, readOnly: false }), flat };
}

describe('one read shape', () => {
  it('a driver whose read returns undefined gets the synchronous path: the promise is settled at once', async () => {
    const { image, flat } = flatImage(new Uint8Array(8 * SS).fill(7));
    const into = new Uint8Array(2 * SS);
    let settled = false;
    const p = image.readInto(2 * SS, into).then(() => {
      settled = true;
    });
    expect(into.every((b) => b === 7)).toBe(true);
    await Promise.resolve(); // one microtask: enough only for a promise that was resolved already
    expect(settled).toBe(true); // no tracker entry, no async frame
    await p;
    expect(flat.events).toEqual([`read ${2 * SS} sync`]);
  });

  it('a read that goes asynchronous is tracked from then on: a write to its range issued later waits for it', async () => {
    const { image, flat } = flatImage(new Uint8Array(8 * SS).fill(1));
    let open!: () => void;
    flat.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const into = new Uint8Array(4 * SS);
    const read = image.readInto(0, into);
    const write = image.write(SS, new Uint8Array(SS).fill(2));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(flat.events).toEqual(['read 0 start']); // the write waits behind the read
    flat.gate = undefined;
    open();
    await Promise.all([read, write]);
    expect(flat.events).toEqual(['read 0 start', 'read 0 end', `write ${SS}`]);
    expect(into.every((b) => b === 1)).toBe(true); // the read saw the data from before the write
    expect([...(await image.read(SS, 2))]).toEqual([2, 2]);
  });

  it('reads in flight do not take the synchronous path away from another read (32 readers, one waiting)', async () => {
    const { image, flat } = flatImage(new Uint8Array(8 * SS).fill(3));
    let open!: () => void;
    flat.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const slow = image.readInto(0, new Uint8Array(SS)); // goes asynchronous: in the tracker until it ends
    flat.gate = undefined;
    const into = new Uint8Array(SS);
    let settled = false;
    const fast = image.readInto(4 * SS, into).then(() => {
      settled = true;
    });
    await Promise.resolve();
    expect(settled).toBe(true); // untracked: a read has nothing to wait for from another read
    expect(into.every((b) => b === 3)).toBe(true);
    // The waiting read still holds back a write to its range issued after it.
    const write = image.write(0, new Uint8Array(SS).fill(4));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(flat.events).toEqual(['read 0 start', `read ${4 * SS} sync`]);
    open();
    await Promise.all([slow, fast, write]);
    expect(flat.events).toEqual(['read 0 start', `read ${4 * SS} sync`, 'read 0 end', 'write 0']);
  });

  it('a read issued while a write to its range is in flight waits for it and sees its data', async () => {
    const { image, flat } = flatImage(new Uint8Array(8 * SS).fill(5));
    let open!: () => void;
    flat.writeGate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const write = image.write(SS, new Uint8Array(SS).fill(6));
    await Promise.resolve();
    const into = new Uint8Array(2 * SS);
    const read = image.readInto(0, into);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(flat.events).toEqual([`write ${SS}`]); // the read has not started
    open();
    await Promise.all([write, read]);
    expect([...into.subarray(0, SS)].every((b) => b === 5)).toBe(true);
    expect([...into.subarray(SS)].every((b) => b === 6)).toBe(true);
  });

  it('a driver that throws synchronously rejects the read instead of throwing', async () => {
    const { image, flat } = flatImage(new Uint8Array(4 * SS));
    flat.read = () => {
      throw Object.assign(new Error('EIO: broken'), { code: 'EIO' });
    };
    let thrown: unknown;
    let p: Promise<void> | undefined;
    try {
      p = image.readInto(0, new Uint8Array(SS));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeUndefined();
    await expect(p).rejects.toThrow(/EIO/);
  });

  it('readIntoNow: undefined once filled synchronously; a promise when the read waits (a write in flight, a gated driver); errors reject', async () => {
    const { image, flat } = flatImage(new Uint8Array(8 * SS).fill(8));
    const into = new Uint8Array(SS);
    expect(image.readIntoNow(SS, into)).toBeUndefined();
    expect(into.every((b) => b === 8)).toBe(true);
    // A write in flight to the range: the read waits for it (tracked) and sees its data.
    let open!: () => void;
    flat.writeGate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const write = image.write(SS, new Uint8Array(SS).fill(9));
    const after = new Uint8Array(SS);
    const waiting = image.readIntoNow(SS, after);
    expect(waiting).toBeInstanceOf(Promise);
    open();
    await Promise.all([write, waiting]);
    expect(after.every((b) => b === 9)).toBe(true);
    flat.writeGate = undefined;
    // A driver that has to wait: a promise, filled when it settles.
    let go!: () => void;
    flat.gate = new Promise<void>((resolve) => {
      go = resolve;
    });
    const later = new Uint8Array(SS);
    const gated = image.readIntoNow(0, later);
    expect(gated).toBeInstanceOf(Promise);
    flat.gate = undefined;
    go();
    await gated;
    expect(later.every((b) => b === 8)).toBe(true);
    // Out of range and closed: rejected promises, never a throw.
    await expect(image.readIntoNow(8 * SS, new Uint8Array(SS))).rejects.toMatchObject({ kind: 'out-of-range' });
    await image.close();
    await expect(image.readIntoNow(0, new Uint8Array(SS))).rejects.toMatchObject({ kind: 'closed' });
  });
});
