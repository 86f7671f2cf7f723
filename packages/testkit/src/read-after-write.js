import fc from 'fast-check';
import { MemoryVfs } from '@blk/core/portable';
import { fillKindArb, rangeArb, seedArb } from './arbitraries.js';
import { assertBytesEqual } from './compare.js';
import { checkContent, checkMap, checkStatusAt } from './invariants.js';
import { assertProperty, fcParameters } from './options.js';
import { pattern } from './pattern.js';
class WriteCommand {
    offset;
    length;
    seed;
    kind;
    constructor(offset, length, seed, kind) {
        this.offset = offset;
        this.length = length;
        this.seed = seed;
        this.kind = kind;
    }
    check() {
        return true;
    }
    async run(m, r) {
        const data = pattern(this.length, this.seed, this.kind);
        await r.image.write(this.offset, data);
        m.content.set(data, this.offset);
        m.written.fill(1, this.offset, this.offset + this.length);
    }
    toString() {
        return `write(${this.offset}, +${this.length}, ${this.kind}#${this.seed})`;
    }
}
class ReadCommand {
    offset;
    length;
    constructor(offset, length) {
        this.offset = offset;
        this.length = length;
    }
    check() {
        return true;
    }
    async run(m, r) {
        const got = await r.image.read(this.offset, this.length);
        assertBytesEqual(got, m.content.subarray(this.offset, this.offset + this.length), `${r.image.path}: ${this.toString()}`, this.offset);
    }
    toString() {
        return `read(${this.offset}, +${this.length})`;
    }
}
class FlushCommand {
    check() {
        return true;
    }
    async run(_m, r) {
        await r.image.flush();
    }
    toString() {
        return 'flush()';
    }
}
class ReopenCommand {
    check() {
        return true;
    }
    async run(_m, r) {
        await r.reopen();
    }
    toString() {
        return 'close+reopen()';
    }
}
class StatusCommand {
    offset;
    length;
    options;
    constructor(offset, length, options) {
        this.offset = offset;
        this.length = length;
        this.options = options;
    }
    check() {
        return true;
    }
    async run(m, r) {
        await checkStatusAt(r.image, m, this.offset, this.length, this.options);
    }
    toString() {
        return `status(${this.offset}, +${this.length})`;
    }
}
class MapCommand {
    options;
    constructor(options) {
        this.options = options;
    }
    check() {
        return true;
    }
    async run(m, r) {
        await checkMap(r.image, m, this.options);
    }
    toString() {
        return 'map()';
    }
}
/**
 * The command sequences `checkReadAfterWrite` runs, for authors who want to
 * drive `fc.asyncModelRun` themselves: writes (weight 6), reads (5),
 * status queries (2), flushes (1), close/reopen (1) and full maps (1).
 */
export function imageCommands(range, options) {
    const ranges = rangeArb(range);
    const command = fc.oneof({ arbitrary: fc.tuple(ranges, seedArb(), fillKindArb()).map(([r, seed, kind]) => new WriteCommand(r.offset, r.length, seed, kind)), weight: 6 }, { arbitrary: ranges.map((r) => new ReadCommand(r.offset, r.length)), weight: 5 }, { arbitrary: ranges.map((r) => new StatusCommand(r.offset, r.length, options)), weight: 2 }, { arbitrary: fc.constant(new FlushCommand()), weight: 1 }, { arbitrary: fc.constant(new ReopenCommand()), weight: 1 }, { arbitrary: fc.constant(new MapCommand(options)), weight: 1 });
    // size 'max': lengths spread over [0, maxOps] instead of fast-check's short default.
    return fc.commands([command], {
        maxCommands: options.maxOps,
        size: 'max',
        ...(options.replayPath !== undefined ? { replayPath: options.replayPath } : {}),
    });
}
/** Resolved range constraints for a subject. */
export function rangeConstraints(subject, options) {
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
export async function setUp(subject, seed) {
    const vfs = new MemoryVfs('/');
    const instance = await subject.setup({ vfs, seed });
    if (instance.initial.length !== subject.size) {
        throw new Error(`${subject.name}: setup() returned ${instance.initial.length} initial bytes for a ${subject.size}-byte subject`);
    }
    return { vfs, instance };
}
export function checkOpened(subject, image, readOnly) {
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
export async function checkReadAfterWrite(subject, options = {}) {
    const range = rangeConstraints(subject, options);
    const invariants = { writesAllocate: options.writesAllocate ?? true };
    const commands = imageCommands(range, {
        ...invariants,
        maxOps: options.maxOps ?? 50,
        ...(options.replayPath !== undefined ? { replayPath: options.replayPath } : {}),
    });
    await assertProperty(`${subject.name}: read-after-write`, fc.asyncProperty(seedArb(), commands, async (seed, cmds) => {
        const { vfs, instance } = await setUp(subject, seed);
        const model = { content: instance.initial.slice(), written: new Uint8Array(subject.size) };
        const open = async (readOnly) => checkOpened(subject, await instance.open({ vfs, readOnly }), readOnly);
        const real = {
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
        }
        finally {
            await real.image.close().catch(() => undefined);
            await instance.dispose?.();
        }
    }), fcParameters(options));
}
