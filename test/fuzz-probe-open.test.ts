/**
 * Hostile input: fuzz the probe and open paths of every driver (raw, and cow
 * in all six layouts) with mutated valid headers (bit flips, boundary
 * integers in every header field, odd backing paths), random bytes and
 * truncations, then read from whatever opened. Heads of formats without a
 * driver (qcow2, vmdk, VHD, ... see test/fixtures/foreign-samples.ts) are
 * mutated too: a file that still carries such a signature must never be
 * probed as raw. Outcome required for every
 * input: only BlockErrors of the documented kinds, no hang (a time bound per
 * input), no allocation beyond a small bound (a header that claims an
 * exabyte must not allocate), no read outside the file during probe and
 * open, no single transfer above 16 MiB, no write to a read-only image.
 *
 * BLK_FUZZ_INPUTS sets the number of inputs (default 100000; scripts/fuzz-long.mjs runs 1,000,000),
 * BLK_FUZZ_SEED the seed (default 1). A failure prints the seed and input index to replay.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BlockError,
  MemoryStorage,
  MemoryVfs,
  cowDriver,
  defaultHost,
  findForeignFormat,
  openImage,
  signatureTail,
  type BlockErrorKind,
} from '@blk/images';
import { FOREIGN_SAMPLES } from './fixtures/foreign-samples.js';
import { VARIANTS, encodeHeader, type CowHeader, type CowVariant } from '@blk/cow';
import {
  GuardViolation,
  GuardedVfs,
  HangError,
  Rng,
  mutate,
  withTimeout,
  yielder,
  type FieldSpec,
  type GuardOptions,
} from '@blk/faults';
import { envInt } from './fixtures/env.js';

/** The registry openImage probes with here (the default host's). */
const registry = defaultHost().registry;

const INPUTS = envInt('BLK_FUZZ_INPUTS', 100_000);
const SEED = envInt('BLK_FUZZ_SEED', 1);
/** Index of the first input (scripts/fuzz-long.mjs runs consecutive slices in separate processes). */
const FIRST = envInt('BLK_FUZZ_FIRST', 0);
/** Wall-clock bound per input (generous: a 2-core CI machine under load). */
const PER_INPUT_MS = envInt('BLK_FUZZ_INPUT_MS', 2_000);
/** Array-buffer growth allowed while one hostile image is open. */
const MEMORY_BOUND = 64 * 2 ** 20;

/** Kinds a hostile file may legitimately produce (documented in errors.ts). */
const ALLOWED: ReadonlySet<BlockErrorKind> = new Set<BlockErrorKind>([
  'bad-magic',
  'unsupported-version',
  'truncated',
  'invalid-header',
  'unknown-format',
  'unsupported-format',
  'backing-format',
  'backing-missing',
  'backing-mismatch',
  'backing-forbidden',
  'backing-loop',
  'chain-too-deep',
  'not-supported',
  'invalid-argument',
  'out-of-range',
]);

interface Seed {
  name: string;
  /** A file of a format without a driver (picked for a fifth of the mutated and truncated inputs). */
  foreign?: boolean;
  bytes: Uint8Array;
  fields: FieldSpec[];
  pathField?: { offset: number; length: number };
}

const BASE_SIZE = 64 * 1024;

