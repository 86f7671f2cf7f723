/**
 * The NBD server logic over a byte stream: the fixed newstyle handshake and the transmission
 * phase for one connection. Portable: no Node built-ins; src/node.ts binds it to sockets.
 */
import { errnoOf, type Image } from '@blk/core/portable';
import {
  BASE_ALLOCATION,
  CHUNK,
  CHUNK_FLAG_DONE,
  CMD,
  CMD_FLAG,
  concat,
  decodeRequest,
  encodeChunkHeader,
  encodeSimpleReply,
  encoder,
  MAX_REQUEST,
  MAX_STRING,
  NBD_ERR,
  nbdErrorOf,
  ProtocolError,
  type Request,
  STATE_HOLE,
  STATE_ZERO,
  TFLAG,
  u16,
  u32,
  u64,
  view,
} from './protocol.js';
import { Handshake, type HandshakeOptions, type Negotiated } from './handshake.js';

/** A duplex byte stream: what a connection is to the server. */
export interface ByteStream {
  /** Exactly `n` bytes; null when the stream ended cleanly before the first of them; throws when it ends inside. */
  readExactly(n: number): Promise<Uint8Array | null>;
  /** Queues `data`; resolves when the stream can take more (backpressure). */
  write(data: Uint8Array): Promise<void>;
  /** Ends the stream (no more reads or writes). */
  close(): void;
}

export interface NbdExport {
  /** The export name ('' is the default export). */
  name: string;
  description?: string;
  image: Image;
  /** false: never announce NBD_FLAG_CAN_MULTI_CONN (a server taking one client at a time). */
  multiConn?: boolean;
}

export interface ConnectionOptions extends HandshakeOptions {
  /** Milliseconds the client has to reach transmission (default 10 s; 0: no limit). */
  handshakeTimeoutMs?: number;
  /** Timer functions (defaults: the global ones). */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

const DRAIN_CHUNK = 1024 * 1024;
/** Extents per BLOCK_STATUS reply at most (the client asks again from where it stopped). */
const MAX_EXTENTS = 4096;
/** Hole chunks are found in units of this many bytes of a read. */
const HOLE_GRANULE = 4096;

/** The transmission flags of an export, from what its image can do. */
export function transmissionFlags(image: Image, structured = false): number {
  const c = image.capabilities;
  let f = TFLAG.HAS_FLAGS;
  if (!c.write) f |= TFLAG.READ_ONLY;
  if (c.write && c.flush) f |= TFLAG.SEND_FLUSH;
  if (c.fua !== 'none') f |= TFLAG.SEND_FUA;
  if (c.discard !== 'none') f |= TFLAG.SEND_TRIM;
  if (c.writeZeroes !== 'none') f |= TFLAG.SEND_WRITE_ZEROES | TFLAG.SEND_FAST_ZERO;
  if (c.multiConn) f |= TFLAG.CAN_MULTI_CONN;
  if (structured) f |= TFLAG.SEND_DF;
  return f;
}

/** NBD_INFO_BLOCK_SIZE: minimum, preferred and maximum request sizes. */
export function blockSizes(image: Image): [number, number, number] {
  const l = image.capabilities.limits;
  // The image read-modify-writes unaligned requests, so any byte granularity works.
  const min = 1;
  let preferred = 1;
  while (preferred * 2 <= Math.min(l.preferredTransfer, MAX_REQUEST)) preferred *= 2;
  preferred = Math.max(preferred, 512);
  const max = Math.max(preferred, Math.min(l.maxTransfer, MAX_REQUEST));
  return [min, preferred, max];
}

/** One client connection: handshake (src/handshake.ts), then transmission, until it disconnects. */
export class NbdConnection {
  private neg: Negotiated = { structured: false, contexts: [], contextExport: undefined };
  private closed = false;
  private handshaking: Handshake | undefined;
  /** Set by stop(): no new request is taken; the current one finishes. */
  private stopping = false;
  /** The transmission loop is waiting for the next request header (nothing in flight). */
  private idle = false;

