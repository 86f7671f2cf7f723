import fc from 'fast-check';
import { BlockError, MemoryVfs, type Image } from '@blk/core/portable';
import { fillKindArb, rangeArb, seedArb, type RangeConstraints } from './arbitraries.js';
import { assertBytesEqual } from './compare.js';
import {
  checkCapabilities,
  checkContent,
  checkMap,
  checkStatusAt,
  type ImageModel,
  type InvariantOptions,
} from './invariants.js';
import { assertProperty, fcParameters, type ProofOptions } from './options.js';
import { pattern, type FillKind } from './pattern.js';
import type { SubjectInstance, TestSubject } from './subject.js';

/** The system under test, as the commands see it. */
export interface ImageReal {
  /** The open image; replaced by `reopen`. */
  image: Image;
  /** Closes `image` and opens the subject again (writable). */
  reopen(): Promise<void>;
}

type ImageCommand = fc.AsyncCommand<ImageModel, ImageReal>;

class WriteCommand implements ImageCommand {
  constructor(
    readonly offset: number,
    readonly length: number,
    readonly seed: number,
    readonly kind: FillKind,
    readonly fua = false,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: ImageModel, r: ImageReal): Promise<void> {
    const data = pattern(this.length, this.seed, this.kind);
    // FUA is refused only where the image has no way to honour it (capabilities.fua 'none').
    if (this.fua && r.image.capabilities.fua === 'none') {
      await expectNotSupported(r.image.write(this.offset, data, { fua: true }), `${this.toString()} with fua 'none'`);
      return;
    }
    await r.image.write(this.offset, data, this.fua ? { fua: true } : undefined);
    m.content.set(data, this.offset);
    m.written.fill(1, this.offset, this.offset + this.length);
  }
  toString(): string {
    return `write(${this.offset}, +${this.length}, ${this.kind}#${this.seed}${this.fua ? ', fua' : ''})`;
  }
}

/** Flags of one `writeZeroes` command. */
export interface ZeroFlags {
  mayUnmap: boolean;
  noFallback: boolean;
  fua: boolean;
}

/**
 * `writeZeroes` with random flags. The range reads as zeros afterwards, whatever the
 * flags (never the backing file's bytes, even with mayUnmap); with `noFallback` the
 * image may refuse (`not-supported`, ENOTSUP), and must then have changed nothing,
 * which the following reads check. With `mayUnmap` the range may be left
 * unallocated: the model forgets that it was written.
 */
class ZeroCommand implements ImageCommand {
  constructor(
    readonly offset: number,
    readonly length: number,
    readonly flags: ZeroFlags,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: ImageModel, r: ImageReal): Promise<void> {
    const caps = r.image.capabilities;
    const request = r.image.writeZeroes(this.offset, this.length, this.flags);
    if ((this.flags.noFallback && caps.writeZeroes !== 'native') || (this.flags.fua && caps.fua === 'none')) {
      await expectNotSupported(request, this.toString());
      return;
    }
    try {
      await request;
    } catch (err) {
      // A native zeroing may still decline a range (or its edges need a buffer): refused, nothing written.
      if (this.flags.noFallback && err instanceof BlockError && err.kind === 'not-supported' && err.code === 'ENOTSUP')
        return;
      throw err;
    }
    m.content.fill(0, this.offset, this.offset + this.length);
    m.written.fill(this.flags.mayUnmap ? 0 : 1, this.offset, this.offset + this.length);
  }
  toString(): string {
    const flags = (Object.keys(this.flags) as Array<keyof ZeroFlags>).filter((k) => this.flags[k]);
    return `writeZeroes(${this.offset}, +${this.length}${flags.length > 0 ? `, ${flags.join('+')}` : ''})`;
  }
}

/**
 * `discard` of the whole discard units inside the range (discard is advisory:
 * the core clips unaligned edges; a range ending at the image's end counts
 * whole). What the range reads afterwards follows `capabilities.discard`:
 * `none`: refused (`not-supported`), nothing changed; `zero`: zeros;
 * `backing`: what the layer below holds there (read from the backing image
 * before the discard; zeros without one); `any`: unspecified, so the model
 * takes what it reads now, and later commands check that it stays so. A
 * discarded range is no longer "written" (it may be deallocated).
 */