/** Valid images of every variant, as their writers make them (file bytes, bitmap and a little data). */
async function seeds(): Promise<Seed[]> {
  const out: Seed[] = [];
  const make = async (variant: Exclude<CowVariant, 'v3-broken'>, size: number, backing: string) => {
    const storage = new MemoryStorage();
    await cowDriver.create!(storage, {
      size,
      backing: backing ? { path: backing, facts: { size, mtimeSec: 1_600_000_001 } } : undefined,
      driverOptions: { variant },
    });
    const full = storage.file.length;
    const bytes = new Uint8Array(Math.min(full, 32 * 1024));
    storage.file.readAt(0, bytes);
    return bytes;
  };
  const specs: Array<[Exclude<CowVariant, 'v3-broken'>, number, string]> = [
    ['v3', BASE_SIZE, '/f/base.raw'],
    ['v3', 1024 * 1024 + 1536, '/f/base.raw'],
    ['v2-qemu-lp64', BASE_SIZE, '/f/base.raw'],
    ['v2-qemu-lp64', BASE_SIZE, ''],
    ['v2-qemu-ilp32', BASE_SIZE, '/f/base.raw'],
    ['v2-uml', BASE_SIZE, '/f/base.raw'],
    ['v1', BASE_SIZE, '/f/base.raw'],
  ];
  for (const [variant, size, backing] of specs) {
    out.push({ name: `${variant}/${size}`, bytes: await make(variant, size, backing), ...fieldsOf(variant) });
  }
  // v3-broken is never created; build its header from the layout table.
  const header: CowHeader = {
    variant: 'v3-broken',
    magicOrder: 'be',
    version: 3,
    backingFile: '/f/base.raw',
    mtime: 1_600_000_001,
    size: BASE_SIZE,
    sectorSize: 512,
    alignment: 4096,
    cowFormat: 0,
  } as CowHeader;
  const broken = new Uint8Array(8192 + 4096);
  broken.set(encodeHeader(header));
  out.push({ name: 'v3-broken', bytes: broken, ...fieldsOf('v3-broken') });
  // Formats without a driver: their version fields get boundary values too.
  FOREIGN_SAMPLES.forEach((sample, i) => {
    out.push({
      name: `foreign ${sample.format} #${i}`,
      bytes: sample.bytes,
      foreign: true,
      fields: [
        { name: 'version', offset: 4, size: 4, endian: 'be' },
        { name: 'le-version', offset: 16, size: 4, endian: 'le' },
      ],
    });
  });
  return out;
}

function fieldsOf(variant: CowVariant): Pick<Seed, 'fields' | 'pathField'> {
  const spec = VARIANTS[variant];
  const endian = spec.defaultMagicOrder === 'le' && variant === 'v1' ? 'le' : 'be';
  const fields: FieldSpec[] = [];
  let pathField: Seed['pathField'];
  for (const f of spec.fields) {
    if (f.type === 'path') pathField = { offset: f.offset, length: f.size };
    else
      fields.push({
        name: f.field,
        offset: f.offset,
        size: f.size as 4 | 8,
        endian: f.order === 'magic' ? (variant === 'v1' ? 'le' : 'be') : endian,
      });
  }
  return { fields, pathField };
}

// biome-ignore lint/suspicious/noExportsInTest: scripts/fuzz-long.mjs runs the same fuzzer for longer
export interface FuzzStats {
  inputs: number;
  opened: number;
  probedAs: Record<string, number>;
  kinds: Record<string, number>;
  maxMs: number;
  maxGrowth: number;
  largestRead: number;
  failures: string[];
}

function generate(seedList: Seed[], index: number): { input: Uint8Array; origin: string } {
  const rng = new Rng(SEED * 1_000_003 + index);
  const r = rng.float();
  const pickSeed = () => rng.pick(seedList.filter((s) => Boolean(s.foreign) === rng.bool(0.2)));
  if (r < 0.75) {
    const seed = pickSeed();
    return {
      input: mutate(rng, seed.bytes, { fields: seed.fields, pathField: seed.pathField, maxLength: 40 * 1024 }),
      origin: `mutated ${seed.name}`,
    };
  }
  if (r < 0.85) {
    const seed = pickSeed();
    return { input: seed.bytes.slice(0, rng.int(Math.min(seed.bytes.length, 4200))), origin: `truncated ${seed.name}` };
  }
  // Random bytes, half of them behind a COW magic and version (so they get past the first check).
  const bytes = rng.bytes(rng.int(6000));
  if (rng.bool(0.5) && bytes.length >= 8) {
    bytes.set(
      rng.bool(0.8)
        ? [0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, rng.range(1, 4)]
        : [0x4d, 0x4f, 0x4f, 0x4f, rng.range(1, 4), 0, 0, 0],
    );
  }
  return { input: bytes, origin: 'random' };
}

