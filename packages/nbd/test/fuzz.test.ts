/**
 * A seeded protocol fuzzer for the NBD server (NbdConnection over an in-memory pipe, a raw image
 * or a cow-over-raw chain in a MemoryVfs):
 *
 * - handshakes: a valid client handshake (flags, then a random choice of options ending in GO,
 *   EXPORT_NAME, ABORT or nothing) mutated (bit flips, boundary values in length fields,
 *   truncation, duplication, junk), then whatever requests follow;
 * - requests: sessions of pipelined requests, each valid or malformed (unknown commands and flags,
 *   out-of-range and overflowing offsets, zero and oversized lengths, refused writes whose payload
 *   must be drained, FAST_ZERO where zeroing is not cheap, block status without contexts), ending
 *   in DISC, a bad magic, a truncated header or a truncated write payload, all sent in one chunk;
 *   every other session's server end shows its received bytes (the small-read fast path), the
 *   others only offer readExactly (the general path); every other pair of sessions sends reads
 *   zero-copy (`ByteStream.sendParts` over storages with stand-in host descriptors, whose bytes
 *   are read a turn late, when the reply goes out, as sendfile reads them).
 *
 * Required for every input: the connection ends (no hang) once the client has sent everything and
 * closed its side, nothing throws out of it, every request before the end of the session is
 * answered with the error the protocol asks for (replies well formed, cookies echoed, read data
 * equal to a model of the image), and afterwards the image holds every acknowledged write (the
 * model). Memory stays bounded over the run (heap and RSS sampled).
 *
 * BLK_NBD_FUZZ_INPUTS sets the number of inputs (handshakes + requests; default 100000),
 * BLK_NBD_FUZZ_SEED the seed (default 1). scripts/fuzz-nbd.mjs runs long runs over many seeds.
 * A failure names the seed and the session to replay.
 */
import { describe, expect, it } from 'vitest';
import {
  createImage,
  DriverRegistry,
  FilterStorage,
  ForwardingVfs,
  MemoryVfs,
  openImage,
  type Image,
  type Storage,
  type VfsOpenOptions,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { cowDriver } from '@blk/cow';
import { HangError, Rng, withTimeout } from '@blk/faults';
import {
  CHUNK,
  CMD,
  CMD_FLAG,
  concat,
  encoder,
  IHAVEOPT,
  NBD_ERR,
  NbdConnection,
  OPT,
  REP,
  REPLY_MAGIC,
  u16,
  u32,
  view,
  type FileSpan,
} from '../src/index.js';
import { pipe, type End } from './pipe.js';
import { assemble, req, simpleReply, structuredReply, type Reply } from './wire.js';

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const value = Number((raw ?? '').replace(/_/g, ''));
  return raw !== undefined && raw !== '' && Number.isSafeInteger(value) && value >= 0 ? value : fallback;
}

const INPUTS = envInt('BLK_NBD_FUZZ_INPUTS', 100_000);
const SEED = envInt('BLK_NBD_FUZZ_SEED', 1);
const registry = new DriverRegistry([cowDriver, rawDriver]);
const SIZE = 256 * 1024;
/** The server's maximum request here (small, so that drained and dropped payloads stay cheap). */
const MAX_REQUEST = 16 * 1024;

function option(opt: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(16 + data.length);
  view(b).setBigUint64(0, IHAVEOPT);
  view(b).setUint32(8, opt);
  view(b).setUint32(12, data.length);
  b.set(data, 16);
  return b;
}

function str(s: string): Uint8Array {
  const b = encoder.encode(s);
  return concat([u32(b.length), b]);
}

function goData(name: string, infos: number[]): Uint8Array {
  return concat([str(name), u16(infos.length), ...infos.map(u16)]);
}

function metaData(name: string, queries: string[]): Uint8Array {
  return concat([str(name), u32(queries.length), ...queries.map(str)]);
}

/** Storages by stand-in host descriptor (`hostFd`), for the zero-copy sessions' `sendParts`. */
const fakeFiles = new Map<number, Storage>();
let nextFakeFd = 1000;

