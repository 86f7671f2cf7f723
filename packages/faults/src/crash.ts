import {
  FilterStorage,
  ForwardingVfs,
  type MemoryFile,
  MemoryVfs,
  type MemoryStorage,
  type Storage,
  type VfsOpenOptions,
} from '@blk/core';
import { SparseBytes } from './sparse.js';
import type { Rng } from './rng.js';

/**
 * The unit of atomicity of the crash model: a storage write reaches the disk
 * one 512-byte sector (of the file, aligned to file offsets) at a time. A
 * sector that lands carries the whole sector as the page cache held it right
 * after that write (as an OS writes back whole pages), so "some sectors of a
 * write landed" is possible but "half a sector landed" is not.
 */
export const CRASH_SECTOR = 512;

/** One sector of a write as it would reach the disk. */
export interface SectorPiece {
  /** File offset, a multiple of CRASH_SECTOR. */
  offset: number;
  /** The sector's content (shorter than a sector only at the end of the file). */
  bytes: Uint8Array;
}

/**
 * The write log of a `CrashSimVfs`. Namespace changes (create, remove,
 * rename, truncate-on-open) are durable at once, as on a journaling file
 * system; content changes (`write`, `truncate`) are volatile until a `flush`
 * of the same file.
 */
export type CrashEvent =
  | { type: 'create'; path: string; inode: number }
  | { type: 'reset'; inode: number; content: Uint8Array; mtimeSec: number }
  | { type: 'write'; inode: number; offset: number; length: number; pieces: SectorPiece[]; mtimeSec: number }
  | { type: 'truncate'; inode: number; size: number; mtimeSec: number }
  | { type: 'flush'; inode: number }
  | { type: 'sync-all' }
  | { type: 'remove'; path: string }
  | { type: 'rename'; from: string; to: string }
  /** A note from the test (API-level events such as "write started", "flush done"). */
  | { type: 'mark'; label: string; data?: unknown };

/** A volatile change that a power loss may or may not keep. */
export type PendingPiece =
  | { kind: 'write'; inode: number; offset: number; bytes: Uint8Array; event: number }
  | { kind: 'truncate'; inode: number; size: number; event: number };

/**
 * Which volatile pieces survive a power loss: none, all, or a choice by
 * index into `pending()` (a set, a boolean array or a predicate).
 */
export type KeepSpec =
  | 'none'
  | 'all'
  | ReadonlySet<number>
  | readonly boolean[]
  | ((index: number, piece: PendingPiece) => boolean);

export type CrashOptions = { mode: 'kill' } | { mode: 'power-loss'; keep?: KeepSpec };

interface ModelFile {
  durable: SparseBytes;
  mtimeSec: number;
}

/**
 * The operating system as the crash model sees it: per file, the durable
 * bytes, plus a global ordered list of volatile pieces. Fed with `CrashEvent`s
 * (live by `CrashSimVfs`, or replayed from a log by `CrashReplay`).
 */
export class CrashModel {
  readonly names = new Map<string, number>();
  private readonly files = new Map<number, ModelFile>();
  private pendingList: PendingPiece[] = [];
  /** Number of events applied. */
  position = 0;

  apply(event: CrashEvent): void {
    const index = this.position++;
    switch (event.type) {
      case 'create':
        this.files.set(event.inode, { durable: new SparseBytes(), mtimeSec: 0 });
        this.names.set(event.path, event.inode);
        break;
      case 'reset': {
        const file = this.file(event.inode);
        file.durable = SparseBytes.from(event.content);
        file.mtimeSec = event.mtimeSec;
        this.pendingList = this.pendingList.filter((p) => p.inode !== event.inode);
        break;
      }
      case 'write': {
        this.file(event.inode).mtimeSec = event.mtimeSec;
        for (const piece of event.pieces) {
          this.pendingList.push({
            kind: 'write',
            inode: event.inode,
            offset: piece.offset,
            bytes: piece.bytes,
            event: index,
          });
        }
        break;
      }
      case 'truncate':
        this.file(event.inode).mtimeSec = event.mtimeSec;
        this.pendingList.push({ kind: 'truncate', inode: event.inode, size: event.size, event: index });
        break;
      case 'flush':
        this.settle((p) => p.inode === event.inode);
        break;
      case 'sync-all':
        this.settle(() => true);
        break;
      case 'remove':
        this.names.delete(event.path);
        break;
      case 'rename': {
        const inode = this.names.get(event.from);
        if (inode !== undefined) {
          this.names.delete(event.from);
          this.names.set(event.to, inode);
        }
        break;
      }
      case 'mark':
        break;
    }
  }

