/** Shared write sets and peer-driving steps of the interop suite. */
import { join } from 'node:path';
import { Prng, SECTOR, cpP, readBytes, type Write } from './files.js';
import { runOk } from './peers.js';

export const MiB = 1024 * 1024;

/**
 * A deterministic set of guest writes for an image of `size` bytes: a lone
 * sector inside a page, a whole page, unaligned heads/tails (blk must
 * read-modify-write them through the backing file), a large run, explicit
 * zeros over non-zero backing data (must be stored, not skipped), the last
 * sector, a single byte, a rewrite, and seeded random writes.
 */
export function guestWrites(size: number, seed: number, randomCount = 16): Write[] {
  const p = new Prng(seed);
  const w: Write[] = [
    { offset: 0, data: p.bytes(SECTOR) },
    { offset: 3 * SECTOR, data: p.bytes(SECTOR) },
    { offset: 8 * SECTOR, data: p.bytes(4096) },
    { offset: 10_000, data: p.bytes(3000) },
    { offset: Math.min(2 * MiB, size / 4), data: p.bytes(Math.min(MiB, size / 8)) },
    { offset: (5000 * SECTOR) % (size - 8192), data: new Uint8Array(4096) },
    { offset: size - SECTOR, data: p.bytes(SECTOR) },
    { offset: 12_345, data: p.bytes(1) },
    { offset: 3 * SECTOR + 100, data: p.bytes(50) },
  ];
  for (let i = 0; i < randomCount; i++) {
    const len = 1 + p.int(8192);
    w.push({ offset: p.int(size - len), data: p.bytes(len) });
  }
  return w;
}

/** `uml_moo COW OUT` (copying merge); returns the merged image. */
export async function mooCopy(cow: string, out: string): Promise<Buffer> {
  await runOk('uml_moo', [cow, out]);
  return readBytes(out);
}

/**
 * `uml_moo -d -b COPY COW` (in-place merge into a `cp -p` copy of the
 * backing file; -d must come first); returns the merged copy.
 */
export async function mooInPlace(cow: string, backing: string, copy: string): Promise<Buffer> {
  await cpP(backing, copy);
  await runOk('uml_moo', ['-d', '-b', copy, cow]);
  return readBytes(copy);
}

export const inDir = (dir: string) => (name: string) => join(dir, name);
