/** The client side of the NBD wire, for tests that speak the protocol by hand over a ByteStream. */
import { expect } from 'vitest';
import {
  type ByteStream,
  concat,
  encoder,
  IHAVEOPT,
  REPLY_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  u16,
  u32,
  view,
} from '../src/index.js';

export function option(opt: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(16);
  view(b).setBigUint64(0, IHAVEOPT);
  view(b).setUint32(8, opt);
  view(b).setUint32(12, data.length);
  return concat([b, data]);
}

export interface OptReply {
  option: number;
  type: number;
  data: Uint8Array;
}

export async function optReply(c: ByteStream): Promise<OptReply> {
  const h = await c.readExactly(20);
  if (h === null) throw new Error('connection closed instead of an option reply');
  const v = view(h);
  expect(v.getBigUint64(0)).toBe(REPLY_MAGIC);
  const len = v.getUint32(16);
  return { option: v.getUint32(8), type: v.getUint32(12), data: (await c.readExactly(len)) ?? new Uint8Array(0) };
}

/** Every reply to one option, up to and including the final one (ACK or an error). */
export async function optReplies(c: ByteStream): Promise<OptReply[]> {
  const out: OptReply[] = [];
  for (;;) {
    const r = await optReply(c);
    out.push(r);
    if (r.type === 1 || r.type >= 0x80000000) return out;
  }
}

export function nameAndInfos(name: string, infos: number[] = []): Uint8Array {
  const n = encoder.encode(name);
  return concat([u32(n.length), n, u16(infos.length), ...infos.map(u16)]);
}

/** A meta context option payload: export name and queries. */
export function metaQuery(name: string, queries: string[]): Uint8Array {
  const qs = queries.map((q) => concat([u32(encoder.encode(q).length), encoder.encode(q)]));
  return concat([u32(encoder.encode(name).length), encoder.encode(name), u32(qs.length), ...qs]);
}

export async function simpleReply(c: ByteStream): Promise<{ error: number; cookie: bigint }> {
  const h = await c.readExactly(16);
  if (h === null) throw new Error('connection closed instead of a reply');
  expect(view(h).getUint32(0)).toBe(SIMPLE_REPLY_MAGIC);
  return { error: view(h).getUint32(4), cookie: view(h).getBigUint64(8) };
}

export async function structuredChunks(c: ByteStream): Promise<Array<{ type: number; data: Uint8Array }>> {
  const out: Array<{ type: number; data: Uint8Array }> = [];
  for (;;) {
    const h = await c.readExactly(20);
    if (h === null) throw new Error('connection closed inside a structured reply');
    const v = view(h);
    expect(v.getUint32(0)).toBe(STRUCTURED_REPLY_MAGIC);
    const len = v.getUint32(16);
    out.push({ type: v.getUint16(6), data: (await c.readExactly(len)) ?? new Uint8Array(0) });
    if (v.getUint16(4) & 1) return out;
  }
}