  /** The volatile pieces, oldest first (the indices a `KeepSpec` refers to). */
  pending(): readonly PendingPiece[] {
    return this.pendingList;
  }

  /** The files as they would be found after a crash. */
  crash(options: CrashOptions, cwd = '/'): MemoryVfs {
    const keep = options.mode === 'kill' ? 'all' : (options.keep ?? 'none');
    const test = keepTest(keep);
    const states = new Map<number, SparseBytes>();
    this.pendingList.forEach((piece, i) => {
      if (!test(i, piece)) return;
      let bytes = states.get(piece.inode);
      if (!bytes) {
        bytes = this.file(piece.inode).durable.clone();
        states.set(piece.inode, bytes);
      }
      if (piece.kind === 'truncate') bytes.truncate(piece.size);
      else bytes.write(piece.offset, piece.bytes);
    });
    const vfs = new MemoryVfs(cwd);
    const made = new Map<number, MemoryFile>();
    for (const [path, inode] of this.names) {
      let file = made.get(inode);
      if (!file) {
        const model = this.file(inode);
        file = toMemoryFile(states.get(inode) ?? model.durable, model.mtimeSec);
        made.set(inode, file);
      }
      vfs.put(path, file);
    }
    return vfs;
  }

  /** The durable bytes of a file (for tests of the model itself). */
  durable(path: string): Uint8Array | undefined {
    const inode = this.names.get(path);
    return inode === undefined ? undefined : this.file(inode).durable.toBytes();
  }

  private settle(which: (piece: PendingPiece) => boolean): void {
    const rest: PendingPiece[] = [];
    for (const piece of this.pendingList) {
      if (!which(piece)) {
        rest.push(piece);
        continue;
      }
      const durable = this.file(piece.inode).durable;
      if (piece.kind === 'truncate') durable.truncate(piece.size);
      else durable.write(piece.offset, piece.bytes);
    }
    this.pendingList = rest;
  }

  private file(inode: number): ModelFile {
    const file = this.files.get(inode);
    if (!file) throw new Error(`crash model: unknown inode ${inode}`);
    return file;
  }
}

function keepTest(keep: KeepSpec): (index: number, piece: PendingPiece) => boolean {
  if (keep === 'all') return () => true;
  if (keep === 'none') return () => false;
  if (typeof keep === 'function') return keep;
  if (Array.isArray(keep)) return (i) => (keep as readonly boolean[])[i] === true;
  const set = keep as ReadonlySet<number>;
  return (i) => set.has(i);
}

/** The file a crash leaves: the durable bytes, shared copy-on-write (recovery writes copy only what they touch). */
function toMemoryFile(bytes: SparseBytes, mtimeSec: number): MemoryFile {
  const file = bytes.clone();
  file.mtimeSec = mtimeSec;
  return file;
}

/** Replays a recorded log event by event, so that a test can crash after any of them. */
export class CrashReplay {
  readonly model = new CrashModel();
  constructor(readonly log: readonly CrashEvent[]) {}

  /** Applies the next event and returns it (undefined at the end of the log). */
  step(): CrashEvent | undefined {
    const event = this.log[this.model.position];
    if (event) this.model.apply(event);
    return event;
  }

  /** Applies events until `position` events have been applied. */
  seek(position: number): void {
    while (this.model.position < position && this.step());
  }

  get position(): number {
    return this.model.position;
  }
}

/** True for events after which the on-disk state may differ (the "write points"). */
export function isWritePoint(event: CrashEvent): boolean {
  return event.type === 'write' || event.type === 'truncate' || event.type === 'flush';
}

export interface CrashState {
  /** How the state was chosen: 'kill', 'none', 'subset', 'prefix', 'all-but-one', 'only-one', 'exhaustive'. */
  label: string;
  /** Which pending pieces were kept. */
  kept: boolean[];
  vfs: MemoryVfs;
}

/**
 * Up to `count` distinct post-crash states of the model's current position,
 * chosen deterministically from `rng`: the kill state (everything written
 * survives), the bare durable state, then, when there are few enough volatile
 * pieces, every subset; otherwise random subsets, in-order prefixes (a disk
 * that writes in order), "all but one" and "only one".
 */
