/**
 * Raw deflate (RFC 1951) of one qcow2 cluster, portable and small: LZ77 with a
 * 4 KiB window and fixed Huffman codes.
 *
 * Why not `CompressionStream('deflate-raw')`: QEMU inflates compressed clusters
 * with a 2^12-byte window (`inflateInit2(&strm, -12)` in qcow2-threads.c), and
 * the stream's encoder uses zlib's default 32 KiB window, so any back-reference
 * farther than 4 KiB (common in clusters of 8 KiB and more) would make the
 * cluster unreadable to QEMU. This encoder never refers farther back than
 * zlib's own 12-bit-window encoder does (4096 - 262 bytes).
 */

const MIN_MATCH = 3;
const MAX_MATCH = 258;
/** zlib's MAX_DIST for a 4 KiB window: wsize - MIN_LOOKAHEAD. */
const MAX_DIST = 4096 - 262;
const HASH_BITS = 13;
const MAX_CHAIN = 64;

const LEN_BASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10];

class BitWriter {
  private bits = 0;
  private count = 0;
  private at = 0;

  constructor(private readonly out: Uint8Array) {}

  /** Writes `n` bits of `value`, least significant first; false once the output is full. */
  put(value: number, n: number): boolean {
    this.bits |= value << this.count;
    this.count += n;
    while (this.count >= 8) {
      if (this.at >= this.out.length) return false;
      this.out[this.at++] = this.bits & 0xff;
      this.bits >>>= 8;
      this.count -= 8;
    }
    return true;
  }

  /** A Huffman code of `n` bits, most significant bit first. */
  code(value: number, n: number): boolean {
    let rev = 0;
    for (let i = 0; i < n; i++) rev = (rev << 1) | ((value >>> i) & 1);
    return this.put(rev, n);
  }

  finish(): number | undefined {
    if (this.count > 0) {
      if (this.at >= this.out.length) return undefined;
      this.out[this.at++] = this.bits & 0xff;
    }
    return this.at;
  }
}

function literal(w: BitWriter, sym: number): boolean {
  if (sym < 144) return w.code(0x30 + sym, 8);
  if (sym < 256) return w.code(0x190 + sym - 144, 9);
  if (sym < 280) return w.code(sym - 256, 7);
  return w.code(0xc0 + sym - 280, 8);
}

function lengthCode(w: BitWriter, len: number): boolean {
  let i = LEN_BASE.length - 1;
  while (LEN_BASE[i]! > len) i--;
  return literal(w, 257 + i) && w.put(len - LEN_BASE[i]!, LEN_EXTRA[i]!);
}

function distCode(w: BitWriter, dist: number): boolean {
  let i = DIST_BASE.length - 1;
  while (DIST_BASE[i]! > dist) i--;
  return w.code(i, 5) && w.put(dist - DIST_BASE[i]!, DIST_EXTRA[i]!);
}

/**
 * Compresses `data` into at most `limit` bytes of raw deflate; undefined when
 * it does not fit (the caller then stores the data uncompressed).
 */
export function deflateCluster(data: Uint8Array, limit: number): Uint8Array | undefined {
  const out = new Uint8Array(limit);
  const w = new BitWriter(out);
  if (!w.put(1, 1) || !w.put(1, 2)) return undefined; // BFINAL, BTYPE=01 (fixed Huffman)
  const n = data.length;
  const head = new Int32Array(1 << HASH_BITS).fill(-1);
  const prev = new Int32Array(n);
  const hash = (i: number) =>
    (((data[i]! << 10) ^ (data[i + 1]! << 5) ^ data[i + 2]!) * 2654435761) >>> (32 - HASH_BITS);
  const insert = (i: number) => {
    if (i + MIN_MATCH > n) return;
    const h = hash(i);
    prev[i] = head[h]!;
    head[h] = i;
  };
  let i = 0;
  while (i < n) {
    let bestLen = 0;
    let bestDist = 0;
    if (i + MIN_MATCH <= n) {
      const h = hash(i);
      let cand = head[h]!;
      const maxLen = Math.min(MAX_MATCH, n - i);
      for (let chain = 0; cand >= 0 && i - cand <= MAX_DIST && chain < MAX_CHAIN; chain++) {
        if (data[cand + bestLen] === data[i + bestLen]) {
          let len = 0;
          while (len < maxLen && data[cand + len] === data[i + len]) len++;
          if (len > bestLen) {
            bestLen = len;
            bestDist = i - cand;
            if (len === maxLen) break;
          }
        }
        cand = prev[cand]!;
      }
    }
    if (bestLen >= MIN_MATCH) {
      if (!lengthCode(w, bestLen) || !distCode(w, bestDist)) return undefined;
      for (let k = 0; k < bestLen; k++) insert(i + k);
      i += bestLen;
    } else {
      if (!literal(w, data[i]!)) return undefined;
      insert(i);
      i++;
    }
  }
  if (!literal(w, 256)) return undefined; // end of block
  const length = w.finish();
  return length === undefined ? undefined : out.subarray(0, length);
}