class DiscardCommand implements ImageCommand {
  constructor(
    readonly offset: number,
    readonly length: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: ImageModel, r: ImageReal): Promise<void> {
    const image = r.image;
    const caps = image.capabilities;
    if (caps.discard === 'none') {
      await expectNotSupported(image.discard(this.offset, this.length), `${this.toString()} with discard 'none'`);
      return;
    }
    const unit = caps.limits.discardAlignment;
    const start = Math.ceil(this.offset / unit) * unit;
    const end =
      this.offset + this.length === image.size ? image.size : Math.floor((this.offset + this.length) / unit) * unit;
    if (!(start < end)) return;
    let expected: Uint8Array | undefined = new Uint8Array(end - start);
    if (caps.discard === 'backing' && image.backing !== undefined) {
      // The backing image may be shorter: past its end the overlay reads zeros.
      const inside = Math.max(0, Math.min(end, image.backing.size) - start);
      if (inside > 0) expected.set(await image.backing.read(start, inside));
    } else if (caps.discard === 'any') {
      expected = undefined;
    }
    await image.discard(start, end - start);
    m.content.set(expected ?? (await image.read(start, end - start)), start);
    m.written.fill(0, start, end);
  }
  toString(): string {
    return `discard(${this.offset}, +${this.length})`;
  }
}

/** Awaits `request`, which must fail with `not-supported` and code ENOTSUP. */
async function expectNotSupported(request: Promise<void>, what: string): Promise<void> {
  let error: unknown;
  try {
    await request;
  } catch (err) {
    error = err;
  }
  if (!(error instanceof BlockError && error.kind === 'not-supported' && error.code === 'ENOTSUP')) {
    throw new Error(
      `${what}: expected a not-supported (ENOTSUP) refusal, got ${error === undefined ? 'success' : String(error)}`,
    );
  }
}

class ReadCommand implements ImageCommand {
  constructor(
    readonly offset: number,
    readonly length: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: ImageModel, r: ImageReal): Promise<void> {
    const got = await r.image.read(this.offset, this.length);
    assertBytesEqual(
      got,
      m.content.subarray(this.offset, this.offset + this.length),
      `${r.image.path}: ${this.toString()}`,
      this.offset,
    );
  }
  toString(): string {
    return `read(${this.offset}, +${this.length})`;
  }
}

class FlushCommand implements ImageCommand {
  check(): boolean {
    return true;
  }
  async run(_m: ImageModel, r: ImageReal): Promise<void> {
    await r.image.flush();
  }
  toString(): string {
    return 'flush()';
  }
}

class ReopenCommand implements ImageCommand {
  check(): boolean {
    return true;
  }
  async run(_m: ImageModel, r: ImageReal): Promise<void> {
    await r.reopen();
  }
  toString(): string {
    return 'close+reopen()';
  }
}

class StatusCommand implements ImageCommand {
  constructor(
    readonly offset: number,
    readonly length: number,
    private readonly options: InvariantOptions,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: ImageModel, r: ImageReal): Promise<void> {
    await checkStatusAt(r.image, m, this.offset, this.length, this.options);
  }
  toString(): string {
    return `status(${this.offset}, +${this.length})`;
  }
}

class MapCommand implements ImageCommand {
  constructor(private readonly options: InvariantOptions) {}
  check(): boolean {
    return true;
  }
  async run(m: ImageModel, r: ImageReal): Promise<void> {
    await checkMap(r.image, m, this.options);
  }
  toString(): string {
    return 'map()';
  }
}

export interface CommandOptions extends InvariantOptions {
  maxOps: number;
  /** fast-check's replay hint for a shrunk command sequence (see `ProofOptions.replayPath`). */
  replayPath?: string;
}

/**
 * The command sequences `checkReadAfterWrite` runs, for authors who want to
 * drive `fc.asyncModelRun` themselves: writes (weight 6, one in four with
 * FUA), reads (5), zero writes with random mayUnmap/noFallback/fua flags (2),
 * discards checked against `capabilities.discard` (1), status queries (2),
 * flushes (1), close/reopen (1) and full maps (1).
 */