/** Runs one input through probe, open (probed and named) and reads; returns a failure message or undefined. */
async function fuzzOne(input: Uint8Array, rng: Rng, stats: FuzzStats): Promise<string | undefined> {
  const mem = new MemoryVfs('/');
  mem.put('/f/base.raw', new Uint8Array(BASE_SIZE));
  mem.put('/f/img', input);
  const guard: GuardOptions = { maxTransfer: 16 * 2 ** 20, forbidReadPastEnd: true, forbidWrites: true };
  const vfs = new GuardedVfs(mem, guard);
  const classify = (err: unknown, phase: string): string | undefined => {
    if (err instanceof BlockError) {
      stats.kinds[err.kind] = (stats.kinds[err.kind] ?? 0) + 1;
      // KNOWN BUG (reported, core; see the targeted test below): a backing path naming a
      // directory passes exists() and fails in open() as io/ENOENT. Tolerated here only in
      // exactly that form, so that the bulk run keeps checking everything else.
      if (err.kind === 'io' && err.code === 'ENOENT' && phase.startsWith('open') && isDirectory(mem, err.path))
        return undefined;
      return ALLOWED.has(err.kind)
        ? undefined
        : `${phase}: BlockError of undocumented kind ${err.kind}: ${err.message}`;
    }
    if (err instanceof GuardViolation) return `${phase}: ${err.message}`;
    if (err instanceof HangError) return `${phase}: ${err.message}`;
    return `${phase}: untyped ${(err as Error)?.name ?? typeof err}: ${(err as Error)?.message ?? String(err)}`;
  };
  // 1. Probe through the registry (as openImage does).
  const storage = await vfs.open('/f/img', { readOnly: true });
  try {
    const result = await withTimeout(registry.probe(storage, '/f/img'), PER_INPUT_MS, 'probe');
    stats.probedAs[result.driver.name] = (stats.probedAs[result.driver.name] ?? 0) + 1;
    const foreign = findForeignFormat(input.subarray(0, 2048), signatureTail(input, undefined, input.length));
    if (result.driver.name === 'raw' && foreign) {
      return `probe: guessed raw for a file with a ${foreign.format} signature (${foreign.evidence})`;
    }
  } catch (err) {
    const bad = classify(err, 'probe');
    if (bad) return bad;
  } finally {
    await storage.close();
  }
  // 2. Open probed (backing chain allowed inside /f), and 3. named as cow with backing files ignored.
  const attempts: Array<[string, Parameters<typeof openImage>[1]]> = [
    ['open (probed)', { vfs, readOnly: true, backing: { allowedDirs: ['/f'], maxDepth: 4 } }],
    ['open (format cow)', { vfs, readOnly: true, format: 'cow', backing: { mode: 'ignore' } }],
  ];
  for (const [phase, options] of attempts) {
    guard.forbidReadPastEnd = true;
    const before = process.memoryUsage().arrayBuffers;
    let image: Awaited<ReturnType<typeof openImage>>;
    try {
      image = await withTimeout(openImage('/f/img', options), PER_INPUT_MS, phase);
    } catch (err) {
      const bad = classify(err, phase);
      if (bad) return bad;
      continue;
    }
    stats.opened++;
    try {
      // Reads may reach past the end of the file (a QEMU-created file ends after its bitmap).
      guard.forbidReadPastEnd = false;
      const size = image.size;
      const spots = [0, Math.max(0, size - 4096), rng.int(Math.max(1, size))];
      for (const at of spots) {
        const length = Math.min(rng.bool(0.2) ? 256 * 1024 : 4096, size - at);
        if (length > 0) await withTimeout(image.read(at, length), PER_INPUT_MS, `${phase} read`);
      }
      for await (const run of image.map(0, Math.min(size, 2 ** 40))) {
        if (run.start > 64 * 2 ** 20) break;
      }
      image.info();
      const growth = process.memoryUsage().arrayBuffers - before;
      stats.maxGrowth = Math.max(stats.maxGrowth, growth);
      if (growth > MEMORY_BOUND) return `${phase}: array buffers grew by ${growth} bytes while the image was open`;
    } catch (err) {
      const bad = classify(err, `${phase} read`);
      if (bad) return bad;
    } finally {
      await image.close().catch((err: unknown) => classify(err, 'close'));
    }
  }
  return undefined;
}