export function* crashStates(model: CrashModel, rng: Rng, count: number, cwd = '/'): Generator<CrashState> {
  const n = model.pending().length;
  if (count <= 0) return;
  yield { label: 'kill', kept: new Array<boolean>(n).fill(true), vfs: model.crash({ mode: 'kill' }, cwd) };
  if (n === 0 || count === 1) return;
  const seen = new Set<string>([`a${n}`]);
  const emit = (label: string, kept: boolean[]): CrashState | undefined => {
    const key = kept.every((k) => k) ? `a${n}` : kept.map((k) => (k ? '1' : '0')).join('');
    if (seen.has(key)) return undefined;
    seen.add(key);
    return { label, kept, vfs: model.crash({ mode: 'power-loss', keep: kept }, cwd) };
  };
  let made = 1;
  const none = emit('none', new Array<boolean>(n).fill(false));
  if (none) {
    yield none;
    made++;
  }
  if (n <= 20 && 2 ** n - 2 <= count - made) {
    for (let mask = 1; mask < 2 ** n - 1; mask++) {
      const kept = Array.from({ length: n }, (_, i) => ((mask >>> i) & 1) === 1);
      const state = emit('exhaustive', kept);
      if (state) yield state;
    }
    return;
  }
  let attempts = 0;
  while (made < count && attempts < count * 4) {
    attempts++;
    const kind = rng.int(5);
    let kept: boolean[];
    let label: string;
    if (kind === 0) {
      const j = rng.int(n);
      kept = Array.from({ length: n }, (_, i) => i < j);
      label = 'prefix';
    } else if (kind === 1) {
      const j = rng.int(n);
      kept = Array.from({ length: n }, (_, i) => i !== j);
      label = 'all-but-one';
    } else if (kind === 2) {
      const j = rng.int(n);
      kept = Array.from({ length: n }, (_, i) => i === j);
      label = 'only-one';
    } else {
      const p = rng.pick([0.1, 0.5, 0.9]);
      kept = Array.from({ length: n }, () => rng.bool(p));
      label = 'subset';
    }
    const state = emit(label, kept);
    if (state) {
      made++;
      yield state;
    }
  }
}

const ignore = (): void => undefined;

/**
 * A `Vfs` that models the operating system's page cache: every write lands in
 * a volatile cache (visible to readers at once), `flush()` of a storage makes
 * that file's writes durable, and `crash()` produces the files as a power loss
 * (durable + any subset of volatile sectors) or a killed process (everything
 * written) would leave them. Every change is logged, so that a test can replay
 * the log and crash after each write point (`CrashReplay`).
 */
export class CrashSimVfs extends ForwardingVfs {
  declare readonly inner: MemoryVfs;
  readonly model = new CrashModel();
  readonly log: CrashEvent[] = [];
  /**
   * Called after every logged event. A promise it returns is awaited by the
   * call that caused the event (a storage's write, truncate or flush, `open`,
   * `remove`, `rename`), which rejects with its error. The set-up calls
   * (`put`, `mark`, `syncAll`) are synchronous: their hooks' promises are
   * awaited by the next asynchronous call instead (and by `settled()`), so a
   * rejection is never left unhandled.
   */
  onEvent: ((event: CrashEvent, index: number) => void | Promise<void>) | undefined;
  /** Hooks of synchronous calls still running (see `onEvent`), awaited by the next asynchronous one. */
  private deferred: Promise<void> | undefined;
  private readonly inodes = new Map<MemoryFile, number>();
  private nextInode = 1;

  constructor(options: { cwd?: string } = {}) {
    super(new MemoryVfs(options.cwd ?? '/'));
  }

  /** Puts a file in place, durable at once (test set-up). */
  put(path: string, content: Uint8Array = new Uint8Array()): void {
    const abs = this.abs(path);
    const file = this.inner.put(abs, content);
    const inode = this.inodeOf(file, abs);
    this.record({ type: 'reset', inode, content: content.slice(), mtimeSec: file.mtimeSec });
  }

  /** Logs a note from the test (kept in order with the storage events). */
  mark(label: string, data?: unknown): void {
    this.record({ type: 'mark', label, data });
  }

  /** Makes everything durable (as `sync`), e.g. at the end of a test's set-up. */
  syncAll(): void {
    this.record({ type: 'sync-all' });
  }

  /** The files as a crash now would leave them. */
  crash(options: CrashOptions): MemoryVfs {
    return this.model.crash(options, this.inner.cwd());
  }

  /** Number of write points (writes, truncates, flushes) logged so far. */
  get writePoints(): number {
    return this.log.filter(isWritePoint).length;
  }

