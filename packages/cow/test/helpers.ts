/** Shared fixtures for the cow tests: storages that count, record or reorder I/O, and file builders. */
import { createHash } from 'node:crypto';
import { FilterStorage, MemoryFile, MemoryStorage, type BackingSpec, type CacheMode, type Storage } from '@blk/core';
import { cowDriver, type CowImage, type CowVariant } from '../src/index.js';

export const MiB = 1024 * 1024;
export const SS = 512;

/** The §14 test-vector backing file. */
export const VECTOR_BACKING = { path: '/tmp/base.img', size: 64 * MiB, mtimeSec: 0x5f000000 };

/**
 * A backing file as these tests name it (path, size, mtime) as the driver
 * takes it: the core's facts, for a backing image that is not a raw file.
 */
export function toSpec(b: { path: string; size: number; mtimeSec: number }): BackingSpec;
export function toSpec(b: { path: string; size: number; mtimeSec: number } | undefined): BackingSpec | undefined;
export function toSpec(b: { path: string; size: number; mtimeSec: number } | undefined): BackingSpec | undefined {
  return b && { path: b.path, facts: { size: b.size, mtimeSec: b.mtimeSec } };
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Creates a COW image of `variant` in a fresh MemoryFile. */
export async function createFile(
  options: {
    variant?: CowVariant;
    size?: number;
    backing?: { path: string; size: number; mtimeSec: number } | undefined;
    alignment?: number;
  } = {},
): Promise<MemoryFile> {
  const file = new MemoryFile();
  const size = options.size ?? options.backing?.size ?? VECTOR_BACKING.size;
  const backing = 'backing' in options ? options.backing : { ...VECTOR_BACKING, size };
  const driverOptions: Record<string, unknown> = {};
  if (options.variant) driverOptions.variant = options.variant;
  if (options.alignment !== undefined) driverOptions.alignment = options.alignment;
  await cowDriver.create!(new MemoryStorage(file, 'new.cow'), { size, backing: toSpec(backing), driverOptions });
  return file;
}

export async function openFile(
  file: MemoryFile | Storage,
  options: {
    cache?: CacheMode;
    readOnly?: boolean;
    driverOptions?: Record<string, unknown>;
    path?: string;
  } = {},
): Promise<CowImage> {
  const storage =
    file instanceof MemoryFile ? new MemoryStorage(file, options.path ?? 'test.cow', options.readOnly ?? false) : file;
  return (await cowDriver.open(storage, {
    readOnly: options.readOnly ?? false,
    cache: options.cache ?? 'writeback',
    driverOptions: options.driverOptions,
  })) as CowImage;
}

/** A sector-sized pattern that says which write (tag) put it at which sector. */
export function pattern(sector: number, count: number, tag = 1): Uint8Array {
  const out = new Uint8Array(count * SS);
  for (let s = 0; s < count; s++) {
    const v = new DataView(out.buffer, s * SS, SS);
    for (let i = 0; i < SS; i += 8) {
      v.setUint32(i, sector + s);
      v.setUint32(i + 4, tag);
    }
  }
  return out;
}

/** A `below` that fills with 0xEE and records each call. */
export function recordingBelow(): {
  calls: Array<[number, number]>;
  below: (o: number, into: Uint8Array) => Promise<void>;
} {
  const calls: Array<[number, number]> = [];
  return {
    calls,
    below: async (offset, into) => {
      calls.push([offset, into.length]);
      into.fill(0xee);
    },
  };
}

export type IoEvent =
  | { op: 'read'; offset: number; length: number }
  | { op: 'write'; offset: number; length: number }
  | { op: 'flush' }
  | { op: 'truncate'; size: number };

/** Passes everything through to `inner` and records each call. */
export class RecordingStorage extends FilterStorage {
  readonly events: IoEvent[] = [];
  constructor(readonly inner: Storage) {
    super(inner);
  }
  override read(offset: number, into: Uint8Array): Promise<number> {
    this.events.push({ op: 'read', offset, length: into.length });
    return super.read(offset, into);
  }
  override write(offset: number, data: Uint8Array): Promise<void> {
    this.events.push({ op: 'write', offset, length: data.length });
    return super.write(offset, data);
  }
  override truncate(size: number): Promise<void> {
    this.events.push({ op: 'truncate', size });
    return super.truncate(size);
  }
  override flush(): Promise<void> {
    this.events.push({ op: 'flush' });
    return super.flush();
  }
  count(op: IoEvent['op']): number {
    return this.events.filter((e) => e.op === op).length;
  }
  clear(): void {
    this.events.length = 0;
  }
}

/**
 * A storage that models a disk with a volatile write cache: writes land in
 * `file` at once (what a reader sees) and are logged; a flush makes every
 * earlier write durable. `crashImage(at, survives)` builds what a power cut
 * after the first `at` logged calls leaves: everything flushed by then, plus
 * the unflushed writes that `survives` picks (any subset may reach the platter,
 * in any order).
 */
export class CrashStorage extends FilterStorage {
  private readonly initial: Uint8Array;
  readonly log: Array<{ op: 'write'; offset: number; data: Uint8Array } | { op: 'flush' }> = [];
  constructor(
    readonly file: MemoryFile,
    path = 'crash.cow',
  ) {
    super(new MemoryStorage(file, path));
    this.initial = file.snapshot();
  }
  override async write(offset: number, data: Uint8Array): Promise<void> {
    await super.write(offset, data);
    this.log.push({ op: 'write', offset, data: data.slice() });
  }
  override truncate(): Promise<void> {
    throw new Error('CrashStorage does not model truncate');
  }
  override async flush(): Promise<void> {
    this.log.push({ op: 'flush' });
  }
  crashImage(at: number, survives: (index: number) => boolean): MemoryFile {
    const out = new MemoryFile(this.initial);
    out.truncate(this.file.length);
    let pending: Array<{ offset: number; data: Uint8Array }> = [];
    for (const entry of this.log.slice(0, at)) {
      if (entry.op === 'flush') {
        for (const w of pending) out.writeAt(w.offset, w.data);
        pending = [];
      } else {
        pending.push(entry);
      }
    }
    pending.forEach((w, i) => {
      if (survives(i)) out.writeAt(w.offset, w.data);
    });
    return out;
  }
}

/** Reads bitmap byte `index` straight from the file. */
export function bitmapByte(file: MemoryFile, bitmapOffset: number, index: number): number {
  const b = new Uint8Array(1);
  file.readAt(bitmapOffset + index, b);
  return b[0]!;
}

/** Byte equality without vitest's element-by-element deep compare (seconds for a MiB). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
