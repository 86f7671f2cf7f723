// Page-cache control: warm inputs before a timed run (default), or drop all
// caches (--cold) where the kernel lets us.
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';

const CHUNK = 1 << 20;
const buf = Buffer.allocUnsafe(CHUNK);

/** Reads `ranges` ([offset, length]; default the whole file) so they are in the page cache. Returns bytes read. */
export function warm(path, ranges) {
  const fd = fs.openSync(path, 'r');
  let total = 0;
  try {
    const list = ranges ?? [[0, fs.fstatSync(fd).size]];
    for (const [start, len] of list) {
      for (let off = start; off < start + len; off += CHUNK) {
        const n = fs.readSync(fd, buf, 0, Math.min(CHUNK, start + len - off), off);
        total += n;
        if (n === 0) break;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return total;
}

/** Bytes of `path` in the page cache (fincore), or undefined when fincore is missing. */
export function residentBytes(path) {
  const r = spawnSync('fincore', ['-b', '-n', '-o', 'RES', path], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const n = Number(r.stdout.trim());
  return Number.isFinite(n) ? n : undefined;
}

/** Drops clean caches (sync first). Returns { ok, reason }. */
export function dropCaches() {
  try {
    spawnSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `${err.code ?? err.message}` };
  }
}
