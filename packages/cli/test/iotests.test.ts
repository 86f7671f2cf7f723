/**
 * Recipes from QEMU's qemu-iotests that ran against the cow format (017:
 * simple backing file reads, 020: commit changes to the backing file), run
 * through `blk io` the way common.pattern drives qemu-io: commands on stdin,
 * output through _filter_qemu_io, compared with the expected lines.
 *
 * Two set-ups: QEMU's own cow (v2, as IMGFMT=cow made: a cow base without a
 * backing file under a cow overlay) and UML's (a v3 overlay on a raw base).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { blk, filterQemuIo, scratchDir } from './helpers.js';

const scratch = scratchDir('iotests');

const REPORT = 'X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)';
const TEST_OFFSETS = [0, 4294967296];
const SIZE = '6G';

function human(n: number): string {
  return n === 512 ? '512 bytes' : n === 1024 ? '1 KiB' : n === 65536 ? '64 KiB' : `${n} bytes`;
}

interface Img {
  path: string;
  /** Extra options for `blk io`/`commit` (how backing files are opened). */
  opts: string[];
}

/**
 * common.pattern's do_io, its output through _filter_qemu_io. Each io()
 * call of the recipe adds its commands and expected lines to a batch; one
 * `blk io` process runs a whole phase (qemu-iotests starts one qemu-io per
 * call, which only costs time).
 */
class Batch {
  private readonly cmds: string[] = [];
  private readonly expected: string[] = [];

  constructor(private readonly img: Img) {}

  doIo(op: 'writev' | 'readv', start: number, size: number, step: number, count: number, pattern: number): this {
    for (let i = 1; i <= count; i++) {
      const off = start + (i - 1) * step;
      this.cmds.push(`${op} -P ${pattern} ${off} ${size}`);
      this.expected.push(
        `${op === 'writev' ? 'wrote' : 'read'} ${size}/${size} bytes at offset ${off}`,
        `${human(size)}, ${REPORT}`,
      );
    }
    return this;
  }

  /** io(): the pattern is (start >> 9) % 256, computed as bash does on 64-bit integers. */
  io(op: 'writev' | 'readv', start: number, size: number, step: number, count: number): this {
    return this.doIo(op, start, size, step, count, Number((BigInt(start) >> 9n) % 256n));
  }

  ioZero(op: 'readv', start: number, size: number, step: number, count: number): this {
    return this.doIo(op, start, size, step, count, 0);
  }

  run(): void {
    // As qemu-iotests' $QEMU_IO: qemu-io --cache $CACHEMODE --aio $AIOMODE (writeback and threads by default).
    const r = blk(['io', '--cache', 'writeback', '--aio', 'threads', ...this.img.opts, this.img.path], {
      input: `${this.cmds.join('\n')}\n`,
    });
    expect(r.stderr).toBe('');
    expect(filterQemuIo(r.stdout)).toBe(`${this.expected.join('\n')}\n`);
    expect(r.code).toBe(0);
  }
}

/** _check_test_img with _filter_qemu_img_check. */
function checkTestImg(img: Img): void {
  const r = blk(['check', ...img.opts, img.path]);
  const filtered = r.stdout
    .split('\n')
    .filter((l) => !/allocated.*fragmented.*compressed clusters/.test(l) && !/^Image end offset/.test(l))
    .join('\n');
  expect(filtered).toBe('No errors were found on the image.\n');
  expect(r.code).toBe(0);
}

function fillBase(img: Img): void {
  const b = new Batch(img);
  for (const offset of TEST_OFFSETS) {
    // Some clusters with alternating backing file/image file reads
    b.io('writev', offset, 512, 1024, 64);
    // Complete backing clusters
    b.io('writev', offset + 64 * 1024, 65536, 65536, 1);
  }
  b.run();
}

function fillTest(img: Img): void {
  const b = new Batch(img);
  for (const offset of TEST_OFFSETS) {
    b.io('writev', offset + 512, 512, 1024, 64);
    b.io('writev', offset + 64 * 1024 + 65536, 65536, 65536, 1);
  }
  b.run();
}

function readAll(img: Img): void {
  const b = new Batch(img);
  for (const offset of TEST_OFFSETS) {
    b.io('readv', offset, 512, 1024, 64);
    b.io('readv', offset + 512, 512, 1024, 64);
    b.io('readv', offset + 64 * 1024, 65536, 65536, 1);
    b.io('readv', offset + 64 * 1024 + 65536, 65536, 65536, 1);
    // Empty sectors
    b.ioZero('readv', offset + 64 * 1024 + 65536 * 4, 65536, 65536, 1);
  }
  b.run();
}

interface Setup {
  name: string;
  /** Makes the base image (filled by the recipe) and returns it. */
  makeBase(file: string): Img;
  /** Makes the overlay on `base`. */
  makeOverlay(file: string, base: Img): Img;
}

const SETUPS: Setup[] = [
  {
    name: 'QEMU cow (v2) on a cow base',
    makeBase(file) {
      expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', file, SIZE]).code).toBe(0);
      return { path: file, opts: [] };
    },
    makeOverlay(file, base) {
      const r = blk(['create', '-f', 'cow', '-o', 'version=2', '-b', base.path, '-F', 'cow', file, SIZE]);
      expect(r.stdout).toBe(
        `Formatting '${file}', fmt=cow size=6442450944 backing_file=${base.path} backing_fmt=cow version=2\n`,
      );
      expect(r.code).toBe(0);
      // QEMU's cow records no backing format: let blk probe it, as QEMU did.
      return { path: file, opts: ['--backing-probe'] };
    },
  },
  {
    name: 'UML cow (v3) on a raw base',
    makeBase(file) {
      expect(blk(['create', '-q', '-f', 'raw', file, SIZE]).code).toBe(0);
      return { path: file, opts: ['-f', 'raw'] };
    },
    makeOverlay(file, base) {
      expect(blk(['create', '-q', '-f', 'cow', '-b', base.path, file]).code).toBe(0);
      return { path: file, opts: [] };
    },
  },
];

describe.each(SETUPS)('qemu-iotests recipes: $name', (setup) => {
  it('017: simple backing file reads', () => {
    const testImg = path.join(scratch.dir, `017-${setup.name.split(' ')[0]}.cow`);
    const base = setup.makeBase(`${testImg}.base`);
    fillBase(base);
    if (base.opts[1] !== 'raw') checkTestImg(base);
    const img = setup.makeOverlay(testImg, base);
    fillTest(img);
    checkTestImg(img);
    readAll(img);
    checkTestImg(img);
  });

  it('020: commit changes to the backing file', () => {
    const testImg = path.join(scratch.dir, `020-${setup.name.split(' ')[0]}.cow`);
    const base = setup.makeBase(`${testImg}.base`);
    fillBase(base);
    const img = setup.makeOverlay(testImg, base);
    fillTest(img);
    checkTestImg(img);
    const r = blk(['commit', ...img.opts, img.path]);
    expect(r).toMatchObject({ code: 0, stdout: 'Image committed.\n', stderr: '' });
    // mv "$TEST_IMG.base" "$TEST_IMG": read everything from the former backing file.
    const committed: Img = { path: `${testImg}.committed`, opts: base.opts };
    fs.renameSync(base.path, committed.path);
    readAll(committed);
    if (base.opts[1] !== 'raw') checkTestImg(committed);
  });
});