  constructor(
    private stream: ByteStream,
    private readonly exports: readonly NbdExport[],
    private readonly options: ConnectionOptions = {},
  ) {}

  /** Runs the connection to its end; resolves (never rejects) once the stream is closed. */
  async run(): Promise<void> {
    const setTimer = this.options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    const clearTimer = this.options.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
    const log = this.options.log;
    const limit = this.options.handshakeTimeoutMs ?? 10_000;
    let timedOut = false;
    const timer =
      limit > 0
        ? setTimer(() => {
            timedOut = true;
            this.close();
          }, limit)
        : undefined;
    let phase = 'option negotiation';
    try {
      this.handshaking = new Handshake(this.stream, this.exports, this.options);
      const chosen = await this.handshaking.run();
      if (timer !== undefined) clearTimer(timer);
      this.stream = this.handshaking.stream;
      this.handshaking = undefined;
      if (chosen) {
        log?.('info', `export '${chosen.export.name}' negotiated${chosen.tls ? ' over TLS' : ''}`);
        this.neg = chosen.negotiated;
        phase = 'transmission';
        if (!this.stopping) await this.transmission(chosen.export);
      }
    } catch (e) {
      // A protocol violation or a broken stream: drop the connection (and say why).
      const message = e instanceof Error ? e.message : String(e);
      if (timedOut) log?.('error', `${phase} failed: handshake time limit (${limit / 1000} s) reached`);
      else if (this.stopping) log?.('info', `${phase} ended by the server shutting down`);
      else if (message === 'end of stream' || message === 'closed') log?.('info', `client left during ${phase}`);
      else log?.(e instanceof ProtocolError ? 'error' : 'info', `${phase} failed: ${message}`);
    } finally {
      if (timer !== undefined) clearTimer(timer);
      this.close();
    }
  }

  /**
   * Ends the connection gently (server shutdown): a handshake is cut off; in transmission the request
   * being served finishes and its reply is sent, then the connection closes.
   */
  stop(): void {
    this.stopping = true;
    if (this.handshaking !== undefined || this.idle) this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    (this.handshaking?.stream ?? this.stream).close();
  }

  private async read(n: number): Promise<Uint8Array> {
    const b = await this.stream.readExactly(n);
    if (b === null) throw new ProtocolError('end of stream');
    return b;
  }

  /** The transmission phase: one request at a time, in order, until DISC or the end of the stream. */
  private async transmission(exp: NbdExport): Promise<void> {
    const image = exp.image;
    const contexts = this.neg.contextExport === exp.name ? this.neg.contexts : [];
    for (;;) {
      this.idle = true;
      const head = await this.stream.readExactly(28);
      this.idle = false;
      if (head === null) return;
      const req = decodeRequest(head);
      if (req.type === CMD.DISC) return;
      await this.request(image, req, contexts);
      if (this.stopping) return;
    }
  }