/** A storage that claims a host descriptor (a number only `sendParts` below knows). */
class FakeFdStorage extends FilterStorage {
  private readonly fd = nextFakeFd++;
  constructor(next: Storage) {
    super(next);
    fakeFiles.set(this.fd, next);
  }
  override hostFd(): number | undefined {
    return this.fd;
  }
  override close(): Promise<void> {
    fakeFiles.delete(this.fd);
    return super.close();
  }
}

class FakeFdVfs extends ForwardingVfs {
  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    return new FakeFdStorage(await this.inner.open(path, options));
  }
}

/**
 * Gives `end` a `sendParts` that reads its file spans a turn late (when the bytes go out, as
 * sendfile does), and keeps `write`s in order behind it, as the Node stream does.
 */
function withZeroCopy(end: End): void {
  let tail: Promise<unknown> = Promise.resolve();
  const write = end.write.bind(end);
  const chain = (step: () => Promise<void>): Promise<void> => {
    const p = tail.then(step);
    tail = p.catch(() => undefined);
    return p;
  };
  end.write = (d, sent) => chain(() => write(d, sent));
  end.sendParts = (parts: ReadonlyArray<Uint8Array | FileSpan>, sent?: () => void) =>
    chain(async () => {
      await new Promise((r) => setImmediate(r));
      const bytes = parts.map((p) => {
        if (p instanceof Uint8Array) return p;
        const b = new Uint8Array(p.length);
        if (p.fd !== undefined) fakeFiles.get(p.fd)!.readSync!(p.position, b); // past the end: zeros
        return b;
      });
      await write(concat(bytes), sent);
    });
}

/** A fresh image (raw, or a cow over a raw base with data in both layers) and the model of its bytes. */
async function makeImage(rng: Rng): Promise<{ image: Image; model: Uint8Array; readOnly: Image }> {
  const vfs = new FakeFdVfs(new MemoryVfs());
  const base = new Uint8Array(SIZE);
  for (let i = 0; i < 4; i++) base.fill(rng.int(256), rng.int(SIZE), rng.int(SIZE));
  (vfs.inner as MemoryVfs).put('/base.raw', base);
  if (rng.bool()) {
    const image = await openImage('/base.raw', { registry, vfs, format: 'raw' });
    const readOnly = await openImage('/base.raw', { registry, vfs, format: 'raw', readOnly: true });
    return { image, model: base.slice(), readOnly };
  }
  await createImage('/top.cow', { registry, vfs, format: 'cow', backing: { path: '/base.raw', format: 'raw' } });
  const image = await openImage('/top.cow', { registry, vfs });
  const model = base.slice();
  const at = rng.int(SIZE - 4096);
  const data = rng.bytes(4096);
  await image.write(at, data);
  model.set(data, at);
  // Handshake inputs (whose trailing requests may be anything) get a read-only view of the same file.
  const readOnly = await openImage('/top.cow', { registry, vfs, readOnly: true });
  return { image, model, readOnly };
}

/**
 * `peek`: the server end shows its received bytes (the small-read fast path) or only offers
 * readExactly; `zeroCopy`: it sends reads of any size as file spans (`withZeroCopy`).
 */
function serve(image: Image, peek: boolean, zeroCopy = false) {
  const [client, server] = pipe({ peek });
  if (zeroCopy) withZeroCopy(server);
  const conn = new NbdConnection(server, [{ name: 'ex', description: 'fuzz', image }], {
    handshakeTimeoutMs: 0,
    zeroCopyMin: 1,
    maxRequest: MAX_REQUEST,
    maxInFlight: 8,
    maxBytesInFlight: 4 * MAX_REQUEST,
  });
  return { client, done: conn.run() };
}

/** Reads and drops everything the server sends until it closes (bounded). */
async function drainAll(c: End): Promise<number> {
  let n = 0;
  for (;;) {
    const b = await c.readAvailable();
    if (b === null) return n;
    n += b.length;
    if (n > 64 * 1024 * 1024) throw new Error('server sent more than 64 MiB');
  }
}

