/**
 * Zero-copy replies on a plain Node socket (`SocketStream.sendParts`): a reply whose data lies in
 * host files is written by a native worker thread with sendfile(2) (`SocketSender`, from
 * @blk/native), not read into a buffer and written by the main thread. Why: on a page-cached image
 * those two copies and the main thread's socket writes are what keeps a Node NBD server at about
 * half of nbdkit (bench/experiments/nbd-sendfile/README.md).
 *
 * The socket has one writer at a time. A native job takes it only while Node's own write queue for
 * it is empty (every `socket.write` called back); while a job runs or waits, every later write
 * (replies of other requests, small ones too) is queued here, in order, and goes out with the next
 * job (or through `socket.write` once no file range is queued). So the byte order on the wire is the
 * order of the calls, as with `socket.write` alone.
 */
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as os from 'node:os';
import type { FileSpan } from './transmission.js';

/** What @blk/native's `nativeSocketSender()` gives (see its send module). */
export interface SocketSender {
  sendv(sockFd: number, data: Uint8Array, plan: Float64Array, done: (errno: number, sent: number) => void): () => void;
}

/** Parts of one call, sent in order, and its outcome. */
interface Item {
  parts: ReadonlyArray<Uint8Array | FileSpan>;
  /** Has a host file range (else `socket.write` can send it). */
  files: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
  /** Called once the item needs neither its buffers nor its files (sent, read into memory, or dropped). */
  sent?: (() => void) | undefined;
  /** In a job (its file ranges are being sent, not to be read into memory here). */
  taken?: boolean;
  /** Its file ranges are being read into memory (`capture`). */
  capturing?: boolean;
}

const EMPTY = new Uint8Array(0);
const { EAGAIN } = os.constants.errno;
/**
 * A job gives its pool thread back after 200 ms without the peer reading (native/send.c); the rest
 * is sent after this many ms, doubling (to MAX_RETRY_MS) while the peer still reads nothing, so a
 * stalled client holds a pool thread a small part of the time, not for good.
 */
const FIRST_RETRY_MS = 10;
const MAX_RETRY_MS = 1000;

