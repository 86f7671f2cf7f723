// Shared helpers: deterministic data patterns, PRNG, run layouts, formatting.
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;
export const SECTOR = 512;

/** Tags for the data each layer holds, so reads can be checked for where they came from. */
export const TAG_BASE = 0x0b0b0000;
export const TAG_OVERLAY = 0x0c0c0000;

/** A small fast seeded PRNG (mulberry32). Returns uint32. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The 32-bit word every word of sector `sector` of a layer tagged `tag` holds (never 0). */
export function sectorWord(sector, tag) {
  return ((Math.imul(sector, 0x9e3779b1) ^ tag) | 1) >>> 0;
}

/** Fills `buf` (sector-aligned, at virtual byte `offset`) with the layer's pattern. */
export function fillPattern(buf, offset, tag) {
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2);
  const first = offset / SECTOR;
  for (let i = 0, s = first; i < u32.length; i += 128, s++) u32.fill(sectorWord(s, tag), i, i + 128);
}

/** Checks the first and last word of every sector of `buf` read at `offset`; `tagOf(sector)` says which layer. */
export function checkPattern(buf, offset, tagOf) {
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2);
  const first = offset / SECTOR;
  for (let i = 0, s = first; i < u32.length; i += 128, s++) {
    const want = sectorWord(s, tagOf(s));
    if (u32[i] !== want || u32[i + 127] !== want) {
      throw new Error(
        `data check failed at sector ${s} (byte ${s * SECTOR}): got ${u32[i].toString(16)}, want ${want.toString(16)}`,
      );
    }
  }
}

/**
 * Half-allocated overlay: alternating allocated / unallocated runs of 1..32
 * 4 KiB blocks. Returns sorted [start, length] byte runs that are allocated.
 */
export function halfRuns(size, seed = 7) {
  const rnd = prng(seed);
  const runs = [];
  let pos = 0;
  let alloc = true;
  while (pos < size) {
    const len = Math.min(size - pos, (1 + (rnd() % 32)) * 4 * KiB);
    if (alloc) runs.push([pos, len]);
    pos += len;
    alloc = !alloc;
  }
  return runs;
}

/** Commit overlay: 25% of sectors, as one 1 MiB run at a random sector in each 4 MiB group. */
export function commitRuns(size, seed = 11) {
  const rnd = prng(seed);
  const runs = [];
  for (let g = 0; g + 4 * MiB <= size; g += 4 * MiB) {
    const shift = (rnd() % ((3 * MiB) / SECTOR + 1)) * SECTOR;
    runs.push([g + shift, MiB]);
  }
  return runs;
}

/** Map overlay: `count` runs of 4 KiB..128 KiB at random sector offsets, sorted and separated. */
export function scatteredRuns(size, count, seed = 13) {
  const rnd = prng(seed);
  const slot = Math.floor(size / count / SECTOR) * SECTOR; // one run per slot keeps them apart
  const runs = [];
  for (let i = 0; i < count; i++) {
    const len = (8 + (rnd() % 249)) * SECTOR;
    const room = (slot - len) / SECTOR - 1;
    const start = i * slot + SECTOR * (1 + Math.floor((rnd() / 2 ** 32) * room));
    runs.push([start, len]);
  }
  return runs;
}

/** Looks up whether `byte` lies in one of the sorted runs (binary search). */
export function inRuns(runs, byte) {
  let lo = 0,
    hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [s, l] = runs[mid];
    if (byte < s) hi = mid - 1;
    else if (byte >= s + l) lo = mid + 1;
    else return true;
  }
  return false;
}

export function fmtRate(value, unit) {
  if (value === undefined || value === null || Number.isNaN(value)) return '—';
  if (unit === 'MB/s') return `${value >= 100 ? Math.round(value) : value.toFixed(1)} MB/s`;
  if (unit === 'IOPS') return value >= 1e6 ? `${(value / 1e6).toFixed(2)}M IOPS` : `${Math.round(value / 1000)}k IOPS`;
  if (unit === 's') return value < 1 ? `${(value * 1000).toFixed(value < 0.01 ? 2 : 1)} ms` : `${value.toFixed(2)} s`;
  if (unit === 'ms') return `${value.toFixed(2)} ms`;
  if (unit === 'µs/run') return `${value.toFixed(value < 10 ? 2 : 1)} µs/run`;
  return `${value} ${unit}`;
}

export function fmtBytes(n) {
  const f = (x, u) => `${Number.isInteger(x) ? x : x.toFixed(x < 10 ? 2 : 1)} ${u}`;
  if (n >= TiB) return f(n / TiB, 'TiB');
  if (n >= GiB) return f(n / GiB, 'GiB');
  if (n >= MiB) return f(n / MiB, 'MiB');
  return f(n / KiB, 'KiB');
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
