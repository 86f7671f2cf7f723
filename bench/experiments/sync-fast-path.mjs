// EXPERIMENT (not blk code): a synchronous fast path through Image, the cow
// driver and the raw driver, monkeypatched onto the BUILT packages to measure
// what the proposed design would gain (bench/README.md, "random reads").
// It relies on private fields of the current dist code and may break when
// they change; it is loaded only by `node bench/run.mjs --experiment sync-fast-path`
// (into the blk child processes, with `node --import`).
//
// The design: Storage gets an optional synchronous read (NodeFileStorage in
// io:'sync' mode); a driver gets an optional `tryReadSync(offset, into, at,
// len, belowSync)` that either completes the whole read synchronously or
// returns false having done nothing observable (a bitmap chunk not cached,
// storage without sync I/O); Image.readInto takes that path when no request is
// in flight on the image and returns one shared resolved promise. A request
// that completes synchronously cannot interleave with any other, so it needs
// no RequestTracker entry, no promise and no closure.
import * as fs from 'node:fs';
const core = await import(new URL('../../packages/core/dist/index.js', import.meta.url).href);
const cow = await import(new URL('../../packages/cow/dist/index.js', import.meta.url).href);
const raw = await import(new URL('../../packages/raw/dist/index.js', import.meta.url).href);
const RESOLVED = Promise.resolve();
const SS = 512;

// Storage: readSync when the storage is a sync NodeFileStorage.
const fdOf = (storage) =>
  storage instanceof core.NodeFileStorage && storage.io === 'sync' && !storage.closed ? storage.fd : -1;
function readSyncAt(fd, into, at, len, pos) {
  let done = 0;
  while (done < len) {
    const n = fs.readSync(fd, into, at + done, len - done, pos + done);
    if (n === 0) {
      into.fill(0, at + done, at + len);
      break;
    }
    done += n;
  }
}

// Raw driver.
const rawProto = Object.getPrototypeOf(await rawDriver_open());
async function rawDriver_open() {
  // get the RawImage prototype by opening a tiny memory storage
  const ms = new core.MemoryStorage(new core.MemoryFile(), 'x');
  return raw.rawDriver.open(ms, { readOnly: true, cache: 'writeback' });
}
rawProto.tryReadSync = function (offset, into, at, len) {
  const fd = fdOf(this.storage);
  if (fd < 0) return false;
  readSyncAt(fd, into, at, len, offset);
  return true;
};

// Cow driver: bitmap lookups only in cached chunks.
cow.CowImage.prototype.tryReadSync = function (offset, into, at, len, below) {
  const fd = fdOf(this.storage);
  if (fd < 0 || this.closed) return false;
  const bm = this.bitmap;
  const chunkBits = bm.chunkBits;
  let sector = offset / SS;
  const end = sector + len / SS;
  // First pass: every chunk needed must be cached (no side effects before we know).
  for (let c = Math.floor(sector / chunkBits), last = Math.floor((end - 1) / chunkBits); c <= last; c++) {
    if ((c + 1) * chunkBits > sector && !bm.chunks.has(c) && c * chunkBits < bm.trackedBits) return false;
  }
  while (sector < end) {
    const idx = Math.floor(sector / chunkBits);
    const chunk = bm.chunks.get(idx);
    const base = idx * chunkBits;
    const stop = Math.min(end, base + chunkBits, bm.trackedBits);
    const bytes = chunk.bytes;
    const b = sector - base;
    const want = (bytes[b >>> 3] & (1 << (b & 7))) !== 0;
    let e = b + 1;
    const lim = stop - base;
    while (e < lim && ((bytes[e >>> 3] & (1 << (e & 7))) !== 0) === want) e++;
    const count = e - b;
    const bytesLen = count * SS;
    if (want) readSyncAt(fd, into, at, bytesLen, this.layout.dataOffset + sector * SS);
    else if (!below(sector * SS, into, at, bytesLen)) return false;
    sector += count;
    at += bytesLen;
  }
  return true;
};

// Image: the fast path, and a synchronous "below".
const origReadInto = core.Image.prototype.readInto;
core.Image.prototype.readInto = function (offset, into) {
  try {
    if (
      !this.closed
      && this.tracker.size === 0
      && this.driverImage.tryReadSync
      && offset >= 0
      && offset + into.length <= this.size
      && offset % this.sectorSize === 0
      && into.length % this.sectorSize === 0
    ) {
      if (this.driverImage.tryReadSync(offset, into, 0, into.length, (this.belowSync ??= makeBelowSync(this))))
        return RESOLVED;
    }
  } catch (err) {
    return Promise.reject(err);
  }
  return origReadInto.call(this, offset, into);
};
function makeBelowSync(image) {
  const b = image.backing;
  if (!b)
    return (_off, into, at, len) => {
      into.fill(0, at, at + len);
      return true;
    };
  return (off, into, at, len) => {
    if (b.closed || b.tracker.size !== 0 || !b.driverImage.tryReadSync) return false;
    const inside = Math.max(0, Math.min(len, b.size - off));
    if (inside < len) into.fill(0, at + inside, at + len);
    return inside === 0 || b.driverImage.tryReadSync(off, into, at, inside, (b.belowSync ??= makeBelowSync(b)));
  };
}
