/**
 * The NBD transmission phase of one connection (portable: no Node built-ins).
 *
 * Requests are read while earlier ones run and answered as they finish (out of order, cookies
 * echoed). Bounded per connection: requests in flight (`maxInFlight`) and the payload bytes they
 * hold (`maxBytesInFlight`: write payloads read, read buffers, until the reply is handed to the
 * stream). At either bound the server stops reading the stream, so a client that floods requests or
 * never reads its replies meets backpressure (its socket fills), not a growing buffer here. Each
 * reply is written as one run of `write` calls with no await between them, so the chunks of two
 * replies never interleave.
 *
 * Image calls are issued in the order requests arrive (the core's request tracker then runs
 * overlapping ones in that order, across connections too). Large reads are done in pieces with a
 * turn of the event loop between them, so a 32 MiB read on one connection does not hold back the
 * small reads of another; a write arriving while such a read of an overlapping range is under way
 * waits for it (the read keeps its place before the write).
 *
 * Small reads have a fast path (src/small-reads.ts) when the stream shows what it has received
 * (`ByteStream.peek`): the READ requests at the front of the buffered bytes are decoded in place
 * and issued at once, in order, without a promise per header; while the loop waits for bytes they
 * are answered from the stream's own arrival callback, replies written in the same turn
 * (`Image.readIntoNow`). Anything else stops the fast path and goes through the loop, so every
 * image call is still issued in arrival order.
 */
import { errnoOf, type Image } from '@blk/core/portable';
import {
  BASE_ALLOCATION,
  CHUNK,
  CHUNK_FLAG_DONE,
  CMD,
  CMD_FLAG,
  decodeRequest,
  encodeChunkHeader,
  layOutReadChunks,
  encodeSimpleReply,
  encoder,
  MAX_REQUEST,
  MAX_STRING,
  NBD_ERR,
  nbdErrorOf,
  ProtocolError,
  type Request,
  SIMPLE_REPLY_MAGIC,
  STATE_HOLE,
  STATE_ZERO,
  STRUCTURED_REPLY_MAGIC,
  TFLAG,
} from './protocol.js';
import { type FileSpan, fileReplyParts, MIN_HOLE } from './file-replies.js';
import {
  HEADER,
  replyCookie,
  SIMPLE_HEAD,
  SmallReplyBuffers,
  type SmallReadRules,
  STRUCTURED_HEAD,
  smallReadOffset,
  writeSmallReplyHeader,
} from './small-reads.js';

/** A duplex byte stream: what a connection is to the server. */
export interface ByteStream {
  /** Exactly `n` bytes; null when the stream ended cleanly before the first of them; throws when it ends inside. */
  readExactly(n: number): Promise<Uint8Array | null>;
  /**
   * Queues `data` (calls are sent in call order); resolves when the stream can take more
   * (backpressure), rejects once the stream is broken. A stream that keeps `data` until it is sent
   * (a socket) calls `sent`, when given, once it no longer needs the bytes (sent, or dropped with a
   * broken stream): the caller may then reuse the buffer. A stream that never calls it is fine too
   * (the buffer is just not reused).
   */
  write(data: Uint8Array, sent?: () => void): Promise<void>;
  /** Ends the stream (no more reads or writes). */
  close(): void;
  /**
   * Optional, with `skip` and `onArrival` (the small-read fast path, src/small-reads.ts): a view of
   * the first received chunk not read yet, without waiting (undefined: nothing buffered). A request
   * may continue in the next chunk: `readExactly` joins them.
   */
  peek?(): Uint8Array | undefined;
  /** Drops the first `n` bytes of what `peek` shows (n at most its length). */
  skip?(n: number): void;
  /**
   * Has `listener` called synchronously each time bytes arrive (`ended` false, after they are
   * buffered) and once the stream ends or fails (`ended` true; at once when it already has);
   * undefined removes it.
   */
  onArrival?(listener: ((ended: boolean) => void) | undefined): void;
  /**
   * Optional (zero-copy; src/zero-copy-node.ts on Node): sends `parts` in order, after everything
   * written before and with nothing of another call between them, bytes as given and spans from
   * host files (read by the stream itself, e.g. sendfile); resolves once sent, rejects once the
   * stream is broken. Calls `sent`, when given, once it needs neither the buffers nor the files
   * (sent, read into memory, or dropped): a read holds its range until then. Large reads of data
   * in host files use it.
   */
  sendParts?(parts: ReadonlyArray<Uint8Array | FileSpan>, sent?: () => void): Promise<void>;
}

export type { FileSpan } from './file-replies.js';