export class ZeroCopyWriter {
  private queue: Item[] = [];
  /** The running job's cancel, while one runs. */
  private cancelJob: (() => void) | undefined;
  /** `socket.write` calls not called back yet: a job may start only at 0 (no write of Node's in flight). */
  private socketWrites = 0;
  private failure: Error | undefined;
  /**
   * The peer read nothing for 200 ms (a job gave EAGAIN) and has not caught up since: file ranges
   * are read into memory (`capture`) instead of being held until the peer reads, so a client that
   * stops reading holds no read's range (and no write of another client to it) for more than that.
   */
  private stalled = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly sender: SocketSender,
  ) {
    // A closing socket: a job waiting for a peer that stopped reading gives up (ECANCELED).
    socket.once('close', () => this.cancelJob?.());
  }

  /** Writes must go through `enqueue` (a job runs or is waiting): keeps the wire order. */
  get holding(): boolean {
    return this.cancelJob !== undefined || this.queue.length > 0;
  }

  /** Counts a `socket.write` of the caller's; returns the callback to pass to it, wrapping `cb`. */
  trackWrite(cb: (e?: Error | null) => void): (e?: Error | null) => void {
    this.socketWrites++;
    return (e) => {
      this.socketWrites--;
      cb(e);
      if (this.socketWrites === 0) this.start();
    };
  }

  /** Queues parts behind what is queued; resolves once they are sent, rejects once the socket broke. */
  enqueue(parts: ReadonlyArray<Uint8Array | FileSpan>, sent?: () => void): Promise<void> {
    if (this.failure !== undefined || this.socket.destroyed) {
      sent?.();
      return Promise.reject(this.failure ?? new Error('connection closed'));
    }
    const files = parts.some((p) => !(p instanceof Uint8Array));
    return new Promise<void>((resolve, reject) => {
      const item: Item = { parts, files, resolve, reject, sent };
      this.queue.push(item);
      if (this.stalled && files) this.capture(item);
      this.start();
    });
  }

  /** Starts the next job when the socket is free: no job running, Node's write queue empty. */
  private start(): void {
    if (this.cancelJob !== undefined || this.queue.length === 0) return;
    if (this.socketWrites > 0) return; // trackWrite's callback starts it
    if (this.socket.writableLength > 0) {
      // Bytes Node still holds that did not come through trackWrite: wait until they are out.
      this.socket.write(
        EMPTY,
        this.trackWrite(() => undefined),
      );
      return;
    }
    const fd = socketFd(this.socket);
    if (fd === undefined) {
      this.fail(new Error('connection closed'));
      return;
    }
    // Everything written before is out: the peer reads again, file ranges may wait for it again.
    this.stalled = false;
    // No file range queued (small replies behind a finished job): Node's own write path, in order.
    if (!this.queue.some((i) => i.files)) {
      const items = this.queue;
      this.queue = [];
      for (const item of items) {
        for (let k = 0; k < item.parts.length; k++) {
          const last = k === item.parts.length - 1;
          this.socket.write(
            item.parts[k] as Uint8Array,
            this.trackWrite((e) => {
              if (!last) return;
              once(item);
              if (e) item.reject(e);
              else item.resolve();
            }),
          );
        }
      }
      return;
    }
    const items = this.queue;
    this.queue = [];
    const { data, plan } = planOf(items);
    // Their bytes are copied into `data`: the callers may reuse their buffers now (file ranges:
    // once sent, or read into memory).
    for (const item of items) {
      item.taken = true;
      if (!item.files) once(item);
    }
    this.run(fd, data, plan, items, FIRST_RETRY_MS);
  }

  /** Runs one job; on EAGAIN (a peer not reading) sends the rest after `retryMs`. */
  private run(fd: number, data: Uint8Array, plan: Float64Array, items: Item[], retryMs: number): void {
    this.cancelJob = this.sender.sendv(fd, data, plan, (errno, sent) => {
      this.cancelJob = undefined;
      if (errno === EAGAIN) {
        if (!this.stalled) {
          // The peer stopped reading: the file ranges of this job and of those queued are read
          // into memory now, and their holds end (see `stalled`); the rest goes out later.
          this.stalled = true;
          for (const item of this.queue) if (item.files) this.capture(item);
          this.captureJob(data, planAfter(plan, sent), items, next(sent, retryMs));
          return;
        }
        const rest = planAfter(plan, sent);
        this.retry(data, rest, items, retryMs, next(sent, retryMs));
        return;
      }
      if (errno !== 0) {
        this.failItems(items, new Error(`sendfile to the client failed (errno ${errno})`));
        return;
      }
      for (const item of items) {
        once(item);
        item.resolve();
      }
      this.start();
    });
  }

  /** Sends the rest of a job after `waitMs` (the socket stays held meanwhile). */
  private retry(data: Uint8Array, rest: Float64Array, items: Item[], waitMs: number, nextMs: number): void {
    const timer = setTimeout(() => {
      this.cancelJob = undefined;
      const again = socketFd(this.socket);
      if (again === undefined) this.failItems(items, new Error('connection closed'));
      else this.run(again, data, rest, items, nextMs);
    }, waitMs);
    // Still holding the socket: a close meanwhile fails the job at once.
    this.cancelJob = () => {
      clearTimeout(timer);
      this.cancelJob = undefined;
      this.failItems(items, new Error('connection closed'));
    };
  }

  /**
   * Reads the file ranges left in a stalled job's `rest` into memory, ends the holds of its items
   * (`sent`), and sends the rest from memory once the peer reads again.
   */
  private captureJob(data: Uint8Array, rest: Float64Array, items: Item[], nextMs: number): void {
    let closed = false;
    this.cancelJob = () => {
      closed = true;
    };
    void planParts(data, rest)
      .then(readSpans)
      .then(
        (parts) => {
          this.cancelJob = undefined;
          for (const item of items) once(item);
          if (closed) {
            this.failItems(items, new Error('connection closed'));
            return;
          }
          const job = planOf([{ parts, files: true, resolve: () => undefined, reject: () => undefined }]);
          this.retry(job.data, job.plan, items, FIRST_RETRY_MS, nextMs);
        },
        (e: unknown) => {
          this.cancelJob = undefined;
          this.failItems(items, e instanceof Error ? e : new Error(String(e)));
        },
      );
  }

  /** Reads a queued item's file ranges into memory (the peer stalled), ending its hold on them. */
  private capture(item: Item): void {
    if (item.capturing || item.taken) return;
    item.capturing = true;
    void readSpans(item.parts).then(
      (parts) => {
        if (item.taken) return; // a job took it meanwhile: it sends the files itself
        item.parts = parts;
        item.files = parts.some((p) => !(p instanceof Uint8Array));
        once(item);
      },
      (e: unknown) => {
        if (!item.taken) this.fail(e instanceof Error ? e : new Error(String(e)));
      },
    );
  }

  /** `items` (of a job) could not be sent: they and everything queued fail. */
  private failItems(items: Item[], e: Error): void {
    for (const item of items) {
      once(item);
      item.reject(e);
    }
    this.fail(e);
  }

  /** The socket is broken: everything queued fails, and the socket is closed (the client sees a reset). */
  private fail(e: Error): void {
    this.failure ??= e;
    const items = this.queue;
    this.queue = [];
    for (const item of items) {
      once(item);
      item.reject(e);
    }
    this.socket.destroy();
  }
}