  private async request(image: Image, req: Request, contexts: readonly string[]): Promise<void> {
    const end = req.offset + req.length;
    const fail = (error: number, message: string) => this.error(req, error, message);
    const c = image.capabilities;
    if (req.type === CMD.WRITE) {
      // Bounded: a write payload larger than the maximum is read in chunks and thrown away.
      if (req.length > MAX_REQUEST) {
        for (let left = req.length; left > 0; left -= DRAIN_CHUNK) await this.read(Math.min(left, DRAIN_CHUNK));
        return fail(NBD_ERR.EOVERFLOW, 'request too large');
      }
      const data = await this.read(req.length);
      if (!c.write) return fail(NBD_ERR.EPERM, 'export is read-only');
      if (end > image.size) return fail(NBD_ERR.ENOSPC, 'write past the end of the export');
      if (req.flags & CMD_FLAG.FUA && c.fua === 'none') return fail(NBD_ERR.EINVAL, 'FUA not supported');
      return this.answer(req, () => image.write(req.offset, data, { fua: (req.flags & CMD_FLAG.FUA) !== 0 }));
    }
    switch (req.type) {
      case CMD.READ:
        if (req.length > MAX_REQUEST) return fail(NBD_ERR.EOVERFLOW, 'request too large');
        if (end > image.size) return fail(NBD_ERR.EINVAL, 'read past the end of the export');
        return this.readReply(image, req);
      case CMD.FLUSH:
        if (!c.write || !c.flush) return fail(NBD_ERR.EINVAL, 'flush not supported');
        return this.answer(req, () => image.flush());
      case CMD.TRIM:
        if (!c.write) return fail(NBD_ERR.EPERM, 'export is read-only');
        if (c.discard === 'none') return fail(NBD_ERR.EINVAL, 'trim not supported');
        if (end > image.size) return fail(NBD_ERR.ENOSPC, 'trim past the end of the export');
        return this.answer(req, async () => {
          await image.discard(req.offset, req.length);
          if (req.flags & CMD_FLAG.FUA) await image.flush();
        });
      case CMD.WRITE_ZEROES:
        if (!c.write) return fail(NBD_ERR.EPERM, 'export is read-only');
        if (c.writeZeroes === 'none') return fail(NBD_ERR.EINVAL, 'write zeroes not supported');
        if (end > image.size) return fail(NBD_ERR.ENOSPC, 'write past the end of the export');
        return this.answer(req, () =>
          image.writeZeroes(req.offset, req.length, {
            fua: (req.flags & CMD_FLAG.FUA) !== 0,
            mayUnmap: (req.flags & CMD_FLAG.NO_HOLE) === 0,
            noFallback: (req.flags & CMD_FLAG.FAST_ZERO) !== 0,
          }),
        );
      case CMD.BLOCK_STATUS:
        if (!this.neg.structured || contexts.length === 0) return fail(NBD_ERR.EINVAL, 'no meta context selected');
        if (req.length === 0 || end > image.size) return fail(NBD_ERR.EINVAL, 'block status past the end');
        return this.blockStatus(image, req, contexts);
      default:
        return fail(NBD_ERR.EINVAL, `command ${req.type} not supported`);
    }
  }

  /** Runs an operation and answers with its outcome (a simple reply, allowed for these commands). */
  private async answer(req: Request, op: () => Promise<void>): Promise<void> {
    try {
      await op();
    } catch (e) {
      return this.error(req, nbdErrorOf(errnoOf(e).errno), e instanceof Error ? e.message : String(e));
    }
    await this.stream.write(encodeSimpleReply(req.cookie, 0));
  }

  private async error(req: Request, error: number, message: string): Promise<void> {
    if (!this.neg.structured) {
      await this.stream.write(encodeSimpleReply(req.cookie, error));
      return;
    }
    const msg = encoder.encode(message).subarray(0, MAX_STRING);
    await this.stream.write(
      concat([
        encodeChunkHeader(req.cookie, CHUNK_FLAG_DONE, CHUNK.ERROR, 6 + msg.length),
        u32(error),
        u16(msg.length),
        msg,
      ]),
    );
  }

