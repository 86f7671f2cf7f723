/** Temp dirs, deterministic contents, an in-memory model of the expected disk, and byte comparison. */
import { mkdtemp, readFile, rm, stat, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runOk } from './peers.js';

export const SECTOR = 512;

/** A fresh directory under os.tmpdir(); `cleanup()` removes it unless BLK_INTEROP_KEEP=1. */
export async function tempDir(label: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `blk-interop-${label}-`));
  return {
    dir,
    cleanup: async () => {
      if (process.env.BLK_INTEROP_KEEP === '1') {
        console.warn(`[interop] kept ${dir}`);
        return;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Backing-file contents in which every 16-byte line is unique ("%015d\n", as
 * `seq -f '%015.0f'`), so a sector read from the wrong place never matches by luck.
 */
export function lineImage(size: number, tag = 0): Buffer {
  const buf = Buffer.alloc(size);
  const lines = Math.ceil(size / 16);
  const prefix = tag.toString().padStart(3, '0');
  for (let i = 0; i < lines; i++) {
    const s = `${prefix}${i.toString().padStart(12, '0')}\n`;
    buf.write(s, i * 16, Math.min(16, size - i * 16), 'latin1');
  }
  return buf;
}

/** Small deterministic PRNG (xorshift32), so every run writes the same bytes. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.s = x;
    return x;
  }
  int(max: number): number {
    return this.next() % max;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i += 4) {
      const x = this.next();
      for (let k = 0; k < 4 && i + k < n; k++) b[i + k] = (x >>> (8 * k)) & 0xff;
    }
    return b;
  }
}

export interface Write {
  offset: number;
  data: Uint8Array;
}

/** Applies writes to a copy of `base` (the expected disk). */
export function applyWrites(base: Uint8Array, writes: Write[]): Buffer {
  const out = Buffer.from(base);
  for (const w of writes) out.set(w.data, w.offset);
  return out;
}

/** Sectors touched by the writes (a partial sector counts: the overlay must hold all of it). */
export function touchedSectors(writes: Write[]): Set<number> {
  const set = new Set<number>();
  for (const w of writes) {
    if (w.data.length === 0) continue;
    const first = Math.floor(w.offset / SECTOR);
    const last = Math.floor((w.offset + w.data.length - 1) / SECTOR);
    for (let s = first; s <= last; s++) set.add(s);
  }
  return set;
}

/** Compresses a set of sector numbers into [start, count] runs, sorted. */
export function sectorRuns(set: Iterable<number>): Array<[number, number]> {
  const sorted = [...set].sort((a, b) => a - b);
  const runs: Array<[number, number]> = [];
  for (const s of sorted) {
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === s) last[1]++;
    else runs.push([s, 1]);
  }
  return runs;
}

/**
 * Describes the first difference between two byte arrays, or undefined when
 * they are equal (same length, same bytes). Used as `expect(diff(a, b)).toBeUndefined()`
 * so a failure says where and what.
 */
export function diff(actual: Uint8Array, expected: Uint8Array, label = 'bytes'): string | undefined {
  const n = Math.min(actual.length, expected.length);
  let first = -1;
  let count = 0;
  let last = -1;
  for (let i = 0; i < n; i++) {
    if (actual[i] !== expected[i]) {
      if (first < 0) first = i;
      last = i;
      count++;
    }
  }
  if (first < 0 && actual.length === expected.length) return undefined;
  const parts: string[] = [];
  if (actual.length !== expected.length) parts.push(`length ${actual.length} != expected ${expected.length}`);
  if (first >= 0) {
    const hex = (b: Uint8Array) => Buffer.from(b.subarray(first, Math.min(first + 16, b.length))).toString('hex');
    parts.push(
      `${count} byte(s) differ in [${first}, ${last}] (sector ${Math.floor(first / SECTOR)}`
        + `..${Math.floor(last / SECTOR)}); at ${first}: actual ${hex(actual)} expected ${hex(expected)}`,
    );
  }
  return `${label}: ${parts.join('; ')}`;
}

/** Byte offsets at which two equal-length arrays differ. */
export function differingOffsets(a: Uint8Array, b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

/** `cp -p` (keeps the mtime that UML / uml_moo / blk check against the overlay header). */
export async function cpP(from: string, to: string): Promise<void> {
  await runOk('cp', ['-p', from, to]);
}

export async function mtimeSec(path: string): Promise<number> {
  const st = await stat(path, { bigint: true });
  return Number(st.mtimeNs / 1_000_000_000n);
}

export async function writeBytes(path: string, data: Uint8Array): Promise<void> {
  await writeFile(path, data);
}

export async function readBytes(path: string): Promise<Buffer> {
  return readFile(path);
}

/** Overwrites bytes at `offset` in place (used to corrupt files on purpose). */
export async function pokeBytes(path: string, offset: number, data: Uint8Array): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

export async function peekBytes(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    await fh.read(b, 0, length, offset);
    return b;
  } finally {
    await fh.close();
  }
}
