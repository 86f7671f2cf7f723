/**
 * NBD protocol constants and the fixed-size header codecs (doc/proto.md of the NBD project).
 * Every integer on the wire is big-endian.
 */

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const REPLY_MAGIC = 0x3e889045565a9n; // option replies

export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const CLIENT_FLAGS_KNOWN = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Transmission flags (the u16 sent with the export size). */
export const TFLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CMD_FLAG = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16 } as const;

export const CHUNK = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;
export const CHUNK_FLAG_DONE = 1;

/** base:allocation extent flags. */
export const STATE_HOLE = 1;
export const STATE_ZERO = 2;

/** NBD error values (the Linux numbers of the errors the protocol defines). */
export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** NBD_MAX_STRING: the longest name, description or query the protocol lets a peer send. */
export const MAX_STRING = 4096;
/**
 * The longest option payload this server acts on: room for a 4096-byte name plus meta context queries.
 * Longer ones are read (up to 16 times this, in pieces) and refused with NBD_REP_ERR_TOO_BIG; beyond
 * that the client is dropped without reading them.
 */
export const MAX_OPTION_LENGTH = 64 * 1024;
/** The largest READ/WRITE payload (qemu-nbd's NBD_MAX_BUFFER_SIZE). */
export const MAX_REQUEST = 32 * 1024 * 1024;

export const BASE_ALLOCATION = 'base:allocation';
export const ALLOCATION_DEPTH = 'qemu:allocation-depth';

/** A Linux errno (from core's errnoOf) as the NBD error value a reply carries (as qemu-nbd maps it). */
export function nbdErrorOf(errno: number): number {
  switch (errno) {
    case 1: // EPERM
    case 30: // EROFS
      return NBD_ERR.EPERM;
    case 5:
      return NBD_ERR.EIO;
    case 12:
      return NBD_ERR.ENOMEM;
    case 28: // ENOSPC
    case 27: // EFBIG
    case 122: // EDQUOT
      return NBD_ERR.ENOSPC;
    case 75:
      return NBD_ERR.EOVERFLOW;
    case 95: // ENOTSUP / EOPNOTSUPP
      return NBD_ERR.ENOTSUP;
    case 108:
      return NBD_ERR.ESHUTDOWN;
    default:
      return NBD_ERR.EINVAL;
  }
}

/** The 18-byte greeting of the fixed newstyle handshake. */
export function encodeGreeting(flags = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES): Uint8Array {
  const b = new Uint8Array(18);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, NBDMAGIC);
  v.setBigUint64(8, IHAVEOPT);
  v.setUint16(16, flags);
  return b;
}

export interface OptionHeader {
  option: number;
  length: number;
}

/** An option header (16 bytes: IHAVEOPT, option, length); throws ProtocolError on a bad magic. */
export function decodeOptionHeader(b: Uint8Array): OptionHeader {
  if (b.length !== 16) throw new ProtocolError(`option header of ${b.length} bytes`);
  const v = view(b);
  if (v.getBigUint64(0) !== IHAVEOPT) throw new ProtocolError('bad option magic');
  return { option: v.getUint32(8), length: v.getUint32(12) };
}

export function encodeOptionReply(option: number, type: number, data: Uint8Array = EMPTY): Uint8Array {
  const b = new Uint8Array(20 + data.length);
  const v = view(b);
  v.setBigUint64(0, REPLY_MAGIC);
  v.setUint32(8, option);
  v.setUint32(12, type >>> 0);
  v.setUint32(16, data.length);
  b.set(data, 20);
  return b;
}

export interface Request {
  flags: number;
  type: number;
  cookie: bigint;
  offset: number;
  length: number;
}

/** A 28-byte transmission request; throws ProtocolError on a bad magic or an offset past 2^53. */
export function decodeRequest(b: Uint8Array): Request {
  if (b.length !== 28) throw new ProtocolError(`request of ${b.length} bytes`);
  const v = view(b);
  if (v.getUint32(0) !== REQUEST_MAGIC) throw new ProtocolError('bad request magic');
  const offset = v.getBigUint64(16);
  return {
    flags: v.getUint16(4),
    type: v.getUint16(6),
    cookie: v.getBigUint64(8),
    // Offsets beyond a safe integer are beyond any export: kept as a huge number, refused by the range check.
    offset: offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(offset),
    length: v.getUint32(24),
  };
}

