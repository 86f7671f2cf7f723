/**
 * One qemu-io session: the file open (if any), the aio requests in flight,
 * and how commands print. qemu-io's own report lines go to `out`; error
 * lines go to `err` in qemu-io's form (`qemu-io: ...`, see qemu-messages.ts).
 */
import type { Image } from '@blk/core';
import { debugEnabled } from '../errors.js';
import { QEMU_IO, cantOpenLine, errorLine, qemuOpenReason, withQemuLines } from './qemu-messages.js';
import { checkNameStillHeld, releaseFile } from './same-file.js';
import { printable } from '../printable.js';
import { parseSizeResult } from '../size.js';
import { MAX_REQUEST, type CmdInfo } from './command.js';
import { strerror } from './errno.js';
import { openIoFile, type IoOpenOptions, type OpenedFile } from './open-options.js';
import { resolveFileOptions, type OptionValue } from './block-options.js';
import type { BackingRules } from '../jobs/common.js';
import { cvtnumError, dumpBuffer, elapsed } from './report.js';
import { dumpInPieces, rangeError } from './bounded.js';

export interface Output {
  out(text: string): void;
  err(text: string): void;
  /** Resolves once `out` has room again (a slow reader of a pipe); absent when output never waits. */
  drain?(): Promise<void>;
}

/** Whether `name` opened with `options` and the `-o` options `direct` is read-only (they are checked by then). */
function readOnlyAfter(name: string, options: IoOpenOptions, direct: ReadonlyMap<string, OptionValue>): boolean {
  const probe: IoOpenOptions = { ...options, cache: { ...options.cache } };
  resolveFileOptions(name, direct, probe);
  return probe.readOnly;
}

export class IoSession {
  private readonly inflight = new Set<Promise<void>>();
  private file: OpenedFile | undefined;
  quit = false;

  /**
   * `backingProbe`: --backing-probe of the command line, and `rules` its backing rules
   * (--backing-dir, --forbid-backing, the default rule), for every file this session opens.
   */
  constructor(
    readonly io: Output,
    readonly backingProbe = false,
    readonly rules?: BackingRules,
  ) {}

  get isOpen(): boolean {
    return this.file !== undefined;
  }

  /** The open image (commands run only while one is open, unless they are `noFile`). */
  get image(): Image {
    if (!this.file) throw new Error('no file open');
    return this.file.image;
  }

  /** The file's name as the user gave it. */
  get fileName(): string {
    return this.file?.name ?? '';
  }

  /** -d ignore: discards and `write -z -u` leave allocation alone. */
  get unmap(): boolean {
    return this.file?.options.unmap ?? true;
  }

  /** Opens `name` with the flags `options` and the `-o` options `direct`; false after printing why not. */
  async open(name: string, options: IoOpenOptions, direct?: ReadonlyMap<string, OptionValue>): Promise<boolean> {
    if (this.file) {
      this.error("file open already, try 'help close'");
      return false;
    }
    try {
      this.file = await openIoFile(
        name,
        {
          ...options,
          backingProbe: options.backingProbe ?? this.backingProbe,
          rules: options.rules ?? this.rules,
        },
        direct,
      );
      return true;
    } catch (err) {
      this.reportOpen(err, name);
      return false;
    }
  }

  /** The open file as it was opened (reopen starts from it). */
  get opened(): OpenedFile | undefined {
    return this.file;
  }

  /**
   * Reopens the open file with `options` and the `-o` options `direct` (reopen's): completes the
   * requests in flight, closes the image (flushing it) and opens it again. The file's lock stays
   * held throughout on the descriptor the file keeps (same-file.ts), changed in place for -r/-w.
   * When the new open fails the file is opened again as it was (the same inode, with its lock as
   * it was), and false is returned after printing why.
   */
  async reopen(options: IoOpenOptions, direct: ReadonlyMap<string, OptionValue>): Promise<boolean> {
    const file = this.file;
    if (!file) return false;
    // The descriptor outlives the image's close: it holds the lock, and the file opens through it.
    const held = file.held;
    file.held = undefined;
    try {
      if (!(await this.close())) return false;
      try {
        if (held && readOnlyAfter(file.name, options, direct) !== file.options.readOnly) checkNameStillHeld(held);
        this.file = await openIoFile(file.name, options, direct, held);
        return true;
      } catch (err) {
        this.io.err(`${QEMU_IO}: ${withQemuLines(qemuOpenReason(err, file.name))}\n`);
        this.debug(err);
      }
      try {
        this.file = await openIoFile(file.name, file.options, file.direct, held);
      } catch (err) {
        this.reportOpen(err, file.name);
      }
      return false;
    } finally {
      // Adopted by the file now open, or released with nothing open.
      if (this.file?.held !== held) releaseFile(held);
    }
  }