export function imageCommands(range: RangeConstraints, options: CommandOptions): fc.Arbitrary<Iterable<ImageCommand>> {
  const ranges = rangeArb(range);
  const command = fc.oneof(
    {
      arbitrary: fc
        .tuple(ranges, seedArb(), fillKindArb(), fc.integer({ min: 0, max: 3 }))
        .map(([r, seed, kind, fua]): ImageCommand => new WriteCommand(r.offset, r.length, seed, kind, fua === 0)),
      weight: 6,
    },
    {
      arbitrary: fc
        .tuple(ranges, fc.record({ mayUnmap: fc.boolean(), noFallback: fc.boolean(), fua: fc.boolean() }))
        .map(([r, flags]): ImageCommand => new ZeroCommand(r.offset, r.length, flags)),
      weight: 2,
    },
    { arbitrary: ranges.map((r): ImageCommand => new DiscardCommand(r.offset, r.length)), weight: 1 },
    { arbitrary: ranges.map((r): ImageCommand => new ReadCommand(r.offset, r.length)), weight: 5 },
    { arbitrary: ranges.map((r): ImageCommand => new StatusCommand(r.offset, r.length, options)), weight: 2 },
    { arbitrary: fc.constant<ImageCommand>(new FlushCommand()), weight: 1 },
    { arbitrary: fc.constant<ImageCommand>(new ReopenCommand()), weight: 1 },
    { arbitrary: fc.constant<ImageCommand>(new MapCommand(options)), weight: 1 },
  );
  // size 'max': lengths spread over [0, maxOps] instead of fast-check's short default.
  return fc.commands([command], {
    maxCommands: options.maxOps,
    size: 'max',
    ...(options.replayPath !== undefined ? { replayPath: options.replayPath } : {}),
  });
}

/** Resolved range constraints for a subject. */
export function rangeConstraints(subject: TestSubject, options: ProofOptions): RangeConstraints {
  if (!Number.isSafeInteger(subject.size) || subject.size <= 0) {
    throw new Error(`${subject.name}: subject size ${subject.size} must be a positive integer`);
  }
  return {
    size: subject.size,
    maxLength: Math.max(1, Math.min(subject.size, options.maxLength ?? 64 * 1024)),
    alignments: options.alignments ?? [512, 4096, 65536],
  };
}

/** Runs `subject.setup` for one run and checks what it returns. */
export async function setUp(
  subject: TestSubject,
  seed: number,
): Promise<{ vfs: MemoryVfs; instance: SubjectInstance }> {
  const vfs = new MemoryVfs('/');
  const instance = await subject.setup({ vfs, seed });
  if (instance.initial.length !== subject.size) {
    throw new Error(
      `${subject.name}: setup() returned ${instance.initial.length} initial bytes for a ${subject.size}-byte subject`,
    );
  }
  return { vfs, instance };
}

export function checkOpened(subject: TestSubject, image: Image, readOnly: boolean): Image {
  checkCapabilities(image);
  if (image.size !== subject.size) {
    throw new Error(`${subject.name}: opened image has size ${image.size}, the subject says ${subject.size}`);
  }
  if (image.readOnly !== readOnly) {
    throw new Error(`${subject.name}: opened image has readOnly=${image.readOnly}, asked for ${readOnly}`);
  }
  return image;
}

/**
 * The read-after-write proof. For `numRuns` random command sequences, each
 * on a fresh `subject.setup()`:
 *
 * - every read returns exactly what an in-memory model of the guest-visible
 *   image holds: the initial content with every earlier write applied, for
 *   any offset and length (unaligned ones included), across flushes and
 *   close/reopen;
 * - `isAllocated`/`chainStatus`/`map` stay sane (see `checkStatusAt`,
 *   `checkMap`);
 * - at the end the image is closed, reopened read-only, and read whole.
 *
 * Rejects (with fast-check's counterexample, seed and replay path) on the
 * first violation.
 */
export async function checkReadAfterWrite(subject: TestSubject, options: ProofOptions = {}): Promise<void> {
  const range = rangeConstraints(subject, options);
  const invariants: InvariantOptions = { writesAllocate: options.writesAllocate ?? true };
  const commands = imageCommands(range, {
    ...invariants,
    maxOps: options.maxOps ?? 50,
    ...(options.replayPath !== undefined ? { replayPath: options.replayPath } : {}),
  });
  await assertProperty(
    `${subject.name}: read-after-write`,
    fc.asyncProperty(seedArb(), commands, async (seed, cmds) => {
      const { vfs, instance } = await setUp(subject, seed);
      const model: ImageModel = { content: instance.initial.slice(), written: new Uint8Array(subject.size) };
      const open = async (readOnly: boolean) => checkOpened(subject, await instance.open({ vfs, readOnly }), readOnly);
      const real: ImageReal = {
        image: await open(false),
        async reopen() {
          await real.image.close();
          real.image = await open(false);
        },
      };
      try {
        await fc.asyncModelRun(() => ({ model, real }), cmds);
        await real.image.close();
        real.image = await open(true);
        await checkContent(real.image, model, 'content after close and read-only reopen');
        await checkMap(real.image, model, invariants);
      } finally {
        await real.image.close().catch(() => undefined);
        await instance.dispose?.();
      }
    }),
    fcParameters(options),
  );
}
