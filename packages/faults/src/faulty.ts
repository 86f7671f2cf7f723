import { BlockError, FilterStorage, type FileStat, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core';
import { Rng } from './rng.js';

/** The calls a `FaultyVfs` counts and can fail. */
export type CallKind =
  | 'open'
  | 'read'
  | 'write'
  | 'flush'
  | 'truncate'
  | 'size'
  | 'close'
  | 'stat'
  | 'lstat'
  | 'realpath'
  | 'exists'
  | 'remove'
  | 'rename';

export const STORAGE_CALLS: readonly CallKind[] = ['read', 'write', 'flush', 'truncate', 'size', 'close'];
export const ALL_CALLS: readonly CallKind[] = [
  'open',
  'read',
  'write',
  'flush',
  'truncate',
  'size',
  'close',
  'stat',
  'lstat',
  'realpath',
  'exists',
  'remove',
  'rename',
];

/**
 * How a call fails:
 * - `EIO`, `ENOSPC`: the call does nothing and throws a BlockError `io` with that code
 *   (`close` still releases the handle, as close(2) does).
 * - `short-read`: `read` returns fewer bytes than asked, as at an end of file
 *   (the rest of the buffer is left untouched); other calls fail with EIO.
 * - `short-write`: `write` stores a prefix of the data (possibly empty, ending on a
 *   512-byte boundary of the file), then throws
 *   `io` with code ENOSPC, as a disk that fills up mid-write; other calls fail with EIO.
 */
export type FaultKind = 'EIO' | 'ENOSPC' | 'short-read' | 'short-write';
export const FAULT_KINDS: readonly FaultKind[] = ['EIO', 'ENOSPC', 'short-read', 'short-write'];

export interface FaultRule {
  /** Which calls the rule counts ('any' = every kind). */
  call: CallKind | readonly CallKind[] | 'any';
  /** 1-based index, among the calls this rule counts, of the first failing call (default 1). */
  nth?: number;
  /** How many matching calls fail from `nth` on (default 1; Infinity = sticky, as a full disk). */
  times?: number;
  fault: FaultKind;
  /** Only calls on this path (storage path or Vfs argument). */
  path?: string | RegExp | ((path: string) => boolean);
}

export interface InjectedFault {
  call: CallKind;
  fault: FaultKind;
  path: string;
  /** Global call number (1-based) of the failed call. */
  callNumber: number;
  offset?: number;
}

interface ArmedRule {
  rule: FaultRule;
  seen: number;
}

/**
 * A `Vfs` (and its storages) that fails chosen calls: "fail the 7th write
 * with ENOSPC", "every flush from the 3rd on fails", ... Counts every call by
 * kind, logs every injected fault and tracks open handles, so that a test can
 * check that a failure reached the caller as a typed error and that no handle
 * leaked.
 */
export class FaultyVfs implements Vfs {
  /** Calls seen, by kind (faulted ones included). */
  readonly counts: Record<CallKind, number> = Object.fromEntries(ALL_CALLS.map((c) => [c, 0])) as Record<
    CallKind,
    number
  >;
  /** Every injected fault, in order. */
  readonly injected: InjectedFault[] = [];
  /** Storages opened through this vfs and not yet closed. */
  readonly handles = new Set<FaultyStorage>();
  private rules: ArmedRule[] = [];
  private calls = 0;
  readonly rng: Rng;

  constructor(
    readonly inner: Vfs,
    rules: readonly FaultRule[] = [],
    options: { seed?: number } = {},
  ) {
    this.rng = new Rng(options.seed ?? 1);
    for (const rule of rules) this.addRule(rule);
  }

  addRule(rule: FaultRule): this {
    this.rules.push({ rule, seen: 0 });
    return this;
  }

  /** Removes every rule (the device is healthy again); counts are kept. */
  disarm(): this {
    this.rules = [];
    return this;
  }

  /** Total calls seen. */
  get totalCalls(): number {
    return this.calls;
  }

  /** Number of storages opened and not closed. */
  get openHandles(): number {
    return this.handles.size;
  }

  /** @internal Counts the call; returns the fault to inject, if any. */
  tick(call: CallKind, path: string): FaultKind | undefined {
    this.calls++;
    this.counts[call]++;
    let fault: FaultKind | undefined;
    for (const armed of this.rules) {
      const r = armed.rule;
      const kinds = r.call;
      const matches = kinds === 'any' || kinds === call || (Array.isArray(kinds) && kinds.includes(call));
      if (!matches || !pathMatches(r.path, path)) continue;
      armed.seen++;
      const nth = r.nth ?? 1;
      const times = r.times ?? 1;
      if (fault === undefined && armed.seen >= nth && armed.seen < nth + times) fault = r.fault;
    }
    return fault;
  }

  /** @internal */
  record(call: CallKind, fault: FaultKind, path: string, offset?: number): void {
    const entry: InjectedFault = { call, fault, path, callNumber: this.calls };
    if (offset !== undefined) entry.offset = offset;
    this.injected.push(entry);
  }

  private fail(call: CallKind, path: string): void {
    const fault = this.tick(call, path);
    if (fault === undefined) return;
    this.record(call, fault, path);
    throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', call, path);
  }

  async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    this.fail('open', path);
    const storage = new FaultyStorage(this, await this.inner.open(path, options));
    this.handles.add(storage);
    return storage;
  }

  async stat(path: string): Promise<FileStat> {
    this.fail('stat', path);
    return this.inner.stat(path);
  }
  async lstat(path: string): Promise<FileStat> {
    this.fail('lstat', path);
    return this.inner.lstat(path);
  }
  async realpath(path: string): Promise<string> {
    this.fail('realpath', path);
    return this.inner.realpath(path);
  }
  async exists(path: string): Promise<boolean> {
    this.fail('exists', path);
    return this.inner.exists(path);
  }
  async remove(path: string): Promise<void> {
    this.fail('remove', path);
    return this.inner.remove(path);
  }
  async rename(from: string, to: string): Promise<void> {
    this.fail('rename', from);
    return this.inner.rename(from, to);
  }
  resolve(base: string, path: string): string {
    return this.inner.resolve(base, path);
  }
  dirname(path: string): string {
    return this.inner.dirname(path);
  }
  cwd(): string {
    return this.inner.cwd();
  }
}