// ---------------------------------------------------------------------------------------------------
// Handshakes

function validHandshake(rng: Rng): Uint8Array {
  const parts: Uint8Array[] = [u32(rng.pick([0, 1, 2, 3, 3, 3]))];
  const n = rng.int(5);
  for (let i = 0; i < n; i++) {
    switch (rng.int(7)) {
      case 0:
        parts.push(option(OPT.STRUCTURED_REPLY));
        break;
      case 1:
        parts.push(option(OPT.LIST));
        break;
      case 2:
        parts.push(option(OPT.INFO, goData(rng.pick(['ex', '', 'nope']), [0, 1, 2, 3])));
        break;
      case 3:
        parts.push(option(OPT.SET_META_CONTEXT, metaData('ex', ['base:allocation', 'qemu:allocation-depth'])));
        break;
      case 4:
        parts.push(option(OPT.LIST_META_CONTEXT, metaData('ex', rng.bool() ? [] : ['base:', 'qemu:'])));
        break;
      case 5:
        parts.push(option(OPT.STARTTLS));
        break;
      default:
        parts.push(option(rng.u32(), rng.bytes(rng.int(16))));
    }
  }
  switch (rng.int(4)) {
    case 0:
      parts.push(option(OPT.GO, goData('ex', [3])));
      break;
    case 1:
      parts.push(option(OPT.EXPORT_NAME, encoder.encode('ex')));
      break;
    case 2:
      parts.push(option(OPT.ABORT));
      break;
  }
  // A few requests after it (read as requests if the handshake got through).
  for (let i = rng.int(4); i > 0; i--) parts.push(req(rng.int(9), rng.int(SIZE), rng.int(8192), i, rng.int(32)));
  return concat(parts);
}

