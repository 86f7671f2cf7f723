/** Test helpers: a client side of the transmission phase over a pipe end (requests out, replies parsed). */
import type { Image } from '@blk/core';
import {
  CHUNK,
  CHUNK_FLAG_DONE,
  encodeRequest,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  Transmission,
  type ByteStream,
  type TransmissionOptions,
  type TransmissionState,
} from '../src/index.js';
import { pipe } from './pipe.js';

/**
 * Serves `image` over an in-memory pipe (`pipeOptions.peek`: see pipe()): the transmission phase
 * runs on `server` with `state` (default: structured replies, no meta context); the test speaks on
 * `client`; `done` settles when the run has ended and the server end is closed.
 */
export function servePipe(
  image: Image,
  state: Partial<TransmissionState> = {},
  options: TransmissionOptions = {},
  pipeOptions: { peek?: boolean } = {},
) {
  const [client, server] = pipe(pipeOptions);
  const t = new Transmission(server, image, { structured: true, contexts: [], ...state }, options);
  const done = t.run().then(() => server.close());
  return { client, server, t, done };
}

export interface Chunk {
  flags: number;
  type: number;
  cookie: bigint;
  data: Uint8Array;
}

export interface Reply {
  cookie: bigint;
  /** Simple replies: the error; structured: the error of an error chunk, else 0. */
  error: number;
  chunks: Chunk[];
  /** Simple replies to a read: the payload. */
  payload?: Uint8Array;
}

export function req(type: number, offset: number, length: number, cookie: bigint | number = 1n, flags = 0): Uint8Array {
  return encodeRequest({ type, flags, cookie: BigInt(cookie), offset, length });
}

/**
 * Reads one structured reply (all chunks up to DONE); fails when a chunk of another cookie comes
 * between two chunks of one reply (replies must be atomic here).
 */
export async function structuredReply(c: ByteStream): Promise<Reply | null> {
  const chunks: Chunk[] = [];
  for (;;) {
    const m = await c.readExactly(4);
    if (m === null) {
      if (chunks.length === 0) return null;
      throw new Error('stream ended inside a reply');
    }
    const magic = new DataView(m.buffer, m.byteOffset, 4).getUint32(0);
    if (magic === SIMPLE_REPLY_MAGIC && chunks.length === 0) {
      // Allowed after structured replies were negotiated for replies without payload.
      const rest = (await c.readExactly(12))!;
      const v = new DataView(rest.buffer, rest.byteOffset, 12);
      return { cookie: v.getBigUint64(4), error: v.getUint32(0), chunks: [] };
    }
    if (magic !== STRUCTURED_REPLY_MAGIC) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
    const h = (await c.readExactly(16))!;
    const v = new DataView(h.buffer, h.byteOffset, 16);
    const len = v.getUint32(12);
    const data = len > 0 ? (await c.readExactly(len))! : new Uint8Array(0);
    const chunk = { flags: v.getUint16(0), type: v.getUint16(2), cookie: v.getBigUint64(4), data };
    if (chunks.length > 0 && chunk.cookie !== chunks[0]!.cookie) {
      throw new Error(`chunk of cookie ${chunk.cookie} inside the reply to ${chunks[0]!.cookie}`);
    }
    chunks.push(chunk);
    if (chunk.flags & CHUNK_FLAG_DONE) break;
  }
  const err = chunks.find((k) => k.type & 0x8000);
  const error = err ? new DataView(err.data.buffer, err.data.byteOffset).getUint32(0) : 0;
  return { cookie: chunks[0]!.cookie, error, chunks };
}

/** Reads one simple reply; `readLength(cookie)` says how many payload bytes follow a successful one. */
export async function simpleReply(c: ByteStream, readLength: (cookie: bigint) => number): Promise<Reply | null> {
  const h = await c.readExactly(16);
  if (h === null) return null;
  const v = new DataView(h.buffer, h.byteOffset, 16);
  if (v.getUint32(0) !== SIMPLE_REPLY_MAGIC) throw new Error('bad simple reply magic');
  const error = v.getUint32(4);
  const cookie = v.getBigUint64(8);
  const n = error === 0 ? readLength(cookie) : 0;
  const payload = n > 0 ? (await c.readExactly(n))! : new Uint8Array(0);
  return { cookie, error, chunks: [], payload };
}

/** The bytes a structured read reply describes over [offset, offset + length) (holes as zeros); throws on gaps/overlaps. */
export function assemble(reply: Reply, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const covered = new Uint8Array(length);
  for (const k of reply.chunks) {
    if (k.type === CHUNK.NONE) continue;
    const v = new DataView(k.data.buffer, k.data.byteOffset, k.data.length);
    const at = Number(v.getBigUint64(0)) - offset;
    const n = k.type === CHUNK.OFFSET_DATA ? k.data.length - 8 : k.type === CHUNK.OFFSET_HOLE ? v.getUint32(8) : -1;
    if (n < 0) throw new Error(`unexpected chunk type ${k.type}`);
    if (at < 0 || at + n > length) throw new Error('chunk outside the request');
    for (let i = at; i < at + n; i++) {
      if (covered[i]) throw new Error('overlapping chunks');
      covered[i] = 1;
    }
    if (k.type === CHUNK.OFFSET_DATA) out.set(k.data.subarray(8), at);
  }
  if (!covered.every((b) => b === 1)) throw new Error('chunks do not cover the request');
  return out;
}