export interface TransmissionOptions {
  /** Requests in flight per connection at most (default 16, as qemu-nbd; further ones are not read yet). */
  maxInFlight?: number;
  /**
   * Payload bytes the requests in flight of one connection may hold (default 64 MiB; at least
   * `maxRequest`): write payloads and read buffers, until their reply is handed to the stream.
   */
  maxBytesInFlight?: number;
  /** The largest READ/WRITE payload (default 32 MiB, `MAX_REQUEST`; the advertised maximum block size). */
  maxRequest?: number;
  /**
   * A read of at least this many bytes is answered with hole chunks for its zero runs, found from
   * the image's block status (default 64 KiB); shorter ones are one data chunk.
   */
  sparseReadMin?: number;
  /** Reads are done in pieces of this many bytes, a turn of the event loop apart (default 1 MiB). */
  readPiece?: number;
  /** CACHE prefetches at most this many bytes per request (default 64 MiB; advisory, the rest is ignored). */
  cacheMax?: number;
  /** Lets other work run between two pieces of a large request (default: setImmediate, else setTimeout 0). */
  yieldTurn?: () => Promise<void>;
  /**
   * Small reads straight from the received bytes when the stream can show them (`ByteStream.peek`;
   * default true; src/small-reads.ts). false: every request takes the general path (tests compare).
   */
  smallReadPath?: boolean;
  /**
   * Reads of at least this many bytes go zero-copy when the stream can send file ranges
   * (`ByteStream.sendParts`) and the image says where the bytes are in host files (default 64 KiB;
   * smaller ones cost less copied than a worker thread's round trip).
   */
  zeroCopyMin?: number;
}

/** What the handshake negotiated that transmission needs. */
export interface TransmissionState {
  structured: boolean;
  /** Selected meta contexts (`base:allocation`, `qemu:allocation-depth`); context id = index + 1. */
  contexts: readonly string[];
}

/** Extents per BLOCK_STATUS reply at most (the client asks again from where it stopped). */
export const MAX_EXTENTS = 4096;
/** A write payload longer than this past the maximum is not drained: the connection is dropped. */
/** A refused write payload up to this many times the maximum is drained; a longer one drops the connection. */
const DRAIN_FACTOR = 2;
const DRAIN_PIECE = 256 * 1024;
/** Replies with at most this much payload go out as one buffer (header and data copied together). */
const SMALL_REPLY = 16 * 1024;
/** Reply buffers of large reads kept for reuse per connection, at most (bytes). */
const SPARE_BYTES = 8 * 1024 * 1024;
/** The smallest reply buffer kept for reuse. */
const SPARE_MIN = SMALL_REPLY * 2;

/** The size class of an `n`-byte reply buffer: eight classes per doubling (at most 1/8 wasted). */
function spareSize(n: number): number {
  if (n <= SPARE_MIN) return SPARE_MIN;
  const step = 2 ** Math.floor(Math.log2(n - 1)) / 8;
  return Math.ceil(n / step) * step;
}

/**
 * Reply buffers of large reads, reused once the stream has sent them (`ByteStream.write`'s
 * `sent`). A fresh buffer per reply costs a zero fill of its whole length (the JS engine clears
 * every new array) and, at a copy's rate, a garbage collection every few hundred megabytes; a reused
 * one costs neither. Each buffer only ever holds bytes this connection's client has been sent
 * already (every read fills its whole range before a reply goes out; a failed one answers with an
 * error, not the buffer), so nothing leaks between clients.
 */
class SpareBuffers {
  private readonly free = new Map<number, Uint8Array[]>();
  private bytes = 0;

  /** A buffer of at least `n` bytes (its contents are stale: the caller overwrites what it sends). */
  take(n: number): Uint8Array {
    const size = spareSize(n);
    const list = this.free.get(size);
    const b = list?.pop();
    if (b === undefined) return new Uint8Array(size);
    this.bytes -= size;
    return b;
  }

  /** Gives `b` (from `take`) back once nothing refers to its bytes any more. */
  give(b: Uint8Array): void {
    if (this.bytes + b.length > SPARE_BYTES) return;
    let list = this.free.get(b.length);
    if (list === undefined) this.free.set(b.length, (list = []));
    list.push(b);
    this.bytes += b.length;
  }
}

/** The transmission flags of an export, from what its image can do. */
export function transmissionFlags(image: Image, structured = false): number {
  const c = image.capabilities;
  let f = TFLAG.HAS_FLAGS | TFLAG.SEND_CACHE;
  if (!c.write) f |= TFLAG.READ_ONLY;
  if (c.write && c.flush) f |= TFLAG.SEND_FLUSH;
  if (c.fua !== 'none') f |= TFLAG.SEND_FUA;
  if (c.discard !== 'none') f |= TFLAG.SEND_TRIM;
  // FAST_ZERO is always answerable: with no native zeroing it fails at once with ENOTSUP, as it should.
  if (c.writeZeroes !== 'none') f |= TFLAG.SEND_WRITE_ZEROES | TFLAG.SEND_FAST_ZERO;
  // Every connection to an export shares one Image, so a flush on one covers the writes of all
  // (ImageCapabilities.multiConn); a read-only export has nothing to flush.
  if (!c.write || c.multiConn) f |= TFLAG.CAN_MULTI_CONN;
  if (structured) f |= TFLAG.SEND_DF;
  return f;
}