const BOUNDARY = [0, 1, 2, 4, 6, 255, 4095, 4096, 4097, 65535, 65536, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

function mutateBytes(rng: Rng, b: Uint8Array): Uint8Array {
  let out = b.slice();
  for (let k = 1 + rng.int(3); k > 0; k--) {
    switch (rng.int(6)) {
      case 0: // bit flip
        if (out.length > 0) out[rng.int(out.length)]! ^= 1 << rng.int(8);
        break;
      case 1: // a boundary u32 somewhere (a length field, most likely)
        if (out.length >= 4) view(out).setUint32(rng.int(out.length - 3), rng.pick(BOUNDARY));
        break;
      case 2: // truncation
        out = out.subarray(0, rng.int(out.length + 1));
        break;
      case 3: // duplication of a slice
        if (out.length > 0) {
          const s = rng.int(out.length);
          out = concat([out, out.subarray(s, s + 1 + rng.int(64))]);
        }
        break;
      case 4: // junk inserted
        {
          const at = rng.int(out.length + 1);
          out = concat([out.subarray(0, at), rng.bytes(1 + rng.int(32)), out.subarray(at)]);
        }
        break;
      default: // a random byte replaced
        if (out.length > 0) out[rng.int(out.length)] = rng.int(256);
    }
  }
  return out;
}

async function handshakeInput(rng: Rng, image: Image, peek: boolean, zeroCopy: boolean): Promise<void> {
  const { client, done } = serve(image, peek, zeroCopy);
  const greeting = await client.readExactly(18);
  check(greeting !== null, 'no greeting');
  await client.write(mutateBytes(rng, validHandshake(rng)));
  client.endWrites();
  await drainAll(client);
  await done;
}

// ---------------------------------------------------------------------------------------------------
// Requests

interface Expect {
  /** The error the reply must carry (0: success). */
  error: number;
  /** Another error the reply may carry instead (FAST_ZERO on a format whose zeroing may decline). */
  or?: number;
  flags: number;
  /** For a successful read: the bytes it must return (undefined entries of `known` are not compared). */
  data?: Uint8Array;
  known?: Uint8Array;
  offset: number;
  length: number;
  type: number;
}

/** One transmission session: returns the number of requests sent. */
async function requestSession(
  rng: Rng,
  image: Image,
  model: Uint8Array,
  known: Uint8Array,
  peek: boolean,
  zeroCopy: boolean,
): Promise<number> {
  const structured = rng.bool(0.7);
  const contexts = structured && rng.bool(0.7);
  const { client, done } = serve(image, peek, zeroCopy);
  await client.readExactly(18);
  const hs: Uint8Array[] = [u32(3)];
  if (structured) hs.push(option(OPT.STRUCTURED_REPLY));
  if (contexts) hs.push(option(OPT.SET_META_CONTEXT, metaData('ex', ['base:allocation', 'qemu:allocation-depth'])));
  hs.push(option(OPT.GO, goData('ex', [])));
  await client.write(concat(hs));
  // Option replies up to GO's ACK.
  for (;;) {
    const h = (await client.readExactly(20))!;
    check(view(h).getBigUint64(0) === REPLY_MAGIC, 'option reply magic');
    const len = view(h).getUint32(16);
    if (len > 0) await client.readExactly(len);
    if (view(h).getUint32(8) === OPT.GO && view(h).getUint32(12) === REP.ACK) break;
    check((view(h).getUint32(12) & 0x80000000) === 0, 'option refused');
  }
  const caps = image.capabilities;
  const expects = new Map<bigint, Expect>();
  const out: Uint8Array[] = [];
  const count = 10 + rng.int(60);
  let cookie = 0n;
  const add = (
    type: number,
    offset: number,
    length: number,
    flags: number,
    e: Omit<Expect, 'offset' | 'length' | 'type' | 'flags'>,
  ) => {
    cookie++;
    out.push(req(type, offset, length, cookie, flags));
    expects.set(cookie, { ...e, offset, length, type, flags });
  };
  const pastEnd = (length: number) => SIZE - length + 1 + rng.int(Math.max(1, length));
  const inRange = (len: number) => rng.int(SIZE - len + 1);
  for (let i = 0; i < count; i++) {
    const kind = rng.int(16);
    const len = rng.pick([0, 1, 511, 512, 4096, rng.int(MAX_REQUEST) + 1, MAX_REQUEST]);
    switch (kind) {
      case 0:
      case 1:
      case 2: {
        // A valid read (maybe DF / FUA).
        const off = inRange(len);
        let flags = rng.bool(0.2) ? CMD_FLAG.FUA : 0;
        if (structured && rng.bool(0.3)) flags |= CMD_FLAG.DF;
        add(CMD.READ, off, len, flags, {
          error: 0,
          data: model.slice(off, off + len),
          known: known.slice(off, off + len),
        });
        break;
      }
      case 3:
      case 4:
      case 5: {
        // A valid write: applied to the model in stream order.
        const off = inRange(len);
        const data = rng.bytes(len);
        const flags = rng.bool(0.3) ? CMD_FLAG.FUA : 0;
        add(CMD.WRITE, off, len, flags, { error: 0 });
        out.push(data);
        model.set(data, off);
        known.fill(1, off, off + len);
        break;
      }
      case 6: {
        // A refused write: past the end, or over the maximum (drained), or bad flags; the payload is sent.
        const which = rng.int(3);
        const length = which === 1 ? MAX_REQUEST + 1 + rng.int(MAX_REQUEST) : len;
        const off = which === 0 ? pastEnd(length) : inRange(Math.min(length, SIZE));
        const flags = which === 2 ? CMD_FLAG.DF | CMD_FLAG.NO_HOLE : 0;
        const error = which === 0 ? NBD_ERR.ENOSPC : which === 1 ? NBD_ERR.EOVERFLOW : NBD_ERR.EINVAL;
        add(CMD.WRITE, off, length, flags, { error });
        out.push(rng.bytes(length));
        break;
      }
      case 7: {
        // Reads that must fail: past the end, overflowing offset, oversized, bad flags, DF without structured.
        const which = rng.int(5);
        const l = Math.min(len + 1, MAX_REQUEST);
        if (which === 0) add(CMD.READ, pastEnd(l), l, 0, { error: NBD_ERR.EINVAL });
        else if (which === 1) add(CMD.READ, Number.MAX_SAFE_INTEGER - rng.int(100), 512, 0, { error: NBD_ERR.EINVAL });
        else if (which === 2)
          add(CMD.READ, 0, Math.min(0xffffffff, MAX_REQUEST + 1 + rng.int(0xffff0000)), 0, {
            error: NBD_ERR.EOVERFLOW,
          });
        else if (which === 3)
          add(CMD.READ, 0, 512, rng.pick([CMD_FLAG.NO_HOLE, CMD_FLAG.REQ_ONE, CMD_FLAG.FAST_ZERO, 0x20, 0x8000]), {
            error: NBD_ERR.EINVAL,
          });
        else if (!structured) add(CMD.READ, 0, 512, CMD_FLAG.DF, { error: NBD_ERR.EINVAL });
        else add(CMD.READ, 0, 0, 0, { error: 0, data: new Uint8Array(0), known: new Uint8Array(0) });
        break;
      }
      case 8: {
        // WRITE_ZEROES: FAST_ZERO fails (no cheap zeroing in memory) and changes nothing; else zeros.
        const off = inRange(len);
        const fast = rng.bool(0.4);
        const flags =
          (fast ? CMD_FLAG.FAST_ZERO : 0) | (rng.bool() ? CMD_FLAG.NO_HOLE : 0) | (rng.bool(0.2) ? CMD_FLAG.FUA : 0);
        if (caps.writeZeroes === 'none') {
          add(CMD.WRITE_ZEROES, off, len, flags, { error: NBD_ERR.EINVAL });
        } else if (fast && len > 0 && caps.writeZeroes !== 'native') {
          add(CMD.WRITE_ZEROES, off, len, flags, { error: NBD_ERR.ENOTSUP }); // refused up front: nothing changes
        } else if (fast && len > 0) {
          // Native zeroing may still decline here (edges, the driver): either outcome, the bytes unknown.
          add(CMD.WRITE_ZEROES, off, len, flags, { error: 0, or: NBD_ERR.ENOTSUP });
          known.fill(0, off, off + len);
        } else {
          add(CMD.WRITE_ZEROES, off, len, flags, { error: 0 });
          model.fill(0, off, off + len);
          known.fill(1, off, off + len);
        }
        break;
      }
      case 9: {
        // TRIM: contents undefined afterwards (the model forgets them).
        const off = inRange(len);
        add(CMD.TRIM, off, len, rng.bool(0.2) ? CMD_FLAG.FUA : 0, {
          error: caps.discard === 'none' ? NBD_ERR.EINVAL : 0,
        });
        if (caps.discard !== 'none') known.fill(0, off, off + len);
        break;
      }
      case 10:
        add(CMD.FLUSH, 0, 0, 0, { error: 0 });
        break;
      case 11: {
        const off = inRange(len);
        const length = rng.bool(0.2) ? 0xffffffff - off : len;
        // A CACHE past the end is EINVAL.
        add(CMD.CACHE, off, length, 0, { error: off + length > SIZE ? NBD_ERR.EINVAL : 0 });
        break;
      }
      case 12: {
        const off = inRange(Math.max(1, len));
        const length = Math.max(1, len) * (rng.bool(0.2) ? 4096 : 1);
        const bad = !contexts || off + length > SIZE;
        add(CMD.BLOCK_STATUS, off, length, rng.bool() ? CMD_FLAG.REQ_ONE : 0, { error: bad ? NBD_ERR.EINVAL : 0 });
        break;
      }
      case 13:
        add(9 + rng.int(0xfff0), rng.u32(), rng.u32(), rng.int(0x10000), { error: NBD_ERR.EINVAL });
        break;
      case 14:
        // Write-type commands past the end.
        if (rng.bool()) add(CMD.TRIM, pastEnd(1024), 1024, 0, { error: NBD_ERR.EINVAL });
        else {
          const error = caps.writeZeroes === 'none' ? NBD_ERR.EINVAL : NBD_ERR.ENOSPC;
          add(CMD.WRITE_ZEROES, pastEnd(1024), 1024, 0, { error });
        }
        break;
      default: {
        // FUA on a read-only-safe command, REQ_ONE on a write (bad flag).
        add(CMD.FLUSH, 0, 0, CMD_FLAG.REQ_ONE, { error: NBD_ERR.EINVAL });
      }
    }
  }
  // The end of the session.
  const ending = rng.int(5);
  if (ending === 0) out.push(req(CMD.DISC, 0, 0, 0));
  else if (ending === 1) {
    const bad = req(CMD.READ, 0, 512, 0);
    bad[rng.int(4)]! ^= 1 + rng.int(255);
    out.push(bad);
  } else if (ending === 2) out.push(req(CMD.READ, 0, 512, 0).subarray(0, 1 + rng.int(27)));
  else if (ending === 3) {
    out.push(req(CMD.WRITE, 0, 4096, 0));
    out.push(rng.bytes(rng.int(4096))); // cut short: not applied
  } else if (rng.bool()) {
    // A write far past the maximum: the connection is dropped without reading it.
    out.push(req(CMD.WRITE, 0, 0xffffffff, 0));
  }
  await client.write(concat(out));
  client.endWrites();
  // Every request before the end gets its reply.
  const lengthOf = (c: bigint) => {
    const e = expects.get(c);
    return e && e.type === CMD.READ ? e.length : 0;
  };
  const replies: Reply[] = [];
  for (let i = 0; i < expects.size; i++) {
    const r = structured ? await structuredReply(client) : await simpleReply(client, lengthOf);
    if (r === null) throw new Error(`connection ended after ${i} of ${expects.size} replies`);
    replies.push(r);
  }
  check((await client.readExactly(1)) === null, 'bytes after the last reply');
  await done;
  const seen = new Set<bigint>();
  for (const r of replies) {
    const e = expects.get(r.cookie);
    if (!e) throw new Error(`reply to unknown cookie ${r.cookie}`);
    if (seen.has(r.cookie)) throw new Error(`two replies to cookie ${r.cookie}`);
    seen.add(r.cookie);
    if (r.error !== e.error && r.error !== e.or) {
      throw new Error(
        `cookie ${r.cookie} (type ${e.type} at ${e.offset}+${e.length}): error ${r.error}, expected ${e.error}`,
      );
    }
    if (e.error === 0 && e.type === CMD.READ) {
      const got = structured ? assemble(r, e.offset, e.length) : r.payload!;
      check(got.length === e.length, `cookie ${r.cookie}: ${got.length} bytes read, ${e.length} asked`);
      if (e.known!.indexOf(0) < 0) {
        if (Buffer.compare(got, e.data!) !== 0) throw new Error(`cookie ${r.cookie}: read differs from the model`);
      } else
        for (let k = 0; k < e.length; k++) {
          if (e.known![k] && got[k] !== e.data![k])
            throw new Error(`cookie ${r.cookie}: read byte ${e.offset + k} differs from the model`);
        }
      if (structured && e.length > 0) {
        for (const k of r.chunks)
          check(k.type === CHUNK.OFFSET_DATA || k.type === CHUNK.OFFSET_HOLE, 'read chunk type');
      }
    }
    if (e.error === 0 && e.type === CMD.BLOCK_STATUS && structured) {
      check(
        r.chunks.length === 2 && r.chunks.every((k) => k.type === CHUNK.BLOCK_STATUS),
        `cookie ${r.cookie}: one block status chunk per context`,
      );
      for (const k of r.chunks) {
        const v = view(k.data);
        check(k.data.length >= 12 && (k.data.length - 4) % 8 === 0, 'block status chunk length');
        let total = 0;
        for (let o = 4; o < k.data.length; o += 8) {
          check(v.getUint32(o) > 0, 'extent of length 0');
          total += v.getUint32(o);
        }
        // REQ_ONE: one extent, not past the request; otherwise all but the last start inside it.
        if (e.flags & CMD_FLAG.REQ_ONE) check(k.data.length === 12 && total <= e.length, 'REQ_ONE extent');
        else check(total - v.getUint32(k.data.length - 8) < e.length, 'extents past the request');
      }
    }
    if (e.error !== 0 && structured) check(r.chunks[0]?.type === CHUNK.ERROR, 'error chunk');
  }
  return count;
}

async function checkImage(image: Image, model: Uint8Array, known: Uint8Array, where: string): Promise<void> {
  const now = await image.read(0, SIZE);
  // Unknown bytes (trimmed, or a FAST_ZERO that may have declined) become what the image holds now.
  for (let k = known.indexOf(0); k >= 0 && k < SIZE; ) {
    let e = known.indexOf(1, k);
    if (e < 0) e = SIZE;
    model.set(now.subarray(k, e), k);
    known.fill(1, k, e);
    k = known.indexOf(0, e);
  }
  if (Buffer.compare(now, model) !== 0) {
    let k = 0;
    while (now[k] === model[k]) k++;
    throw new Error(`${where}: byte ${k} is ${now[k]}, the model says ${model[k]}`);
  }
}

/** A check that costs less than expect() (called for every reply). */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(what);
}

