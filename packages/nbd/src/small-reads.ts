/**
 * The small-read fast path of the transmission phase (portable: no Node built-ins).
 *
 * A 4 KiB read is most of what a guest or `qemu-img bench` sends, and at that size the server's own
 * layers (a promise per header read, a request object, a promise chain per request, a fresh reply
 * buffer) cost as much as the read itself. So when a stream can show the bytes it has already
 * received (`ByteStream.peek`), the transmission decodes the READ requests found there straight
 * from the received chunk (this module), issues them to the image in arrival order without a turn
 * of the event loop between them, and answers each from a reused reply buffer. Every other request,
 * and any read this module declines (flags, range, size, a budget that is full), goes through the
 * general path, in order: the fast path stops at the first request it does not take.
 */
import {
  CMD,
  CMD_FLAG,
  CHUNK,
  CHUNK_FLAG_DONE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from './protocol.js';

/** A request header's length on the wire. */
export const HEADER = 28;
/** Reply headers before a read's payload: a simple reply (16), a structured OFFSET_DATA chunk (28). */
export const SIMPLE_HEAD = 16;
export const STRUCTURED_HEAD = 28;

/** What decides whether a read takes the fast path (fixed per connection, but `size` per request). */
export interface SmallReadRules {
  structured: boolean;
  /** The longest read taken (at most the general path's one-buffer reply size and the request maximum). */
  maxLength: number;
  /** Structured reads at least this long without DF are answered with hole chunks: not taken. */
  sparseReadMin: number;
}

/** 2^53 / 2^32: an offset whose high word reaches this is beyond any export (and any safe integer). */
const HIGH_LIMIT = 2 ** 21;

/**
 * The offset of the READ request whose header starts at `p` of `v` when the fast path takes it,
 * else -1 (not a READ, flags it cannot answer here, a zero or long length, past the end of the
 * export, a bad magic: the general path answers or refuses those).
 */
export function smallReadOffset(v: DataView, p: number, rules: SmallReadRules, size: number): number {
  if (v.getUint32(p) !== REQUEST_MAGIC || v.getUint16(p + 6) !== CMD.READ) return -1;
  const flags = v.getUint16(p + 4);
  if ((flags & ~(CMD_FLAG.FUA | CMD_FLAG.DF)) !== 0) return -1;
  const df = (flags & CMD_FLAG.DF) !== 0;
  if (df && !rules.structured) return -1;
  const length = v.getUint32(p + 24);
  if (length === 0 || length > rules.maxLength) return -1;
  if (rules.structured && !df && length >= rules.sparseReadMin) return -1;
  const high = v.getUint32(p + 16);
  if (high >= HIGH_LIMIT) return -1;
  const offset = high * 2 ** 32 + v.getUint32(p + 20);
  return offset + length <= size ? offset : -1;
}

/**
 * Writes the header of a read's reply into `reply` (its payload follows at `SIMPLE_HEAD` or
 * `STRUCTURED_HEAD`): the request's cookie is copied from `request[p + 8 ..]` as bytes.
 */
export function writeSmallReplyHeader(
  reply: Uint8Array,
  structured: boolean,
  request: Uint8Array,
  p: number,
  offset: number,
  length: number,
): void {
  const v = new DataView(reply.buffer, reply.byteOffset, reply.length);
  if (structured) {
    v.setUint32(0, STRUCTURED_REPLY_MAGIC);
    v.setUint16(4, CHUNK_FLAG_DONE);
    v.setUint16(6, CHUNK.OFFSET_DATA);
    v.setUint32(16, 8 + length);
    v.setUint32(20, Math.floor(offset / 2 ** 32));
    v.setUint32(24, offset % 2 ** 32);
  } else {
    v.setUint32(0, SIMPLE_REPLY_MAGIC);
    v.setUint32(4, 0);
  }
  for (let i = 8; i < 16; i++) reply[i] = request[p + i]!;
}

/** The cookie of a reply built by `writeSmallReplyHeader`. */
export function replyCookie(reply: Uint8Array): bigint {
  return new DataView(reply.buffer, reply.byteOffset, 16).getBigUint64(8);
}

/** Reply buffers kept for reuse per connection, at most (bytes). */
const KEPT_BYTES = 256 * 1024;

/**
 * Reply buffers of small reads, by exact length, reused once the stream has sent them
 * (`ByteStream.write`'s `sent`): a fresh typed array per reply costs an allocation, a zero fill and
 * garbage-collector work, about as much as the read it carries. A buffer only ever holds bytes
 * already sent to this connection's client (a read fills its whole payload before the reply goes
 * out; a failed one is answered with an error, not the buffer), so nothing leaks between clients.
 */
export class SmallReplyBuffers {
  private readonly free = new Map<number, Uint8Array[]>();
  private bytes = 0;

  /** A buffer of exactly `n` bytes (its contents are stale: the caller overwrites all of them). */
  take(n: number): Uint8Array {
    const b = this.free.get(n)?.pop();
    if (b === undefined) return new Uint8Array(n);
    this.bytes -= n;
    return b;
  }

  /** Gives `b` (from `take`) back once nothing refers to its bytes any more. */
  give(b: Uint8Array): void {
    if (this.bytes + b.length > KEPT_BYTES) return;
    let list = this.free.get(b.length);
    if (list === undefined) this.free.set(b.length, (list = []));
    list.push(b);
    this.bytes += b.length;
  }
}