/** NBD_INFO_BLOCK_SIZE: minimum, preferred and maximum request sizes. */
export function blockSizes(image: Image, maxRequest = MAX_REQUEST): [number, number, number] {
  const l = image.capabilities.limits;
  // The image read-modify-writes unaligned requests, so any byte granularity works.
  const min = 1;
  let preferred = 1;
  while (preferred * 2 <= Math.min(l.preferredTransfer, maxRequest)) preferred *= 2;
  preferred = Math.max(preferred, 512);
  const max = Math.max(preferred, Math.min(l.maxTransfer, maxRequest));
  return [min, preferred, max];
}

/** The flags each command accepts (FUA is accepted on every command, as the spec asks). */
const KNOWN_FLAGS: Record<number, number> = {
  [CMD.READ]: CMD_FLAG.FUA | CMD_FLAG.DF,
  [CMD.WRITE]: CMD_FLAG.FUA,
  [CMD.DISC]: CMD_FLAG.FUA,
  [CMD.FLUSH]: CMD_FLAG.FUA,
  [CMD.TRIM]: CMD_FLAG.FUA,
  [CMD.CACHE]: CMD_FLAG.FUA,
  [CMD.WRITE_ZEROES]: CMD_FLAG.FUA | CMD_FLAG.NO_HOLE | CMD_FLAG.FAST_ZERO,
  [CMD.BLOCK_STATUS]: CMD_FLAG.FUA | CMD_FLAG.REQ_ONE,
};

/** A request refused before it ran: the reply's error and message. */
class Refusal {
  constructor(
    readonly error: number,
    readonly message: string,
  ) {}
}

function defaultYield(): () => Promise<void> {
  const g = globalThis as { setImmediate?: (fn: () => void) => unknown };
  const immediate = g.setImmediate;
  if (typeof immediate === 'function') return () => new Promise((r) => immediate(r));
  return () => new Promise((r) => setTimeout(r, 0));
}

/** The transmission phase of one connection; `run` resolves when it is over (DISC, end of stream, violation). */
export class Transmission {
  private readonly maxInFlight: number;
  private readonly maxBytes: number;
  private readonly maxRequest: number;
  private readonly sparseReadMin: number;
  private readonly readPiece: number;
  private readonly cacheMax: number;
  private readonly yieldTurn: () => Promise<void>;
  private readonly zeroCopyMin: number;
  private inFlight = 0;
  private bytes = 0;
  /** Room in the in-flight bounds (requests or bytes) came free. */
  private readonly roomFreed = new Wakeup();
  /** The last request in flight finished. */
  private readonly idle = new Wakeup();
  /** Reads under way in pieces: a later write overlapping one waits for it (see the module comment). */
  private readonly pieceReads = new Set<{ start: number; end: number; done: Promise<void> }>();
  private scratch: Uint8Array | undefined;
  private readonly spare = new SpareBuffers();
  private broken = false;
  private stopping = false;
  private stopSignal: (() => void) | undefined;
  /** The stream shows its received bytes (`ByteStream.peek`): small reads take the fast path. */
  private readonly fast: boolean;
  private readonly smallRules: SmallReadRules;
  private readonly smallBuffers = new SmallReplyBuffers();
  /** Set while the loop waits for bytes with nothing buffered: the arrival listener then takes small reads itself. */
  private readonly parked = new Wakeup();
  /** The stream ended or failed (from `onArrival`): what is buffered is read by the general path. */
  private streamEnded = false;