/** Calls an item's `sent` once. */
function once(item: Item): void {
  const sent = item.sent;
  item.sent = undefined;
  sent?.();
}

/** The wait before the next try of a job that sent `sent` bytes after waiting `retryMs`. */
function next(sent: number, retryMs: number): number {
  return sent > 0 ? FIRST_RETRY_MS : Math.min(MAX_RETRY_MS, retryMs * 2);
}

/** A plan (and its data) as parts again: memory, zero runs, file spans. */
async function planParts(data: Uint8Array, plan: Float64Array): Promise<Array<Uint8Array | FileSpan>> {
  const parts: Array<Uint8Array | FileSpan> = [];
  for (let k = 0; k < plan.length; k += 3) {
    const fd = plan[k]!;
    const position = plan[k + 1]!;
    const length = plan[k + 2]!;
    if (fd === -1) parts.push(data.subarray(position, position + length));
    else parts.push({ fd: fd === -2 ? undefined : fd, position, length });
  }
  return parts;
}

/** `parts` with the file spans read into memory (zeros past a file's end, as sendfile sends); zero runs stay. */
async function readSpans(parts: ReadonlyArray<Uint8Array | FileSpan>): Promise<Array<Uint8Array | FileSpan>> {
  const out: Array<Uint8Array | FileSpan> = [];
  for (const p of parts) {
    if (p instanceof Uint8Array || p.fd === undefined) {
      out.push(p);
      continue;
    }
    const b = new Uint8Array(p.length);
    for (let at = 0; at < p.length; ) {
      const n = await new Promise<number>((resolve, reject) =>
        fs.read(p.fd!, b, at, p.length - at, p.position + at, (e, bytesRead) => (e ? reject(e) : resolve(bytesRead))),
      );
      if (n === 0) break; // the file ended before the span: the rest stays zeros
      at += n;
    }
    out.push(b);
  }
  return out;
}

/** The socket's descriptor (libuv's handle exposes it on Unix), or undefined once closed. */
function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** What is left of `plan` once its first `sent` bytes are out. */
function planAfter(plan: Float64Array, sent: number): Float64Array {
  let k = 0;
  let skip = sent;
  while (k < plan.length && skip >= plan[k + 2]!) {
    skip -= plan[k + 2]!;
    k += 3;
  }
  const rest = plan.slice(k);
  if (rest.length > 0 && skip > 0) {
    // fd -2 (zeros) ignores its position; memory and files resume inside the triple.
    rest[1] = rest[1]! + skip;
    rest[2] = rest[2]! - skip;
  }
  return rest;
}

/** The native plan of `items`: (fd, position, length) triples, fd -1 = bytes of `data`, -2 = zeros. */
function planOf(items: readonly Item[]): { data: Uint8Array; plan: Float64Array } {
  let bytes = 0;
  let count = 0;
  for (const item of items) {
    for (const p of item.parts) {
      count++;
      if (p instanceof Uint8Array) bytes += p.length;
    }
  }
  const data = new Uint8Array(bytes);
  const plan = new Float64Array(3 * count);
  let at = 0;
  let k = 0;
  for (const item of items) {
    for (const p of item.parts) {
      if (p instanceof Uint8Array) {
        data.set(p, at);
        plan[k] = -1;
        plan[k + 1] = at;
        plan[k + 2] = p.length;
        at += p.length;
      } else {
        plan[k] = p.fd ?? -2;
        plan[k + 1] = p.position;
        plan[k + 2] = p.length;
      }
      k += 3;
    }
  }
  return { data, plan };
}
