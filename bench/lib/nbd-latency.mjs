/**
 * A minimal NBD client for timing single requests (bench row nbd-fair): fixed newstyle handshake
 * with NBD_OPT_EXPORT_NAME (simple replies), then READs one at a time, each timed from the request
 * written to the last byte of its reply read. qemu-img bench only reports a total; a fairness
 * measure needs the latency of each small read.
 */
import * as net from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const OPT_EXPORT_NAME = 1;
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;

/** Connects to a Unix socket and negotiates the default export; resolves with { size, read, close }. */
export async function connectNbd(socketPath) {
  const socket = net.connect(socketPath);
  socket.setNoDelay(true);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let buffered = Buffer.alloc(0);
  let waiter;
  let failure;
  socket.on('data', (b) => {
    buffered = buffered.length === 0 ? b : Buffer.concat([buffered, b]);
    waiter?.();
  });
  socket.on('error', (e) => {
    failure = e;
    waiter?.();
  });
  socket.on('close', () => {
    failure ??= new Error('connection closed');
    waiter?.();
  });
  const take = async (n) => {
    while (buffered.length < n) {
      if (failure) throw failure;
      await new Promise((r) => {
        waiter = r;
      });
      waiter = undefined;
    }
    const out = buffered.subarray(0, n);
    buffered = buffered.subarray(n);
    return out;
  };

  const greeting = await take(18);
  if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) {
    throw new Error('not a fixed newstyle NBD server');
  }
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
  const option = Buffer.alloc(16);
  option.writeBigUInt64BE(IHAVEOPT, 0);
  option.writeUInt32BE(OPT_EXPORT_NAME, 8);
  option.writeUInt32BE(0, 12);
  socket.write(Buffer.concat([clientFlags, option]));
  const info = await take(10);
  const size = Number(info.readBigUInt64BE(0));

  let cookie = 0n;
  const request = Buffer.alloc(28);
  request.writeUInt32BE(REQUEST_MAGIC, 0);
  /** Reads `length` bytes at `offset`; resolves with the milliseconds it took. */
  const read = async (offset, length) => {
    request.writeUInt16BE(0, 4);
    request.writeUInt16BE(0, 6);
    request.writeBigUInt64BE(++cookie, 8);
    request.writeBigUInt64BE(BigInt(offset), 16);
    request.writeUInt32BE(length, 24);
    const t0 = performance.now();
    socket.write(request);
    const reply = await take(16);
    if (reply.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC || reply.readBigUInt64BE(8) !== cookie) {
      throw new Error('unexpected NBD reply');
    }
    const error = reply.readUInt32BE(4);
    if (error !== 0) throw new Error(`NBD read error ${error}`);
    await take(length);
    return performance.now() - t0;
  };
  const close = () => socket.destroy();
  return { size, read, close };
}

/** Latencies (ms) of `count` reads of `length` bytes one at a time, stepping through the export. */
export async function readLatencies(client, count, length = 4096) {
  const out = new Array(count);
  const span = Math.max(length, client.size - length);
  for (let i = 0; i < count; i++) out[i] = await client.read((i * 1048573 * 4096) % span, length);
  return out;
}

/** The q-quantile (0..1) of a list of numbers. */
export function quantile(list, q) {
  const s = [...list].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
