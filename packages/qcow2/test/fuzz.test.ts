/**
 * The header fuzzer on qcow2 headers and tables (the catalogue of QEMU
 * iotests 036, 060 and 080: every header field at boundary values, L1 and L2
 * entries (standard and extended) at boundary values, bit flips, random
 * bytes, truncations): images made by qemu-img (512 B, 4 KiB and 16 KiB
 * clusters; deflate, zstd, extended L2, v2 with a backing format extension)
 * are mutated, opened as qcow2 from memory and read (spots and a block-status
 * walk). Every input must end in a BlockError of a documented kind or a
 * successful read: no other exception, no hang, no read larger than QEMU's
 * 32 MiB L1 bound, no write, array buffers bounded (64 MiB past the L1 table).
 *
 * BLK_QCOW2_FUZZ_INPUTS sets the number of inputs (default 3000), BLK_FUZZ_SEED the seed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlockError, MemoryVfs, openImage, type BlockErrorKind } from '@blk/images';
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
const SKIP = 'qemu-img/qemu-io are not installed (apt-get install qemu-utils): the qcow2 fuzzer has no seeds';
const INPUTS = Number(process.env.BLK_QCOW2_FUZZ_INPUTS ?? 3000);
const SEED = Number(process.env.BLK_FUZZ_SEED ?? 1);
const PER_INPUT_MS = 2000;

const ALLOWED: ReadonlySet<BlockErrorKind> = new Set<BlockErrorKind>([
  'bad-magic',
  'unsupported-version',
  'truncated',
  'invalid-header',
  'not-supported',
  'io', // a compressed cluster that does not decompress (EIO, as QEMU)
  'out-of-range',
  'backing-missing',
  'backing-forbidden',
  'backing-format',
  'unknown-format', // a mangled backing format name
]);

interface Seed {
  name: string;
  bytes: Uint8Array;
  fields: FieldSpec[];
}

let dir: string;
const seeds: Seed[] = [];

const { run } = qemuTools(() => dir);

/** The header fields (QEMU's QCowHeader) and the first L1 and L2 entries, as fields to mutate. */
function fieldsOf(b: Buffer): FieldSpec[] {
  const be = (offset: number, size: 4 | 8, name: string): FieldSpec => ({ name, offset, size, endian: 'be' });
  const fields = [
    be(4, 4, 'version'),
    be(8, 8, 'backing_file_offset'),
    be(16, 4, 'backing_file_size'),
    be(20, 4, 'cluster_bits'),
    be(24, 8, 'size'),
    be(32, 4, 'crypt_method'),
    be(36, 4, 'l1_size'),
    be(40, 8, 'l1_table_offset'),
    be(48, 8, 'refcount_table_offset'),
    be(56, 4, 'refcount_table_clusters'),
    be(60, 4, 'nb_snapshots'),
    be(64, 8, 'snapshots_offset'),
    be(72, 8, 'incompatible_features'),
    be(80, 8, 'compatible_features'),
    be(88, 8, 'autoclear_features'),
    be(96, 4, 'refcount_order'),
    be(100, 4, 'header_length'),
    be(104, 4, 'compression_type (and padding)'),
    be(112, 4, 'first extension type'),
    be(116, 4, 'first extension length'),
  ];
  const extended = (b.readUInt8(79) & 0x10) !== 0;
  const l1 = Number(b.readBigUInt64BE(40));
  for (let i = 0; i < 4 && l1 + i * 8 + 8 <= b.length; i++) fields.push(be(l1 + i * 8, 8, `l1[${i}]`));
  const l2 = l1 + 8 <= b.length ? Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n) : 0;
  const stride = extended ? 16 : 8;
  for (let i = 0; l2 > 0 && i < 12 && l2 + i * stride + stride <= b.length; i++) {
    fields.push(be(l2 + i * stride, 8, `l2[${i}]`));
    if (extended) fields.push(be(l2 + i * stride + 8, 8, `l2[${i}].bitmap`));
  }
  const rt = Number(b.readBigUInt64BE(48));
  if (rt + 8 <= b.length) fields.push(be(rt, 8, 'refcount_table[0]'));
  return fields;
}

