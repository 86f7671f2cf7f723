#!/usr/bin/env node
// The floor of a qcow2 → raw conversion in Node, with no blk code: copies the image's allocated
// host data (a precomputed run list, `qcow2Runs` below) to the guest offsets of a fresh sparse file,
// with fs.readSync into one reused buffer and fs.writeSync, after one ftruncate to the virtual size.
// The bench rows time it as a whole process (`node -e 0` plus this copy) beside `blk convert`.
//   node bench/lib/plain-copy.mjs SRC DST RUNS.json    (RUNS.json: { size, runs: [[host, guest, length], ...] })
// It also exports `qcow2Runs(path)`, the untimed set-up: the runs read from the qcow2's L1/L2 tables.
import * as fs from 'node:fs';

/** Largest single read/write of the copy: runs longer than this are copied in pieces. */
export const PIECE = 4 * 1024 * 1024;

/**
 * The data runs of a qcow2 image (v2/v3, no compressed clusters, no subclusters, no external data
 * file): [hostOffset, guestOffset, length] in guest order, clusters adjacent in both the guest and
 * the host file merged into one run. Standard clusters only (an all-zero flag or a compressed entry
 * is refused: the floor is meant for plainly allocated images).
 */
export function qcow2Runs(path) {
  const fd = fs.openSync(path, 'r');
  try {
    const h = Buffer.alloc(104);
    fs.readSync(fd, h, 0, h.length, 0);
    if (h.readUInt32BE(0) !== 0x514649fb) throw new Error(`${path}: not a qcow2 image`);
    const bits = h.readUInt32BE(20);
    const cs = 2 ** bits;
    const size = Number(h.readBigUInt64BE(24));
    const l1Size = h.readUInt32BE(36);
    const l1Offset = Number(h.readBigUInt64BE(40));
    const perL2 = cs / 8;
    const l1 = Buffer.alloc(l1Size * 8);
    fs.readSync(fd, l1, 0, l1.length, l1Offset);
    const l2 = Buffer.alloc(cs);
    const runs = [];
    const OFFSET = (1n << 56n) - 512n; // bits 9-55
    for (let i = 0; i < l1Size; i++) {
      const l2Offset = Number(l1.readBigUInt64BE(i * 8) & OFFSET);
      if (l2Offset === 0) continue;
      fs.readSync(fd, l2, 0, cs, l2Offset);
      for (let j = 0; j < perL2; j++) {
        const e = l2.readBigUInt64BE(j * 8);
        if (e & (1n << 62n)) throw new Error(`${path}: compressed clusters are not supported here`);
        if (e & 1n) throw new Error(`${path}: zero clusters are not supported here`);
        const host = Number(e & OFFSET);
        if (host === 0) continue;
        const guest = (i * perL2 + j) * cs;
        const len = Math.min(cs, size - guest);
        const last = runs[runs.length - 1];
        if (last && last[0] + last[2] === host && last[1] + last[2] === guest) last[2] += len;
        else runs.push([host, guest, len]);
      }
    }
    return { size, runs };
  } finally {
    fs.closeSync(fd);
  }
}

function copy(src, dst, { size, runs }) {
  const inFd = fs.openSync(src, 'r');
  const outFd = fs.openSync(dst, 'w');
  const buf = Buffer.allocUnsafe(Math.min(PIECE, Math.max(0, ...runs.map((r) => r[2]))));
  try {
    fs.ftruncateSync(outFd, size);
    for (const [host, guest, length] of runs) {
      for (let done = 0; done < length; ) {
        const n = Math.min(buf.length, length - done);
        const got = fs.readSync(inFd, buf, 0, n, host + done);
        if (got !== n) throw new Error(`${src}: short read at ${host + done}`);
        fs.writeSync(outFd, buf, 0, n, guest + done);
        done += n;
      }
    }
  } finally {
    fs.closeSync(inFd);
    fs.closeSync(outFd);
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${fs.realpathSync(process.argv[1])}`).href) {
  const [src, dst, runsFile] = process.argv.slice(2);
  copy(src, dst, JSON.parse(fs.readFileSync(runsFile, 'utf8')));
}