  private async readReply(image: Image, req: Request): Promise<void> {
    const data = new Uint8Array(req.length);
    try {
      await image.readInto(req.offset, data);
    } catch (e) {
      return this.error(req, nbdErrorOf(errnoOf(e).errno), e instanceof Error ? e.message : String(e));
    }
    if (!this.neg.structured) {
      await this.stream.write(encodeSimpleReply(req.cookie, 0));
      if (data.length > 0) await this.stream.write(data);
      return;
    }
    if (req.length === 0) {
      await this.stream.write(encodeChunkHeader(req.cookie, CHUNK_FLAG_DONE, CHUNK.NONE, 0));
      return;
    }
    if (req.flags & CMD_FLAG.DF) {
      await this.stream.write(encodeChunkHeader(req.cookie, CHUNK_FLAG_DONE, CHUNK.OFFSET_DATA, 8 + data.length));
      await this.stream.write(concat([u64(req.offset), data]));
      return;
    }
    // Data and hole chunks, judged from the bytes read (consistent with them whatever ran meanwhile).
    const runs = zeroRuns(data, HOLE_GRANULE);
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i]!;
      const flags = i === runs.length - 1 ? CHUNK_FLAG_DONE : 0;
      if (run.zero) {
        await this.stream.write(
          concat([
            encodeChunkHeader(req.cookie, flags, CHUNK.OFFSET_HOLE, 12),
            u64(req.offset + run.start),
            u32(run.length),
          ]),
        );
      } else {
        await this.stream.write(encodeChunkHeader(req.cookie, flags, CHUNK.OFFSET_DATA, 8 + run.length));
        await this.stream.write(
          concat([u64(req.offset + run.start), data.subarray(run.start, run.start + run.length)]),
        );
      }
    }
  }

  private async blockStatus(image: Image, req: Request, contexts: readonly string[]): Promise<void> {
    const one = (req.flags & CMD_FLAG.REQ_ONE) !== 0;
    // One walk of the chain serves every selected context: [length, base flags, depth value].
    const runs: Array<[number, number, number]> = [];
    try {
      for await (const s of image.map(req.offset, req.length)) {
        const flags = (s.data ? 0 : STATE_HOLE) | (s.zero ? STATE_ZERO : 0);
        const depth = s.depth === undefined ? 0 : s.depth + 1;
        runs.push([s.length, flags, depth]);
        if (one || runs.length >= MAX_EXTENTS) break;
      }
    } catch (e) {
      return this.error(req, nbdErrorOf(errnoOf(e).errno), e instanceof Error ? e.message : String(e));
    }
    for (let i = 0; i < contexts.length; i++) {
      const ctx = contexts[i]!;
      const value = (r: [number, number, number]) => (ctx === BASE_ALLOCATION ? r[1] : r[2]);
      const extents: Array<[number, number]> = [];
      for (const r of runs) {
        const last = extents[extents.length - 1];
        if (last && last[1] === value(r) && !one) last[0] += r[0];
        else extents.push([r[0], value(r)]);
        if (one) break;
      }
      const body = new Uint8Array(4 + 8 * extents.length);
      const v = view(body);
      v.setUint32(0, i + 1);
      extents.forEach(([len, f], k) => {
        v.setUint32(4 + 8 * k, len);
        v.setUint32(8 + 8 * k, f);
      });
      const flags = i === contexts.length - 1 ? CHUNK_FLAG_DONE : 0;
      await this.stream.write(concat([encodeChunkHeader(req.cookie, flags, CHUNK.BLOCK_STATUS, body.length), body]));
    }
  }
}

/** Splits `data` into alternating data and all-zero runs, whole `granule`s at a time. */
export function zeroRuns(data: Uint8Array, granule: number): Array<{ start: number; length: number; zero: boolean }> {
  const runs: Array<{ start: number; length: number; zero: boolean }> = [];
  for (let start = 0; start < data.length; start += granule) {
    const end = Math.min(data.length, start + granule);
    const zero = isZero(data, start, end);
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.length += end - start;
    else runs.push({ start, length: end - start, zero });
  }
  return runs;
}

/** True when data[start, end) is all zero bytes (four at a time where the buffer is aligned for it). */
function isZero(data: Uint8Array, start: number, end: number): boolean {
  let i = start;
  if ((data.byteOffset + i) % 4 === 0) {
    const words = new Uint32Array(data.buffer, data.byteOffset + i, Math.floor((end - i) / 4));
    for (let k = 0; k < words.length; k++) if (words[k] !== 0) return false;
    i += words.length * 4;
  }
  for (; i < end; i++) if (data[i] !== 0) return false;
  return true;
}