  override async open(path: string, options: VfsOpenOptions = {}): Promise<Storage> {
    const storage = (await this.inner.open(path, options)) as MemoryStorage;
    const abs = this.abs(path);
    const known = this.inodes.has(storage.file);
    const inode = this.inodeOf(storage.file, abs);
    if (known && options.create && options.truncate) {
      await this.emit({ type: 'reset', inode, content: new Uint8Array(), mtimeSec: storage.file.mtimeSec });
    } else {
      await this.settled();
    }
    return new CrashStorage(this, storage, inode);
  }

  override async remove(path: string): Promise<void> {
    await this.inner.remove(path);
    await this.emit({ type: 'remove', path: this.abs(path) });
  }

  override async rename(from: string, to: string): Promise<void> {
    await this.inner.rename(from, to);
    await this.emit({ type: 'rename', from: this.abs(from), to: this.abs(to) });
  }

  /**
   * Resolves once the `onEvent` hooks of every event logged so far are done;
   * rejects with the first error of a hook of a synchronous call (`put`,
   * `mark`, `syncAll`), once.
   */
  async settled(): Promise<void> {
    const deferred = this.deferred;
    this.deferred = undefined;
    await deferred;
  }

  /**
   * Logs `event` from an asynchronous call (at once, in the order the changes
   * happened) and returns what that call awaits: the hooks of earlier
   * synchronous calls, then this event's hook. @internal
   */
  emit(event: CrashEvent): Promise<void> {
    const result = this.hook(event);
    const deferred = this.deferred;
    this.deferred = undefined;
    if (deferred === undefined) return result;
    result.catch(ignore); // the earlier hook's error is the one reported
    return deferred.then(() => result);
  }

  /** Logs `event` from a synchronous call: a promise from its hook is kept for the next asynchronous call. */
  private record(event: CrashEvent): void {
    this.log.push(event);
    this.model.apply(event);
    // A synchronous throw leaves the call that caused the event, as it is synchronous too.
    const returned = this.onEvent?.(event, this.log.length - 1);
    if (returned === undefined) return;
    const result = Promise.resolve(returned);
    const previous = this.deferred;
    const chained = previous === undefined ? result : previous.then(() => result);
    // Handled here so that nothing is reported unhandled meanwhile; the call that awaits it still sees the error.
    result.catch(ignore);
    chained.catch(ignore);
    this.deferred = chained;
  }

  /** Logs and applies `event`, and calls the hook: its outcome as a promise (a synchronous throw too). */
  private hook(event: CrashEvent): Promise<void> {
    this.log.push(event);
    this.model.apply(event);
    try {
      return Promise.resolve(this.onEvent?.(event, this.log.length - 1));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private inodeOf(file: MemoryFile, abs: string): number {
    let inode = this.inodes.get(file);
    if (inode === undefined) {
      inode = this.nextInode++;
      this.inodes.set(file, inode);
      this.record({ type: 'create', path: abs, inode });
    }
    return inode;
  }

  private abs(path: string): string {
    return this.inner.resolve(this.inner.cwd(), path);
  }
}

/** A storage of a `CrashSimVfs`: forwards to memory and logs every change. */
export class CrashStorage extends FilterStorage {
  constructor(
    private readonly vfs: CrashSimVfs,
    private readonly storage: MemoryStorage,
    readonly inode: number,
  ) {
    super(storage);
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    await this.storage.write(offset, data);
    if (data.length === 0) return;
    const file = this.storage.file;
    const pieces: SectorPiece[] = [];
    const first = Math.floor(offset / CRASH_SECTOR);
    const last = Math.floor((offset + data.length - 1) / CRASH_SECTOR);
    for (let s = first; s <= last; s++) {
      const start = s * CRASH_SECTOR;
      const end = Math.min(start + CRASH_SECTOR, file.length);
      const bytes = new Uint8Array(end - start);
      file.readAt(start, bytes);
      pieces.push({ offset: start, bytes });
    }
    await this.vfs.emit({
      type: 'write',
      inode: this.inode,
      offset,
      length: data.length,
      pieces,
      mtimeSec: file.mtimeSec,
    });
  }

  override async truncate(size: number): Promise<void> {
    await this.storage.truncate(size);
    await this.vfs.emit({ type: 'truncate', inode: this.inode, size, mtimeSec: this.storage.file.mtimeSec });
  }

  override async flush(): Promise<void> {
    await this.storage.flush();
    await this.vfs.emit({ type: 'flush', inode: this.inode });
  }
}
