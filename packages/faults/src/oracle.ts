/**
 * What each virtual sector of an image may legitimately read after a crash:
 * the value it had at the last completed flush, or any value a write put
 * there since (old or new, never zeros or garbage nobody wrote). Values are
 * kept as 53-bit hashes of the sector's bytes.
 */
export type OracleDurability =
  /** Flushed data must survive (cache modes `writeback` and `writethrough`). */
  | 'flush'
  /** Every completed write must survive (`writethrough`). */
  | 'write'
  /** Nothing is promised to survive but "old or new" still holds (`unsafe`). */
  | 'none';

export class SectorOracle {
  readonly sectors: number;
  /** The content a reader sees now (as the workload wrote it). */
  readonly current: Uint8Array;
  private readonly durable: number[];
  private readonly maybe = new Map<number, Set<number>>();
  /** Sectors of failed writes: old or new forever (a flush cannot tell which landed). */
  private readonly sticky = new Map<number, Set<number>>();

  constructor(
    readonly size: number,
    initial: Uint8Array | undefined,
    readonly sectorSize = 512,
    readonly durability: OracleDurability = 'flush',
  ) {
    this.sectors = Math.ceil(size / sectorSize);
    this.current = new Uint8Array(this.sectors * sectorSize);
    if (initial) this.current.set(initial.subarray(0, size));
    this.durable = new Array<number>(this.sectors);
    for (let s = 0; s < this.sectors; s++) this.durable[s] = this.hashAt(s);
  }

  /** A write (about to be) issued: its new values become possible. */
  write(offset: number, data: Uint8Array): void {
    this.current.set(data, offset);
    const first = Math.floor(offset / this.sectorSize);
    const last = Math.floor((offset + Math.max(1, data.length) - 1) / this.sectorSize);
    for (let s = first; s <= last; s++) {
      let set = this.maybe.get(s);
      if (!set) {
        set = new Set([this.durable[s]!]);
        this.maybe.set(s, set);
      }
      set.add(this.hashAt(s));
    }
  }

  /** A write completed. Under 'write' durability its sectors are now durable. */
  writeDone(offset: number, length: number): void {
    if (this.durability !== 'write') return;
    const first = Math.floor(offset / this.sectorSize);
    const last = Math.floor((offset + Math.max(1, length) - 1) / this.sectorSize);
    for (let s = first; s <= last; s++) {
      this.durable[s] = this.hashAt(s);
      this.maybe.delete(s);
    }
  }

  /** A flush completed: what a reader saw before it is now durable. */
  flushed(): void {
    if (this.durability === 'none') return;
    for (const s of this.maybe.keys()) this.durable[s] = this.hashAt(s);
    this.maybe.clear();
    for (const [s, set] of this.sticky) this.maybe.set(s, new Set(set));
  }

  /**
   * A write (announced with `write`) failed: each of its sectors may hold the
   * old or the new value from now on, even after a flush. `before` is the
   * content of [offset, offset + before.length) before the write.
   */
  writeFailed(offset: number, before: Uint8Array): void {
    const first = Math.floor(offset / this.sectorSize);
    const last = Math.floor((offset + Math.max(1, before.length) - 1) / this.sectorSize);
    const after = this.current.slice(first * this.sectorSize, (last + 1) * this.sectorSize);
    this.current.set(before, offset);
    const olds = [];
    for (let s = first; s <= last; s++) olds.push(this.hashAt(s));
    this.current.set(after, first * this.sectorSize);
    for (let s = first; s <= last; s++) {
      const set = this.sticky.get(s) ?? new Set<number>();
      set.add(olds[s - first]!);
      set.add(this.hashAt(s));
      for (const h of this.maybe.get(s) ?? []) set.add(h);
      this.sticky.set(s, set);
      const maybe = this.maybe.get(s) ?? new Set([this.durable[s]!]);
      for (const h of set) maybe.add(h);
      this.maybe.set(s, maybe);
    }
  }

  /** The sectors whose content may differ between crash states. */
  get uncertainSectors(): number {
    return this.maybe.size;
  }

  /**
   * Checks an image's full content (as read after a crash). Returns the
   * first offending sector, or undefined when every sector is allowed.
   */
  check(content: Uint8Array): { sector: number; expected: 'durable' | 'old-or-new' } | undefined {
    for (let s = 0; s < this.sectors; s++) {
      const h = hashSector(content, s * this.sectorSize, this.sectorSize, this.size);
      const set = this.maybe.get(s);
      if (set ? !set.has(h) : h !== this.durable[s]) {
        return { sector: s, expected: set ? 'old-or-new' : 'durable' };
      }
    }
    return undefined;
  }

  private hashAt(s: number): number {
    return hashSector(this.current, s * this.sectorSize, this.sectorSize, this.size);
  }
}

/** A 53-bit hash of `bytes[offset, min(offset+length, limit))`. */
export function hashSector(bytes: Uint8Array, offset: number, length: number, limit = bytes.length): number {
  const end = Math.min(offset + length, limit, bytes.length);
  let h1 = 0xdeadbeef ^ length;
  let h2 = 0x41c6ce57 ^ length;
  for (let i = offset; i < end; i++) {
    const c = bytes[i]!;
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/**
 * Data that says who wrote it: every 16-byte cell holds the write's id, the
 * absolute byte offset of the cell and a check word, so a stray sector in a
 * failure report can be traced to the write that produced it.
 */
export function taggedData(writeId: number, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const cell = new Uint8Array(16);
  const view = new DataView(cell.buffer);
  view.setUint32(0, 0xb1c0ffee);
  view.setUint32(4, writeId >>> 0);
  for (let i = 0; i < length; i += 16) {
    view.setFloat64(8, offset + i);
    out.set(length - i >= 16 ? cell : cell.subarray(0, length - i), i);
  }
  return out;
}
