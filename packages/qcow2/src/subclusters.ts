/**
 * Extended L2 entries (incompatible bit 4, `extended_l2=on`): 128-bit L2
 * entries, the standard 64-bit descriptor followed by a 64-bit subcluster
 * bitmap (bits 0-31 allocated, bits 32-63 reads as zeros), 32 subclusters per
 * cluster. Reading and block status per subcluster, with QEMU 7.2's
 * qcow2_get_subcluster_type: a compressed cluster is one unit (its bitmap is
 * ignored); an allocated cluster's subcluster is data (alloc bit), zeros with
 * a host offset (zero bit), or falls through to the backing file (neither); an
 * unallocated cluster's subcluster is zeros (zero bit) or falls through; a bit
 * set in both halves, or an alloc bit without a host cluster, is corruption.
 *
 * Kept apart from qcow2-image.ts, which hands this reader closures over its L1
 * lookup, L2 cache, entry decoder and decompressor.
 */
import { readZeroFilled, type BlockStatus, type ReadBelow, type Storage, type BlockError } from '@blk/core/portable';
import type { ClusterMapping } from './qcow2-image.js';

export const SUBCLUSTERS = 32;

export type SubclusterKind = 'unallocated' | 'unallocated-alloc' | 'normal' | 'zero' | 'zero-alloc' | 'compressed';

export interface Subcluster {
  kind: SubclusterKind;
  /** Host offset of the subcluster (normal, zero-alloc, unallocated-alloc); the payload's for compressed. */
  host: number;
  /** Compressed payload length. */
  csize: number;
}

export interface ExtendedL2Access {
  storage: Storage;
  clusterSize: number;
  /** Entries per L2 table (cluster size / 16). */
  l2Entries: number;
  /** The L2 table offset for an L1 index (0: none). */
  l2Offset(l1Index: number): number;
  /** Runs `fn` over the cached L2 table at host offset `offset`. */
  useL2<T>(offset: number, fn: (dv: DataView) => T): Promise<T>;
  /** The standard descriptor (64 bits) of guest cluster `cluster`, decoded. */
  decode(hi: number, lo: number, cluster: number): ClusterMapping;
  /** The decompressed guest cluster whose payload `m` describes. */
  decompress(m: ClusterMapping, cluster: number): Promise<Uint8Array>;
  corrupt(message: string, offset?: number): BlockError;
}

const UNALLOCATED: Subcluster = Object.freeze({ kind: 'unallocated', host: 0, csize: 0 });

export class ExtendedL2Reader {
  private readonly sub: number;
  constructor(private readonly a: ExtendedL2Access) {
    this.sub = a.clusterSize / SUBCLUSTERS;
  }

  /** The subcluster kind of every subcluster of one extended entry (QEMU's qcow2_get_subcluster_type). */
  private classify(dv: DataView, cluster: number): (sc: number) => Subcluster {
    const i = (cluster % this.a.l2Entries) * 16;
    const hi = dv.getUint32(i);
    const lo = dv.getUint32(i + 4);
    const zeroBits = dv.getUint32(i + 8); // bitmap bits 63..32: reads as zeros
    const allocBits = dv.getUint32(i + 12); // bitmap bits 31..0: allocated
    if ((hi & 0x40000000) !== 0) {
      const m = this.a.decode(hi, lo, cluster);
      const c: Subcluster = { kind: 'compressed', host: m.host, csize: m.csize };
      return () => c;
    }
    // Bit 0 of the descriptor is reserved with subclusters (zeros are in the bitmap): QEMU ignores it.
    const m = this.a.decode(hi, (lo & ~1) >>> 0, cluster);
    if (m.kind === 'normal') {
      if ((zeroBits & allocBits) !== 0) {
        throw this.a.corrupt(`subcluster both allocated and zero (guest cluster ${cluster})`);
      }
      return (sc) => {
        const bit = 1 << sc;
        const host = m.host + sc * this.sub;
        if ((zeroBits & bit) !== 0) return { kind: 'zero-alloc', host, csize: 0 };
        if ((allocBits & bit) !== 0) return { kind: 'normal', host, csize: 0 };
        return { kind: 'unallocated-alloc', host, csize: 0 };
      };
    }
    if (allocBits !== 0) {
      throw this.a.corrupt(`allocated subclusters in an unallocated cluster (guest cluster ${cluster})`);
    }
    return (sc) => ((zeroBits & (1 << sc)) !== 0 ? { kind: 'zero', host: 0, csize: 0 } : UNALLOCATED);
  }