beforeAll(() => {
  if (!QEMU) return;
  dir = tempDir('qcow2-fuzz');
  run('qemu-img', ['create', '-q', '-f', 'raw', 'base.raw', '256K']);
  const make: Array<[string, string[], string[]]> = [
    ['c512', ['-o', 'cluster_size=512'], ['write -P 0x11 0 3k', 'write -z 8k 2k', 'write -P 0x12 100k 700']],
    ['deflate', ['-o', 'cluster_size=4k'], ['write -c -P 0x21 0 4k', 'write -c -P 0x22 4k 4k', 'write -P 0x23 64k 4k']],
    ['zstd', ['-o', 'cluster_size=4k,compression_type=zstd'], ['write -c -P 0x31 0 4k', 'write -c -P 0x32 8k 4k']],
    [
      'extl2',
      ['-o', 'cluster_size=16k,extended_l2=on'],
      ['write -P 0x41 1k 2k', 'write -z 20k 1k', 'write -P 0x42 64k 16k'],
    ],
    ['v2', ['-o', 'compat=0.10,cluster_size=1k', '-b', 'base.raw', '-F', 'raw'], ['write -P 0x51 2k 1k']],
  ];
  for (const [name, opts, writes] of make) {
    run('qemu-img', ['create', '-q', '-f', 'qcow2', ...opts, `${name}.qcow2`, '256K']);
    run('qemu-io', [...writes.flatMap((w) => ['-c', w]), `${name}.qcow2`]);
    const b = fs.readFileSync(path.join(dir, `${name}.qcow2`));
    seeds.push({ name, bytes: new Uint8Array(b), fields: fieldsOf(b) });
  }
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function generate(index: number): { input: Uint8Array; origin: string } {
  const rng = new Rng(SEED * 1_000_003 + index);
  const seed = rng.pick(seeds);
  if (rng.bool(0.9)) {
    return {
      input: mutate(rng, seed.bytes, { fields: seed.fields, maxLength: seed.bytes.length + 8192 }),
      origin: `mutated ${seed.name}`,
    };
  }
  return { input: seed.bytes.slice(0, rng.int(seed.bytes.length)), origin: `truncated ${seed.name}` };
}

async function fuzzOne(input: Uint8Array, rng: Rng, kinds: Record<string, number>): Promise<string | undefined> {
  const mem = new MemoryVfs('/');
  mem.put('/f/base.raw', new Uint8Array(256 * 1024));
  mem.put('/f/img', input);
  // QEMU's L1 bound is 32 MiB: a valid (huge) image may read that much at once.
  const guard: GuardOptions = { maxTransfer: 32 * 2 ** 20, forbidReadPastEnd: false, forbidWrites: true };
  const vfs = new GuardedVfs(mem, guard);
  const classify = (err: unknown, phase: string): string | undefined => {
    if (err instanceof BlockError) {
      kinds[err.kind] = (kinds[err.kind] ?? 0) + 1;
      return ALLOWED.has(err.kind) ? undefined : `${phase}: BlockError of kind ${err.kind}: ${err.message}`;
    }
    if (err instanceof GuardViolation || err instanceof HangError) return `${phase}: ${err.message}`;
    return `${phase}: untyped ${(err as Error)?.name}: ${(err as Error)?.message ?? String(err)}`;
  };
  const before = process.memoryUsage().arrayBuffers;
  let image: Awaited<ReturnType<typeof openImage>>;
  try {
    image = await withTimeout(
      openImage('/f/img', { vfs, readOnly: true, format: 'qcow2', backing: { allowedDirs: ['/f'], maxDepth: 2 } }),
      PER_INPUT_MS,
      'open',
    );
  } catch (err) {
    return classify(err, 'open');
  }
  kinds.opened = (kinds.opened ?? 0) + 1;
  try {
    const size = image.size;
    for (const at of [0, Math.max(0, size - 4096), rng.int(Math.max(1, size))]) {
      const length = Math.min(rng.bool(0.3) ? 256 * 1024 : 4096, size - at);
      if (length > 0) await withTimeout(image.read(at, length), PER_INPUT_MS, 'read');
    }
    let runs = 0;
    for await (const run of image.map(0, size)) {
      if (++runs > 256 || run.start > 64 * 2 ** 20) break;
    }
    image.info();
    const growth = process.memoryUsage().arrayBuffers - before;
    if (growth > 96 * 2 ** 20) return `array buffers grew by ${growth} bytes while the image was open`;
  } catch (err) {
    const bad = classify(err, 'read');
    if (bad) return bad;
  } finally {
    await image.close().catch((err: unknown) => classify(err, 'close'));
  }
  return undefined;
}

describe('fuzz: hostile qcow2 headers and tables', () => {
  it(`${INPUTS} mutated qemu-img images give typed errors or reads only: no hang, no other exception, bounded memory`, async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const failures: string[] = [];
    const kinds: Record<string, number> = {};
    const breathe = yielder();
    const t0 = performance.now();
    for (let i = 0; i < INPUTS && failures.length < 10; i++) {
      await breathe();
      const { input, origin } = generate(i);
      const failure = await fuzzOne(input, new Rng(SEED * 7 + i), kinds).catch(
        (err: unknown) => `harness: ${String(err)}`,
      );
      if (failure) failures.push(`BLK_FUZZ_SEED=${SEED} input #${i} (${origin}, ${input.length} bytes): ${failure}`);
    }
    console.log(
      `FIGURE qcow2 fuzz: ${INPUTS} inputs in ${((performance.now() - t0) / 1000).toFixed(1)} s; outcomes ${JSON.stringify(kinds)}`,
    );
    expect(failures).toEqual([]);
    // The inputs reach past the header: some open and read, and several refusal kinds occur.
    expect(kinds.opened ?? 0).toBeGreaterThan(INPUTS / 10);
    expect(Object.keys(kinds).length).toBeGreaterThan(4);
  }, 300_000);
});