  constructor(
    private readonly stream: ByteStream,
    private readonly image: Image,
    private readonly state: TransmissionState,
    options: TransmissionOptions = {},
  ) {
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 16);
    this.maxRequest = options.maxRequest ?? MAX_REQUEST;
    this.maxBytes = Math.max(this.maxRequest, options.maxBytesInFlight ?? 64 * 1024 * 1024);
    this.sparseReadMin = options.sparseReadMin ?? 64 * 1024;
    this.readPiece = Math.max(4096, options.readPiece ?? 1024 * 1024);
    this.cacheMax = options.cacheMax ?? 64 * 1024 * 1024;
    this.yieldTurn = options.yieldTurn ?? defaultYield();
    this.zeroCopyMin = Math.max(1, options.zeroCopyMin ?? 64 * 1024);
    this.fast =
      options.smallReadPath !== false
      && stream.peek !== undefined
      && stream.skip !== undefined
      && stream.onArrival !== undefined;
    this.smallRules = {
      structured: state.structured,
      maxLength: Math.min(SMALL_REPLY, this.maxRequest),
      sparseReadMin: this.sparseReadMin,
    };
  }

  /** Requests now in flight and the payload bytes they hold (for tests and logs). */
  get load(): { requests: number; bytes: number } {
    return { requests: this.inFlight, bytes: this.bytes };
  }

  /**
   * Reads and runs requests until DISC, the end of the stream, a violation or `stop`; then waits for
   * those in flight. Resolves with what ended the reading when it was an error (a protocol violation,
   * a broken stream), else undefined; never rejects.
   */
  async run(): Promise<unknown> {
    let failure: unknown;
    if (this.fast) this.stream.onArrival!(this.arrived);
    try {
      await this.loop();
    } catch (e) {
      // A protocol violation or a broken stream: stop reading; what is in flight still finishes.
      failure = e;
    } finally {
      if (this.fast) this.stream.onArrival!(undefined);
      this.parked.clear();
    }
    while (this.inFlight > 0) await this.idle.wait();
    return failure;
  }

  /**
   * Ends the connection gently (server shutdown): no further request is read (one whose header is
   * already in has its payload read and runs); those in flight finish and are answered; then `run`
   * resolves and the caller closes the stream.
   */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stopSignal?.();
    this.parked.fire();
    this.roomFreed.fire();
  }

  /** The next request header, or null at the end of the stream or once `stop` was called. */
  private nextHeader(): Promise<Uint8Array | null> {
    const read = this.stream.readExactly(28);
    const stopped = new Promise<null>((r) => {
      this.stopSignal = () => r(null);
    });
    // A header read cut short by stop() is left pending; the stream's close ends it (its outcome unused).
    return Promise.race([read, stopped]).finally(() => {
      this.stopSignal = undefined;
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      while (this.inFlight >= this.maxInFlight && !this.broken && !this.stopping) await this.roomFreed.wait();
      // A reply could not be written: the client is gone; requests it left buffered are not run.
      if (this.broken || this.stopping) return;
      if (this.fast && !this.streamEnded) {
        this.takeSmallReads();
        if (this.inFlight >= this.maxInFlight || this.broken || this.stopping) continue;
        if (this.stream.peek!() === undefined) {
          // Nothing buffered: wait for bytes; the arrival listener answers the small reads they carry.
          await this.parked.wait();
          continue;
        }
      }
      const head = await this.nextHeader();
      if (head === null) return;
      const req = decodeRequest(head);
      if (req.type === CMD.DISC) return;
      const refusal = this.check(req);
      if (req.type === CMD.WRITE) {
        if (refusal !== undefined) {
          // The payload is not kept: drained in small pieces (up to a bound) to stay in step.
          if (req.length > DRAIN_FACTOR * this.maxRequest)
            throw new ProtocolError('write payload far beyond the maximum');
          await this.drain(req.length);
          this.start(req, () => this.fail(req, refusal));
          continue;
        }
        await this.reserve(req.length);
        let data: Uint8Array | null;
        try {
          data = await this.stream.readExactly(req.length);
        } catch (e) {
          this.release(req.length);
          throw e;
        }
        if (data === null && req.length > 0) {
          this.release(req.length);
          throw new ProtocolError('end of stream inside a write payload');
        }
        await this.waitForPieceReads(req.offset, req.length);
        const payload = data ?? new Uint8Array(0);
        this.start(
          req,
          () =>
            this.answer(req, () => this.image.write(req.offset, payload, { fua: (req.flags & CMD_FLAG.FUA) !== 0 })),
          req.length,
        );
        continue;
      }
      if (refusal !== undefined) {
        this.start(req, () => this.fail(req, refusal));
        continue;
      }
      switch (req.type) {
        case CMD.READ:
          await this.reserve(req.length);
          this.start(req, () => this.read(req), req.length);
          break;
        case CMD.TRIM:
        case CMD.WRITE_ZEROES:
          await this.waitForPieceReads(req.offset, req.length);
          this.start(req, () => this.answer(req, () => this.effect(req)));
          break;
        case CMD.FLUSH:
          this.start(req, () => this.answer(req, () => this.image.flush()));
          break;
        case CMD.CACHE:
          this.start(req, () => this.answer(req, () => this.cache(req)));
          break;
        case CMD.BLOCK_STATUS:
          this.start(req, () => this.blockStatus(req));
          break;
      }
    }
  }

  /** What is wrong with a request before anything runs (undefined: nothing). */
  private check(req: Request): Refusal | undefined {
    const image = this.image;
    const c = image.capabilities;
    const known = KNOWN_FLAGS[req.type];
    if (known === undefined) return new Refusal(NBD_ERR.EINVAL, `command ${req.type} not supported`);
    if ((req.flags & ~known) !== 0)
      return new Refusal(NBD_ERR.EINVAL, `flags 0x${req.flags.toString(16)} not valid here`);
    const end = req.offset + req.length;
    const writing = req.type === CMD.WRITE || req.type === CMD.WRITE_ZEROES || req.type === CMD.TRIM;
    if (writing && !c.write) return new Refusal(NBD_ERR.EPERM, 'export is read-only');
    if (writing && req.flags & CMD_FLAG.FUA && c.fua === 'none')
      return new Refusal(NBD_ERR.EINVAL, 'FUA not supported');
    switch (req.type) {
      case CMD.READ:
        if (req.flags & CMD_FLAG.DF && !this.state.structured) {
          return new Refusal(NBD_ERR.EINVAL, 'DF needs structured replies');
        }
        if (req.length > this.maxRequest) return new Refusal(NBD_ERR.EOVERFLOW, 'request too large');
        if (end > image.size) return new Refusal(NBD_ERR.EINVAL, 'read past the end of the export');
        return undefined;
      case CMD.WRITE:
        if (req.length > this.maxRequest) return new Refusal(NBD_ERR.EOVERFLOW, 'request too large');
        if (end > image.size) return new Refusal(NBD_ERR.ENOSPC, 'write past the end of the export');
        return undefined;
      case CMD.FLUSH:
        if (!c.write || !c.flush) return new Refusal(NBD_ERR.EINVAL, 'flush not supported');
        return undefined;
      case CMD.TRIM:
        if (c.discard === 'none') return new Refusal(NBD_ERR.EINVAL, 'trim not supported');
        if (end > image.size) return new Refusal(NBD_ERR.EINVAL, 'trim past the end of the export');
        return undefined;
      case CMD.WRITE_ZEROES:
        if (c.writeZeroes === 'none') return new Refusal(NBD_ERR.EINVAL, 'write zeroes not supported');
        if (end > image.size) return new Refusal(NBD_ERR.ENOSPC, 'write past the end of the export');
        return undefined;
      case CMD.CACHE:
        if (end > image.size) return new Refusal(NBD_ERR.EINVAL, 'cache past the end of the export');
        return undefined;
      case CMD.BLOCK_STATUS:
        if (!this.state.structured || this.state.contexts.length === 0) {
          return new Refusal(NBD_ERR.EINVAL, 'no meta context selected');
        }
        if (req.length === 0 || end > image.size) return new Refusal(NBD_ERR.EINVAL, 'block status past the end');
        return undefined;
      default:
        return undefined;
    }
  }

  /** Counts a request in flight (holding `bytes` of the budget) and runs it; the budget returns after its reply. */
  private start(_req: Request, work: () => Promise<void>, bytes = 0): void {
    this.inFlight++;
    let p: Promise<void>;
    try {
      p = work();
    } catch (e) {
      p = Promise.reject(e);
    }
    void p
      .catch(() => {
        // A reply that could not be written: the stream is gone; the loop sees it at its next read.
        this.broken = true;
      })
      .then(() => this.finish(bytes));
  }

  /** A request is over (its reply handed to the stream, or the stream broken): its place and bytes return. */
  private finish(bytes: number): void {
    this.inFlight--;
    this.release(bytes);
    if (this.inFlight === 0) {
      this.idle.fire();
    }
  }

  /**
   * The stream's arrival listener. While the loop is parked (nothing was buffered, no request is
   * half read), the small reads that arrived are answered here, in the stream's own callback, as a
   * bare server would; the loop wakes only for what they leave (another request, a partial header,
   * a full in-flight bound) and for the end of the stream. Otherwise the loop is busy with a request
   * (reading its payload, waiting for room) and takes the bytes in order itself.
   */
  private readonly arrived = (ended: boolean): void => {
    if (ended) this.streamEnded = true;
    if (!this.parked.waiting) return;
    if (!ended && !this.broken && !this.stopping) {
      this.takeSmallReads();
      if (this.stream.peek!() === undefined) return;
    }
    this.parked.fire();
  };

  /**
   * Answers the small reads at the front of what the stream has buffered (see src/small-reads.ts),
   * in order, until a request the fast path does not take (left for the general path), a partial
   * header, or the in-flight bounds.
   */
  private takeSmallReads(): void {
    const stream = this.stream;
    for (;;) {
      const b = stream.peek!();
      if (b === undefined || b.length < HEADER) return;
      const v = new DataView(b.buffer, b.byteOffset, b.length);
      let p = 0;
      try {
        while (p + HEADER <= b.length && this.inFlight < this.maxInFlight) {
          const offset = smallReadOffset(v, p, this.smallRules, this.image.size);
          if (offset < 0) return;
          const length = v.getUint32(p + 24);
          if (this.bytes > 0 && this.bytes + length > this.maxBytes) return;
          this.smallRead(b, p, offset, length);
          p += HEADER;
        }
        if (p + HEADER <= b.length) return;
      } finally {
        if (p > 0) stream.skip!(p);
      }
    }
  }

  /** One small read from the fast path: the header at `request[p]` is decoded (`offset`, `length`). */
  private smallRead(request: Uint8Array, p: number, offset: number, length: number): void {
    const structured = this.state.structured;
    const head = structured ? STRUCTURED_HEAD : SIMPLE_HEAD;
    const reply = this.smallBuffers.take(head + length);
    writeSmallReplyHeader(reply, structured, request, p, offset, length);
    this.inFlight++;
    this.bytes += length;
    // Read at once where the image can (its synchronous path): the reply then goes out in this
    // turn, with the others of the batch; else when the read is done.
    const pending = this.image.readIntoNow(offset, reply.subarray(head));
    if (pending === undefined) this.sendSmall(reply, length);
    else
      pending.then(
        () => this.sendSmall(reply, length),
        (e: unknown) => this.failSmall(reply, length, e),
      );
  }

  private sendSmall(reply: Uint8Array, length: number): void {
    let written: Promise<void>;
    if (this.broken) {
      written = Promise.reject(new Error('connection broken'));
    } else {
      written = this.stream.write(reply, () => this.smallBuffers.give(reply));
    }
    written.then(
      () => this.finish(length),
      () => {
        this.broken = true;
        this.finish(length);
      },
    );
  }

  private failSmall(reply: Uint8Array, length: number, e: unknown): void {
    const cookie = replyCookie(reply);
    this.smallBuffers.give(reply);
    const req: Request = { type: CMD.READ, flags: 0, cookie, offset: 0, length };
    this.sendError(req, nbdErrorOf(errnoOf(e).errno), e instanceof Error ? e.message : String(e)).then(
      () => this.finish(length),
      () => {
        this.broken = true;
        this.finish(length);
      },
    );
  }

  /** Takes `n` bytes of the budget, waiting (not reading the stream) while requests in flight hold too much. */
  private async reserve(n: number): Promise<void> {
    while (this.bytes > 0 && this.bytes + n > this.maxBytes) {
      if (this.broken) throw new ProtocolError('connection broken');
      await this.roomFreed.wait();
    }
    this.bytes += n;
  }

  private release(n: number): void {
    this.bytes -= n;
    this.roomFreed.fire();
  }

  /** Reads and drops `n` payload bytes, a small piece at a time. */
  private async drain(n: number): Promise<void> {
    for (let left = n; left > 0; ) {
      const take = Math.min(left, DRAIN_PIECE);
      const b = await this.stream.readExactly(take);
      if (b === null) throw new ProtocolError('end of stream inside a write payload');
      left -= take;
    }
  }

  private async waitForPieceReads(offset: number, length: number): Promise<void> {
    for (const r of this.pieceReads) {
      if (r.start < offset + length && offset < r.end) await r.done;
    }
  }

  /**
   * Writes one reply (its parts back to back, nothing of another reply between them); `sent` is
   * called once the stream no longer needs any of them (see `ByteStream.write`).
   */
  private send(parts: readonly Uint8Array[], sent?: () => void): Promise<void> {
    if (this.broken) return Promise.reject(new Error('connection broken'));
    if (parts.length === 1) return this.stream.write(parts[0]!, sent);
    const all: Promise<void>[] = [];
    // A stream sends in call order: once the last part is out, so are the others.
    for (let i = 0; i < parts.length; i++)
      all.push(this.stream.write(parts[i]!, i === parts.length - 1 ? sent : undefined));
    return Promise.all(all).then(() => undefined);
  }

  private fail(req: Request, r: Refusal): Promise<void> {
    return this.sendError(req, r.error, r.message);
  }

  /** Runs an operation and answers with its outcome (a simple reply, allowed for these commands). */
  private async answer(req: Request, op: () => Promise<void>): Promise<void> {
    try {
      await op();
    } catch (e) {
      let error = nbdErrorOf(errnoOf(e).errno);
      // Only a FAST_ZERO request may fail with ENOTSUP (the spec forbids it otherwise).
      if (error === NBD_ERR.ENOTSUP && !(req.type === CMD.WRITE_ZEROES && req.flags & CMD_FLAG.FAST_ZERO)) {
        error = NBD_ERR.EINVAL;
      }
      return this.sendError(req, error, e instanceof Error ? e.message : String(e));
    }
    await this.send([encodeSimpleReply(req.cookie, 0)]);
  }

  private sendError(req: Request, error: number, message: string): Promise<void> {
    if (!this.state.structured) return this.send([encodeSimpleReply(req.cookie, error)]);
    const msg = encoder.encode(message).subarray(0, Math.min(MAX_STRING, 1024));
    const b = new Uint8Array(20 + 6 + msg.length);
    b.set(encodeChunkHeader(req.cookie, CHUNK_FLAG_DONE, CHUNK.ERROR, 6 + msg.length));
    const v = new DataView(b.buffer);
    v.setUint32(20, error);
    v.setUint16(24, msg.length);
    b.set(msg, 26);
    return this.send([b]);
  }

  private effect(req: Request): Promise<void> {
    const fua = (req.flags & CMD_FLAG.FUA) !== 0;
    if (req.type === CMD.TRIM) {
      return (async () => {
        await this.image.discard(req.offset, req.length);
        if (fua) await this.image.flush();
      })();
    }
    return this.image.writeZeroes(req.offset, req.length, {
      fua,
      mayUnmap: (req.flags & CMD_FLAG.NO_HOLE) === 0,
      noFallback: (req.flags & CMD_FLAG.FAST_ZERO) !== 0,
    });
  }

  /** CACHE: reads the range through the image (its caches, the page cache), bounded, and drops the bytes. */
  private async cache(req: Request): Promise<void> {
    const end = req.offset + Math.min(req.length, this.cacheMax);
    const piece = Math.min(this.readPiece, 1024 * 1024);
    if (end <= req.offset) return;
    if (this.scratch === undefined || this.scratch.length < Math.min(piece, end - req.offset)) {
      this.scratch = new Uint8Array(Math.min(piece, end - req.offset));
    }
    const step = this.scratch.length;
    for (let pos = req.offset; pos < end; pos += step) {
      const n = Math.min(step, end - pos);
      await this.image.readInto(pos, this.scratch!.subarray(0, n));
      if (pos + n < end) await this.yieldTurn();
    }
  }

  private async read(req: Request): Promise<void> {
    const sparse = this.state.structured && req.length >= this.sparseReadMin && (req.flags & CMD_FLAG.DF) === 0;
    // Decided now, in the turn the request arrived: the read takes its tracker place before any later request.
    if (this.stream.sendParts !== undefined && req.length >= this.zeroCopyMin && this.image.fileRunsPossible)
      return this.readFiles(req, sparse);
    if (!sparse && req.length <= SMALL_REPLY && req.length > 0) return this.readSmall(req);
    // Room for the reply's header before the data: a reply without holes goes out as one buffer
    // (one write, no header allocated apart, no iovec of two parts).
    const head = this.state.structured ? 28 : 16;
    const buffer = this.spare.take(head + req.length);
    const data = buffer.subarray(head, head + req.length);
    /** Zero runs to send as holes: [start, end) relative to the request. */
    const holes: Array<[number, number]> = [];
    try {
      if (req.length <= this.readPiece) {
        if (sparse) this.collectHoles(await this.image.readMapped(req.offset, data), req.offset, holes);
        else await this.image.readInto(req.offset, data);
      } else {
        let release!: () => void;
        const entry = {
          start: req.offset,
          end: req.offset + req.length,
          done: new Promise<void>((r) => {
            release = r;
          }),
        };
        this.pieceReads.add(entry);
        try {
          for (let pos = 0; pos < req.length; pos += this.readPiece) {
            if (pos > 0) await this.yieldTurn();
            const part = data.subarray(pos, Math.min(req.length, pos + this.readPiece));
            if (sparse) this.collectHoles(await this.image.readMapped(req.offset + pos, part), req.offset, holes);
            else await this.image.readInto(req.offset + pos, part);
          }
        } finally {
          this.pieceReads.delete(entry);
          release();
        }
      }
    } catch (e) {
      this.spare.give(buffer);
      return this.sendError(req, nbdErrorOf(errnoOf(e).errno), e instanceof Error ? e.message : String(e));
    }
    const sent = () => this.spare.give(buffer);
    const whole = buffer.subarray(0, head + req.length);
    const v = new DataView(buffer.buffer, buffer.byteOffset, head);
    if (!this.state.structured) {
      v.setUint32(0, SIMPLE_REPLY_MAGIC);
      v.setUint32(4, 0);
      v.setBigUint64(8, req.cookie);
      return this.send([whole], sent);
    }
    // Short zero runs go as data: a hole chunk costs 32 bytes and a turn of the client's parser.
    for (let i = holes.length - 1; i >= 0; i--) if (holes[i]![1] - holes[i]![0] < MIN_HOLE) holes.splice(i, 1);
    if (req.length === 0) {
      this.spare.give(buffer);
      return this.send([encodeChunkHeader(req.cookie, CHUNK_FLAG_DONE, CHUNK.NONE, 0)]);
    }
    if (holes.length === 0) {
      // All data: one chunk, its header in the room left before the data.
      v.setUint32(0, STRUCTURED_REPLY_MAGIC);
      v.setUint16(4, CHUNK_FLAG_DONE);
      v.setUint16(6, CHUNK.OFFSET_DATA);
      v.setBigUint64(8, req.cookie);
      v.setUint32(16, 8 + req.length);
      v.setBigUint64(20, BigInt(req.offset));
      return this.send([whole], sent);
    }
    const parts: Uint8Array[] = [];
    layOutReadChunks(
      req.cookie,
      req.offset,
      req.length,
      holes,
      (h) => parts.push(h),
      (from, to) => parts.push(data.subarray(from, to)),
    );
    return this.send(parts, sent);
  }

  /**
   * A read answered from host file ranges (`ByteStream.sendParts`, src/file-replies.ts). The image
   * holds the read in its request tracker until the stream has sent the ranges, so a write issued
   * after this read (on any connection) changes the file only afterwards: the reply carries
   * exactly what a buffered read would have, never bytes of a later write, even when the write's
   * reply would go out first. Rejects only when the stream broke.
   */
  private async readFiles(req: Request, sparse: boolean): Promise<void> {
    let sending = false;
    let reply: Promise<void> | undefined;
    try {
      await this.image.readFileRuns(req.offset, req.length, (runs) => {
        sending = true;
        if (this.broken) return Promise.reject(new Error('connection broken'));
        const shape = {
          cookie: req.cookie,
          offset: req.offset,
          length: req.length,
          structured: this.state.structured,
          sparse,
        };
        // The range is held until the stream no longer needs the files (`sent`: sent, or read into
        // memory because the client stopped reading), not until the client has read the reply: a
        // client that reads nothing must not hold writes of others to the range.
        return new Promise<void>((resolve, reject) => {
          reply = this.stream.sendParts!(fileReplyParts(shape, runs), resolve);
          reply.then(resolve, reject);
        });
      });
      await reply;
    } catch (e) {
      // The stream broke while sending: as any failed reply (start() marks the connection broken).
      if (sending) throw e;
      await this.sendError(req, nbdErrorOf(errnoOf(e).errno), e instanceof Error ? e.message : String(e));
    }
  }

  /**
   * A short read answered with one data chunk (or a simple reply): read straight into the reply
   * buffer behind its header, one allocation and one write.
   */
  private async readSmall(req: Request): Promise<void> {
    const structured = this.state.structured;
    const head = structured ? 28 : 16;
    const b = new Uint8Array(head + req.length);
    try {
      await this.image.readInto(req.offset, b.subarray(head));
    } catch (e) {
      return this.sendError(req, nbdErrorOf(errnoOf(e).errno), e instanceof Error ? e.message : String(e));
    }
    const v = new DataView(b.buffer);
    if (structured) {
      v.setUint32(0, STRUCTURED_REPLY_MAGIC);
      v.setUint16(4, CHUNK_FLAG_DONE);
      v.setUint16(6, CHUNK.OFFSET_DATA);
      v.setBigUint64(8, req.cookie);
      v.setUint32(16, 8 + req.length);
      v.setBigUint64(20, BigInt(req.offset));
    } else {
      v.setUint32(0, SIMPLE_REPLY_MAGIC);
      v.setBigUint64(8, req.cookie);
    }
    return this.send([b]);
  }

  /** Adds the zero runs of a mapped read to `holes` ([start, end) relative to the request), merging neighbours. */
  private collectHoles(
    runs: ReadonlyArray<{ start: number; length: number; zero: boolean }>,
    base: number,
    holes: Array<[number, number]>,
  ): void {
    for (const r of runs) {
      if (!r.zero || r.length <= 0) continue;
      const s = r.start - base;
      const last = holes[holes.length - 1];
      if (last && last[1] === s) last[1] = s + r.length;
      else holes.push([s, s + r.length]);
    }
  }

  private async blockStatus(req: Request): Promise<void> {
    const one = (req.flags & CMD_FLAG.REQ_ONE) !== 0;
    const contexts = this.state.contexts;
    // One walk of the chain serves every selected context: [length, base flags, depth value].
    const runs: Array<[number, number, number]> = [];
    try {
      for await (const s of this.image.map(req.offset, req.length)) {
        const flags = (s.data ? 0 : STATE_HOLE) | (s.zero ? STATE_ZERO : 0);
        const depth = s.depth === undefined ? 0 : s.depth + 1;
        runs.push([s.length, flags, depth]);
        if (one || runs.length >= MAX_EXTENTS) break;
      }
    } catch (e) {
      return this.sendError(req, nbdErrorOf(errnoOf(e).errno), e instanceof Error ? e.message : String(e));
    }
    const parts: Uint8Array[] = [];
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
      const body = new Uint8Array(20 + 4 + 8 * extents.length);
      body.set(
        encodeChunkHeader(
          req.cookie,
          i === contexts.length - 1 ? CHUNK_FLAG_DONE : 0,
          CHUNK.BLOCK_STATUS,
          4 + 8 * extents.length,
        ),
      );
      const v = new DataView(body.buffer);
      v.setUint32(20, i + 1);
      extents.forEach(([len, f], k) => {
        v.setUint32(24 + 8 * k, len);
        v.setUint32(28 + 8 * k, f);
      });
      parts.push(body);
    }
    return this.send(parts);
  }
}

/**
 * One waiter at a time (the connection's loop, or its drain at the end) for one kind of event:
 * `fire` wakes it, if any; `waiting` tells whether someone waits.
 */
class Wakeup {
  private resolve: (() => void) | undefined;
  get waiting(): boolean {
    return this.resolve !== undefined;
  }
  wait(): Promise<void> {
    return new Promise((r) => {
      this.resolve = r;
    });
  }
  fire(): void {
    const r = this.resolve;
    this.resolve = undefined;
    r?.();
  }
  /** Forgets the waiter without waking it. */
  clear(): void {
    this.resolve = undefined;
  }
}