  /**
   * The run from guest byte `pos`: its first subcluster and where the run ends
   * (same kind, contiguous on the host, within one L2 table, at most `end`).
   */
  private async runAt(pos: number, end: number): Promise<{ first: Subcluster; runEnd: number }> {
    const { clusterSize: cs, l2Entries } = this.a;
    const sub = this.sub;
    const cluster = Math.floor(pos / cs);
    const l1Index = Math.floor(cluster / l2Entries);
    const stop = (l1Index + 1) * l2Entries; // first cluster of the next table
    const l2 = this.a.l2Offset(l1Index);
    if (l2 === 0) return { first: UNALLOCATED, runEnd: Math.min(end, stop * cs) };
    return this.a.useL2(l2, (dv) => {
      let c = cluster;
      let at = this.classify(dv, c);
      let u = Math.floor((pos - c * cs) / sub);
      const first = at(u);
      if (first.kind === 'compressed') return { first, runEnd: Math.min(end, (c + 1) * cs) };
      let runEnd = Math.min(end, c * cs + (u + 1) * sub);
      while (runEnd < end) {
        u++;
        if (u === SUBCLUSTERS) {
          c++;
          if (c >= stop) break;
          at = this.classify(dv, c);
          u = 0;
        }
        const next = at(u);
        const distance = c * cs + u * sub - pos + (pos % sub);
        if (next.kind !== first.kind) break;
        if (first.host !== 0 && next.host !== first.host + distance) break;
        runEnd = Math.min(end, c * cs + (u + 1) * sub);
      }
      return { first, runEnd };
    });
  }

  async read(offset: number, into: Uint8Array, below: ReadBelow): Promise<void> {
    const cs = this.a.clusterSize;
    const end = offset + into.length;
    let pos = offset;
    while (pos < end) {
      const { first: s, runEnd } = await this.runAt(pos, end);
      const part = into.subarray(pos - offset, runEnd - offset);
      switch (s.kind) {
        case 'unallocated':
        case 'unallocated-alloc':
          await below(pos, part);
          break;
        case 'zero':
        case 'zero-alloc':
          part.fill(0);
          break;
        case 'normal':
          await readZeroFilled(this.a.storage, s.host + (pos % this.sub), part);
          break;
        case 'compressed': {
          const cluster = Math.floor(pos / cs);
          const data = await this.a.decompress({ kind: 'compressed', host: s.host, csize: s.csize }, cluster);
          const inCluster = pos - cluster * cs;
          part.set(data.subarray(inCluster, inCluster + part.length));
          break;
        }
      }
      pos = runEnd;
    }
  }

  async blockStatus(offset: number, length: number, limit: number): Promise<BlockStatus> {
    const want = Math.min(limit, offset + Math.max(length, 1));
    const { first: s, runEnd } = await this.runAt(offset, want);
    // A run may stop at `want`; extend it to the end of its subcluster as the standard path does per cluster.
    const len = Math.min(limit, runEnd) - offset;
    const inSub = offset % this.sub;
    switch (s.kind) {
      case 'unallocated':
        return { allocated: false, length: len };
      case 'unallocated-alloc':
        // QEMU sets OFFSET_VALID for these (qemu-img map prints the offset when no backing file answers).
        return { allocated: false, length: len, hostOffset: s.host + inSub };
      case 'zero':
        return { allocated: true, length: len, zero: true, data: false };
      case 'zero-alloc':
        return { allocated: true, length: len, zero: true, data: false, hostOffset: s.host + inSub };
      case 'normal':
        return { allocated: true, length: len, data: true, hostOffset: s.host + inSub };
      case 'compressed':
        return { allocated: true, length: len, data: true };
    }
  }
}