describe('NBD protocol fuzzer', () => {
  it(`${INPUTS} malformed handshakes and requests (seed ${SEED}): no crash, no hang, bounded memory, the image equals its model`, async () => {
    const rng = new Rng(SEED);
    let inputs = 0;
    let handshakes = 0;
    let requests = 0;
    let session = 0;
    const start = process.memoryUsage();
    let peakHeap = 0;
    let peakRss = 0;
    let last = Date.now();
    const timing = { handshakes: 0, requests: 0, check: 0 };
    while (inputs < INPUTS) {
      // Each image serves a few sessions in turn, so that writes meet earlier sessions' data.
      const { image, model, readOnly } = await makeImage(rng);
      const known = new Uint8Array(SIZE).fill(1);
      for (let s = 0; s < 8 && inputs < INPUTS; s++, session++) {
        const where = `seed ${SEED} session ${session}`;
        // Every other session over a stream that shows its received bytes: the small-read fast path.
        const peek = session % 2 === 0;
        // And every other pair zero-copy (file spans read as the reply goes out).
        const zeroCopy = session % 4 >= 2;
        try {
          if (rng.bool(0.35)) {
            const t0 = performance.now();
            for (let h = 0; h < 10; h++)
              await withTimeout(handshakeInput(rng, readOnly, peek, zeroCopy), 5_000, `${where} handshake`);
            timing.handshakes += performance.now() - t0;
            handshakes += 10;
            inputs += 10;
          } else {
            const t0 = performance.now();
            const n = await withTimeout(
              requestSession(rng, image, model, known, peek, zeroCopy),
              5_000,
              `${where} requests`,
            );
            timing.requests += performance.now() - t0;
            requests += n;
            inputs += n;
          }
        } catch (e) {
          if (e instanceof HangError) throw e;
          throw new Error(`${where}: ${e instanceof Error ? e.message : String(e)}`);
        }
        const t1 = performance.now();
        await checkImage(image, model, known, where);
        timing.check += performance.now() - t1;
      }
      await image.close();
      await readOnly.close();
      if (Date.now() - last > 200) {
        last = Date.now();
        const m = process.memoryUsage();
        peakHeap = Math.max(peakHeap, m.heapUsed - start.heapUsed);
        peakRss = Math.max(peakRss, m.rss - start.rss);
        await new Promise((r) => setImmediate(r));
      }
    }
    console.log(
      `nbd fuzz: ${inputs} inputs (${handshakes} handshakes, ${requests} requests) in ${session} sessions; heap grew at most ${(peakHeap / 2 ** 20).toFixed(0)} MiB, RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB; ms in handshakes ${timing.handshakes.toFixed(0)}, requests ${timing.requests.toFixed(0)}, checks ${timing.check.toFixed(0)}`,
    );
    expect(inputs).toBeGreaterThanOrEqual(INPUTS);
    expect(peakHeap).toBeLessThan(256 * 2 ** 20);
    expect(peakRss).toBeLessThan(512 * 2 ** 20);
  });
});