function isDirectory(mem: MemoryVfs, p: string | undefined): boolean {
  if (p === undefined || mem.files.has(p)) return false;
  const prefix = p.endsWith('/') ? p : `${p}/`;
  return [...mem.files.keys()].some((name) => name.startsWith(prefix));
}

// biome-ignore lint/suspicious/noExportsInTest: scripts/fuzz-long.mjs runs the same fuzzer for longer
export async function runFuzz(count: number, first = 0): Promise<FuzzStats> {
  const seedList = await seeds();
  const stats: FuzzStats = {
    inputs: 0,
    opened: 0,
    probedAs: {},
    kinds: {},
    maxMs: 0,
    maxGrowth: 0,
    largestRead: 0,
    failures: [],
  };
  const breathe = yielder();
  for (let i = first; i < first + count; i++) {
    await breathe();
    const { input, origin } = generate(seedList, i);
    const t0 = performance.now();
    let failure: string | undefined;
    try {
      failure = await fuzzOne(input, new Rng(SEED * 7 + i), stats);
    } catch (err) {
      failure = `harness: ${String(err)}`;
    }
    const ms = performance.now() - t0;
    stats.maxMs = Math.max(stats.maxMs, ms);
    if (!failure && ms > PER_INPUT_MS) failure = `took ${ms.toFixed(0)} ms`;
    stats.inputs++;
    if (failure) {
      stats.failures.push(`BLK_FUZZ_SEED=${SEED} input #${i} (${origin}, ${input.length} bytes): ${failure}`);
      if (stats.failures.length >= 20) break;
    }
  }
  return stats;
}

describe('fuzz: probe and open of every driver on hostile files', () => {
  it(`${INPUTS} inputs give typed errors only, no hang, bounded memory, no read outside the file`, async () => {
    const t0 = performance.now();
    const stats = await runFuzz(INPUTS, FIRST);
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `FIGURE fuzz: ${stats.inputs} inputs in ${seconds.toFixed(1)} s (seed ${SEED}, from #${FIRST}); opened ${stats.opened} times; `
        + `probed as ${JSON.stringify(stats.probedAs)}; errors ${JSON.stringify(stats.kinds)}; slowest input ${stats.maxMs.toFixed(1)} ms; `
        + `largest growth while open ${(stats.maxGrowth / 2 ** 20).toFixed(1)} MiB; failures ${stats.failures.length}`,
    );
    try {
      mkdirSync('.tmp', { recursive: true });
      appendFileSync(
        '.tmp/figures.jsonl',
        `${JSON.stringify({ name: 'fuzz', at: new Date().toISOString(), value: { ...stats, seconds } })}\n`,
      );
    } catch {
      // a convenience only
    }
    for (const f of stats.failures) console.log(`FUZZ FAILURE ${f}`);
    expect(stats.failures).toEqual([]);
  }, 3_600_000);
});

describe('fuzz findings, as targeted tests', () => {
  /*
   * KNOWN BUG (reported, core; found by the 1M-input run, seed 1 input #13027):
   * a header whose backing path names a directory ('.', '/f', 'x/..') passes
   * openBacking's exists() check and then fails in vfs.open() with
   * io/ENOENT ("/f: no such file or directory"). Expected: backing-missing
   * ("backing file /f is not a regular file"). Fix: stat() the backing path
   * in openBacking and require isFile (MemoryVfs.open of a directory should
   * also say EISDIR, as NodeVfs does).
   */
  it('a backing path that names a directory is refused as backing-missing', async () => {
    const mem = new MemoryVfs('/');
    mem.put('/f/base.raw', new Uint8Array(BASE_SIZE));
    const storage = new MemoryStorage();
    await cowDriver.create!(storage, {
      size: BASE_SIZE,
      backing: { path: '.', facts: { size: BASE_SIZE, mtimeSec: 0 } },
      driverOptions: { variant: 'v2-qemu-lp64' },
    });
    mem.put('/f/img', storage.file.snapshot());
    const err = await openImage('/f/img', { vfs: mem, readOnly: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).kind).toBe('backing-missing');
  });
});