/** A storage of a `FaultyVfs` (or stand-alone over any storage with `FaultyVfs.wrap`). */
export class FaultyStorage extends FilterStorage {
  private closed = false;

  constructor(
    private readonly owner: FaultyVfs,
    inner: Storage,
  ) {
    super(inner);
  }

  /** The storage faults are injected in front of. */
  get inner(): Storage {
    return this.next;
  }

  override async read(offset: number, into: Uint8Array): Promise<number> {
    const fault = this.owner.tick('read', this.path);
    if (fault === undefined) return this.inner.read(offset, into);
    this.owner.record('read', fault, this.path, offset);
    if (fault !== 'short-read') throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', 'read', this.path, offset);
    if (into.length === 0) return 0;
    const want = this.owner.rng.int(into.length);
    const n = await this.inner.read(offset, into.subarray(0, want));
    return n;
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    const fault = this.owner.tick('write', this.path);
    if (fault === undefined) return super.write(offset, data);
    this.owner.record('write', fault, this.path, offset);
    if (fault === 'short-write' && data.length > 0) {
      // File systems allocate whole blocks: the stored prefix ends on a 512-byte boundary of the file.
      const cut = this.owner.rng.int(data.length);
      const n = Math.max(0, Math.min(data.length, Math.floor((offset + cut) / 512) * 512 - offset));
      if (n > 0) await super.write(offset, data.subarray(0, n));
      throw faultError('ENOSPC', 'write', this.path, offset + n, `short write (${n} of ${data.length} bytes)`);
    }
    throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', 'write', this.path, offset);
  }

  override async size(): Promise<number> {
    this.simple('size');
    return super.size();
  }

  override async truncate(size: number): Promise<void> {
    this.simple('truncate');
    return super.truncate(size);
  }

  override async flush(): Promise<void> {
    this.simple('flush');
    return super.flush();
  }

  override async close(): Promise<void> {
    const fault = this.owner.tick('close', this.path);
    if (!this.closed) {
      this.closed = true;
      this.owner.handles.delete(this);
    }
    // close(2) releases the descriptor even when it reports an error.
    await this.inner.close();
    if (fault !== undefined) {
      this.owner.record('close', fault, this.path);
      throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', 'close', this.path);
    }
  }

  private simple(call: CallKind): void {
    const fault = this.owner.tick(call, this.path);
    if (fault === undefined) return;
    this.owner.record(call, fault, this.path);
    throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', call, this.path);
  }
}

/** An injected failure, shaped as NodeFileStorage reports a system error. */
export function faultError(
  code: 'EIO' | 'ENOSPC',
  op: string,
  path: string,
  offset?: number,
  detail?: string,
): BlockError {
  const text = detail ?? (code === 'EIO' ? 'input/output error (injected)' : 'no space left on device (injected)');
  const cause = Object.assign(new Error(`${code}: ${text}`), { code, injected: true });
  return new BlockError('io', `${op} failed${offset !== undefined ? ` at offset ${offset}` : ''}: ${text}`, {
    path,
    code,
    cause,
    offset,
  });
}

/** True for errors `faultError` made (directly or as a cause). */
export function isInjected(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (typeof e === 'object' && (e as { injected?: unknown }).injected === true) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

function pathMatches(rule: FaultRule['path'], path: string): boolean {
  if (rule === undefined) return true;
  if (typeof rule === 'string') return path === rule || path.endsWith(`/${rule}`) || path.endsWith(rule);
  if (rule instanceof RegExp) return rule.test(path);
  return rule(path);
}