  /** Completes the aio requests in flight, then closes the file (flushing it); false after printing a failure. */
  async close(): Promise<boolean> {
    const file = this.file;
    if (!file) return true;
    await this.drain();
    this.file = undefined;
    try {
      await file.close();
      return true;
    } catch (err) {
      this.report(err);
      return false;
    }
  }

  /** After a completed write request: with a writethrough cache mode, make it durable now. */
  async afterWrite(): Promise<void> {
    if (this.file?.options.cache.writethrough) await this.image.flush();
  }

  /** Waits for every aio request in flight. */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }

  track(p: Promise<void>): void {
    const wrapped = p.finally(() => this.inflight.delete(wrapped));
    this.inflight.add(wrapped);
  }

  out(text: string): void {
    this.io.out(text);
  }

  /** Waits while the output's reader is behind (see `Output.drain`). */
  async outputDrained(): Promise<void> {
    await this.io.drain?.();
  }

  /** Fails the request `what` before its buffer is allocated when it does not fit the image. */
  fits(what: string, offset: number, count: number): boolean {
    const err = rangeError(this.image, offset, count);
    return err === undefined || this.failed(what, err);
  }

  /** The -v dump of `buf`, a piece at a time, waiting for a slow reader between pieces. */
  dump(buf: Uint8Array, offset: number): Promise<void> {
    return dumpInPieces(
      buf,
      offset,
      (text) => this.io.out(text),
      () => this.outputDrained(),
      dumpBuffer,
    );
  }

  /** qemu-io's `qemu-io: message` on stderr. */
  error(message: string): void {
    this.io.err(`${QEMU_IO}: ${withQemuLines(printable(message))}\n`);
  }

  /** An error thrown by the library, as qemu-io's one line (`qemu-io: reason`). */
  report(err: unknown): void {
    this.io.err(`${errorLine(err)}\n`);
    this.debug(err);
  }

  /** Why `name` did not open, as qemu-io says it (`qemu-io: can't open device NAME: reason`). */
  reportOpen(err: unknown, name: string): void {
    this.io.err(`${cantOpenLine(err, name)}\n`);
    this.debug(err);
  }

  /** qemu-io's `what failed: strerror` line for a failed request. */
  failed(what: string, err: unknown): false {
    this.io.out(`${what} failed: ${strerror(err)}\n`);
    this.debug(err);
    return false;
  }

  private debug(err: unknown): void {
    if (debugEnabled()) this.io.err(`blk: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }

  /** Runs one request and returns how long it took in seconds, or false after printing `what failed: ...`. */
  async timed(what: string, op: () => Promise<unknown>): Promise<number | false> {
    const t1 = process.hrtime.bigint();
    try {
      await op();
    } catch (err) {
      return this.failed(what, err);
    }
    return elapsed(t1);
  }

  usage(ct: CmdInfo): false {
    this.io.out(`${ct.name} ${ct.args ?? ''} -- ${ct.oneline}\n`);
    return false;
  }

  /**
   * The `off len` operands of read, write and discard (qemu-io's checks and
   * messages); undefined after printing what is wrong. `nFlag`: the command
   * has write's -n, which lifts the length limit (and qemu-io's message says so).
   */
  request(operands: readonly string[], nFlag?: { given: boolean }): { offset: number; count: number } | undefined {
    const offset = this.num(operands[0]!);
    if (offset === undefined) return undefined;
    const count = this.num(operands[1]!);
    if (count === undefined) return undefined;
    if (count > MAX_REQUEST && !nFlag?.given) {
      this.io.out(`length cannot exceed ${MAX_REQUEST}${nFlag ? ' without -n' : ''}, given ${operands[1]}\n`);
      return undefined;
    }
    return { offset, count };
  }

  /** cvtnum(): a size/offset with qemu's suffixes, or undefined after printing the error. */
  num(arg: string): number | undefined {
    const r = parseSizeResult(arg);
    if (r.ok) return r.value;
    this.io.out(cvtnumError(r.error, arg));
    return undefined;
  }
}
