// Writes UML COW v3 overlays directly (the layout uml_mkcow and UML's ubd
// driver use), so fixtures are built fast and independently of the code
// under test. Verified against uml_moo by `node bench/lib/cowfile.mjs --self-test`.
import * as fs from 'node:fs';

export const COW_MAGIC = 0x4f4f4f4d; // 'OOOM'
export const SECTOR = 512;
export const ALIGN = 4096;
const HEADER_V3 = 4 + 4 + 4 + 8 + 4 + 4 + 4 + 4096; // packed struct cow_header_v3

const roundUp = (n, a) => Math.ceil(n / a) * a;

/** Layout of a v3 overlay of `size` bytes. */
export function cowLayout(size) {
  const sectors = Math.ceil(size / SECTOR);
  const bitmapOffset = roundUp(HEADER_V3, ALIGN);
  const bitmapLen = Math.ceil(sectors / 8);
  const dataOffset = roundUp(bitmapOffset + bitmapLen, ALIGN);
  return { sectors, bitmapOffset, bitmapLen, dataOffset, fileSize: dataOffset + sectors * SECTOR };
}

export function cowHeader(size, backingPath, mtimeSec) {
  const h = Buffer.alloc(HEADER_V3);
  h.writeUInt32BE(COW_MAGIC, 0);
  h.writeUInt32BE(3, 4);
  h.writeUInt32BE(mtimeSec >>> 0, 8);
  h.writeBigUInt64BE(BigInt(size), 12);
  h.writeUInt32BE(SECTOR, 20);
  h.writeUInt32BE(ALIGN, 24);
  h.writeUInt32BE(0, 28);
  h.write(backingPath, 32, 'utf8');
  return h;
}

/**
 * Creates an overlay of `backingPath` whose allocated sectors are `runs`
 * ([startByte, lengthBytes], sector-aligned, sorted, non-overlapping).
 * `fill(buf, offset)` provides the overlay's data for a chunk at virtual `offset`.
 * The file is sparse: unallocated data sectors are holes, as with UML.
 */
export function writeCow(path, { size, backingPath, runs, fill, allAllocated = false }) {
  const st = fs.statSync(backingPath);
  const layout = cowLayout(size);
  const fd = fs.openSync(path, 'w');
  try {
    fs.writeSync(fd, cowHeader(size, backingPath, Math.floor(st.mtimeMs / 1000)), 0, HEADER_V3, 0);
    fs.ftruncateSync(fd, layout.fileSize);
    const CHUNK = 1 << 20;
    const buf = Buffer.allocUnsafe(CHUNK);
    if (allAllocated) {
      const ones = Buffer.alloc(Math.min(CHUNK, layout.bitmapLen), 0xff);
      for (let pos = 0; pos < layout.bitmapLen; pos += ones.length) {
        const n = Math.min(ones.length, layout.bitmapLen - pos);
        // The last byte may hold bits past the end; UML leaves them set too (harmless).
        fs.writeSync(fd, ones, 0, n, layout.bitmapOffset + pos);
      }
      for (let off = 0; off < size; off += CHUNK) {
        const n = Math.min(CHUNK, size - off);
        fill(buf.subarray(0, n), off);
        fs.writeSync(fd, buf, 0, n, layout.dataOffset + off);
      }
    } else {
      // Only the bitmap bytes a run touches are written; the rest stays a hole.
      let prevByte = -1;
      let prevVal = 0;
      for (const [start, len] of runs) {
        const s0 = start / SECTOR,
          s1 = (start + len) / SECTOR;
        const b0 = s0 >>> 3,
          b1 = (s1 - 1) >>> 3;
        const bits = Buffer.alloc(b1 - b0 + 1);
        for (let s = s0; s < s1; s++) bits[(s >>> 3) - b0] |= 1 << (s & 7);
        if (b0 === prevByte) bits[0] |= prevVal;
        fs.writeSync(fd, bits, 0, bits.length, layout.bitmapOffset + b0);
        prevByte = b1;
        prevVal = bits[bits.length - 1];
        for (let off = start; off < start + len; off += CHUNK) {
          const n = Math.min(CHUNK, start + len - off);
          fill(buf.subarray(0, n), off);
          fs.writeSync(fd, buf, 0, n, layout.dataOffset + off);
        }
      }
    }
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return layout;
}

async function selfTest() {
  const { mkdtempSync, rmSync, readFileSync, writeFileSync } = fs;
  const { execFileSync } = await import('node:child_process');
  const dir = mkdtempSync('/tmp/blk-cowfile-');
  try {
    const size = 10 * 1024 * 1024 + 512 * 3;
    const base = `${dir}/base.raw`;
    writeFileSync(base, Buffer.alloc(size, 0x11));
    // Header identical to uml_mkcow's.
    execFileSync('uml_mkcow', [`${dir}/ref.cow`, base]);
    writeCow(`${dir}/mine.cow`, { size, backingPath: base, runs: [], fill: () => {} });
    const ref = readFileSync(`${dir}/ref.cow`),
      mine = readFileSync(`${dir}/mine.cow`);
    if (ref.length !== mine.length || !ref.equals(mine))
      throw new Error(`header/size differ from uml_mkcow (${ref.length} vs ${mine.length})`);
    const runs = [
      [512, 512],
      [1024, 1024],
      [4096, 8192],
      [size - 1024, 1024],
    ];
    writeCow(`${dir}/ov.cow`, {
      size,
      backingPath: base,
      runs,
      fill: (b, off) => {
        for (let i = 0; i < b.length; i++) b[i] = (((off + i) >> 9) & 0xff) | 1;
      },
    });
    execFileSync('uml_moo', [`${dir}/ov.cow`, `${dir}/out.raw`]);
    const out = readFileSync(`${dir}/out.raw`);
    for (let s = 0; s < size / 512; s++) {
      const inRun = runs.some(([a, l]) => s * 512 >= a && s * 512 < a + l);
      const want = inRun ? (s & 0xff) | 1 : 0x11;
      if (out[s * 512] !== want || out[s * 512 + 511] !== want)
        throw new Error(`sector ${s}: ${out[s * 512]} != ${want}`);
    }
    console.log('cowfile self-test: ok (matches uml_mkcow header; uml_moo merges as expected)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}` && process.argv.includes('--self-test'))
  await selfTest();