export function encodeRequest(r: Request): Uint8Array {
  const b = new Uint8Array(28);
  const v = view(b);
  v.setUint32(0, REQUEST_MAGIC);
  v.setUint16(4, r.flags);
  v.setUint16(6, r.type);
  v.setBigUint64(8, r.cookie);
  v.setBigUint64(16, BigInt(r.offset));
  v.setUint32(24, r.length);
  return b;
}

export function encodeSimpleReply(cookie: bigint, error: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = view(b);
  v.setUint32(0, SIMPLE_REPLY_MAGIC);
  v.setUint32(4, error);
  v.setBigUint64(8, cookie);
  return b;
}

/** A structured reply chunk header (20 bytes) for a payload of `length` bytes. */
export function encodeChunkHeader(cookie: bigint, flags: number, type: number, length: number): Uint8Array {
  const b = new Uint8Array(20);
  const v = view(b);
  v.setUint32(0, STRUCTURED_REPLY_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  v.setBigUint64(8, cookie);
  v.setUint32(16, length);
  return b;
}

/**
 * Lays out the chunks of a structured READ reply of `length` bytes at `offset` with `holes` ([start,
 * end) relative to `offset`, sorted, apart): an OFFSET_DATA chunk for each span between holes, an
 * OFFSET_HOLE chunk for each hole, DONE on the last. `header` receives each chunk header; `data(from,
 * to)` is called after a data chunk's header to add its payload. The buffered path and the
 * file-range path (file-replies.ts) both use it, so their replies are the same bytes.
 */
export function layOutReadChunks(
  cookie: bigint,
  offset: number,
  length: number,
  holes: ReadonlyArray<readonly [number, number]>,
  header: (h: Uint8Array) => void,
  data: (from: number, to: number) => void,
): void {
  const dataChunk = (from: number, to: number, last: boolean) => {
    const h = new Uint8Array(28);
    h.set(encodeChunkHeader(cookie, last ? CHUNK_FLAG_DONE : 0, CHUNK.OFFSET_DATA, 8 + to - from));
    view(h).setBigUint64(20, BigInt(offset + from));
    header(h);
    data(from, to);
  };
  let pos = 0;
  for (const [hs, he] of holes) {
    if (hs > pos) dataChunk(pos, hs, false);
    const h = new Uint8Array(32);
    h.set(encodeChunkHeader(cookie, he === length ? CHUNK_FLAG_DONE : 0, CHUNK.OFFSET_HOLE, 12));
    const v = view(h);
    v.setBigUint64(20, BigInt(offset + hs));
    v.setUint32(28, he - hs);
    header(h);
    pos = he;
  }
  if (pos < length) dataChunk(pos, length, true);
}

/** A protocol violation: the connection is dropped. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

export const EMPTY = new Uint8Array(0);
export const encoder = new TextEncoder();
export const decoder = new TextDecoder('utf-8', { fatal: true });

export function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Reads length-prefixed (u32) strings from an option payload, bounds-checked. */
export class OptionReader {
  private pos = 0;
  constructor(private readonly b: Uint8Array) {}
  get remaining(): number {
    return this.b.length - this.pos;
  }
  u16(): number {
    if (this.remaining < 2) throw new OptionInvalid('option payload too short');
    const n = view(this.b).getUint16(this.pos);
    this.pos += 2;
    return n;
  }
  u32(): number {
    if (this.remaining < 4) throw new OptionInvalid('option payload too short');
    const n = view(this.b).getUint32(this.pos);
    this.pos += 4;
    return n;
  }
  string(length = this.u32()): string {
    if (length > MAX_STRING) throw new OptionInvalid('string longer than NBD_MAX_STRING');
    if (this.remaining < length) throw new OptionInvalid('option payload too short');
    const s = this.b.subarray(this.pos, this.pos + length);
    this.pos += length;
    try {
      return decoder.decode(s);
    } catch {
      throw new OptionInvalid('string is not UTF-8');
    }
  }
}

/** A malformed option payload: answered with NBD_REP_ERR_INVALID, the handshake goes on. */
export class OptionInvalid extends Error {
  override readonly name = 'OptionInvalid';
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function u16(n: number): Uint8Array {
  const b = new Uint8Array(2);
  view(b).setUint16(0, n);
  return b;
}
export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  view(b).setUint32(0, n >>> 0);
  return b;
}
export function u64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  view(b).setBigUint64(0, BigInt(n));
  return b;
}
