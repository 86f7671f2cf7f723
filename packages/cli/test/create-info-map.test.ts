/** blk create, info and map through the executable. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { blk, hasCommand, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('info');

const { p } = scratch;
const json = (args: string[]) => {
  const r = blk(args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
};
const mtimeSec = (file: string) => Number(fs.statSync(file, { bigint: true }).mtimeNs / 1_000_000_000n);

describe('blk create', () => {
  it.each([
    ['512', 512],
    ['64k', 65536],
    ['10M', 10485760],
    ['2G', 2147483648],
    ['1T', 2 ** 40],
    ['1.5G', 1610612736],
  ])('raw image of %s', (size, bytes) => {
    const img = p(`raw-${size}.img`);
    const r = blk(['create', '-f', 'raw', img, size]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`Formatting '${img}', fmt=raw size=${bytes}\n`);
    expect(fs.statSync(img).size).toBe(bytes);
    expect(json(['info', '--output=json', img])['virtual-size']).toBe(bytes);
    fs.unlinkSync(img);
  });

  it('-q prints nothing; the default format is raw; an existing file is replaced (as qemu-img)', () => {
    const img = p('q.img');
    fs.writeFileSync(img, 'old contents');
    const r = blk(['create', '-q', img, '1M']);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(json(['info', '--output=json', img])).toMatchObject({ format: 'raw', 'virtual-size': 1048576 });
  });

  it('needs a size without a backing file', () => {
    const r = blk(['create', '-f', 'raw', p('nosize.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`blk: ${p('nosize.img')}: image creation needs a size parameter\n`);
    expect(fs.existsSync(p('nosize.img'))).toBe(false);
  });

  it("cow overlay: size defaults to the backing file's, v3 header as UML writes it", () => {
    rawFile(p('base.img'), 4 << 20);
    const r = blk(['create', '-f', 'cow', '-b', p('base.img'), p('ovl.cow')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`Formatting '${p('ovl.cow')}', fmt=cow size=${4 << 20} backing_file=${p('base.img')}\n`);
    const head = fs.readFileSync(p('ovl.cow')).subarray(0, 32);
    expect(head.subarray(0, 8).toString('hex')).toBe('4f4f4f4d00000003');
    const info = json(['info', '--output=json', p('ovl.cow')]);
    expect(info).toMatchObject({
      filename: p('ovl.cow'),
      format: 'cow',
      'virtual-size': 4 << 20,
      'backing-filename': p('base.img'),
      'full-backing-filename': p('base.img'),
      'backing-filename-format': 'raw',
      'dirty-flag': false,
    });
    expect(typeof info['actual-size']).toBe('number');
    expect(info['format-specific']).toMatchObject({
      type: 'cow',
      data: {
        version: 3,
        variant: 'v3',
        'sector-size': 512,
        alignment: 4096,
        'backing-mtime': mtimeSec(p('base.img')),
        'backing-size': 4 << 20,
        'backing-mtime-matches': true,
        'backing-size-matches': true,
      },
    });
  });

  it("-o version=2 makes QEMU's v2 cow; -o help lists the options", () => {
    rawFile(p('b2.img'), 1 << 20);
    const r = blk(['create', '-f', 'cow', '-o', 'version=2', '-b', p('b2.img'), p('v2.cow')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('version=2');
    expect((json(['info', '--output=json', p('v2.cow')])['format-specific'] as { data: unknown }).data).toMatchObject({
      version: 2,
      variant: 'v2-qemu-lp64',
    });
    const help = blk(['create', '-f', 'cow', '-o', 'help', p('unused.cow')]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Supported options:\n/);
    expect(help.stdout).toContain('version=<3|2|1>');
    expect(fs.existsSync(p('unused.cow'))).toBe(false);
    const bad = blk(['create', '-f', 'cow', '-o', 'version=7', '-b', p('b2.img'), p('v7.cow')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(`blk: ${p('v7.cow')}: invalid cow version '7' (expected 3, 2 or 1)\n`);
  });

  it("a relative -b is relative to the new image's directory (as qemu-img)", () => {
    fs.mkdirSync(p('sub'));
    rawFile(p('sub/base.img'), 1 << 20);
    const r = blk(['create', '-f', 'cow', '-b', 'base.img', 'sub/rel.cow'], { cwd: scratch.dir });
    expect(r.code).toBe(0);
    expect(json(['info', '--output=json', p('sub/rel.cow')])['backing-filename']).toBe(p('sub/base.img'));
  });

  it('a missing backing file is one clear error and leaves no file', () => {
    const r = blk(['create', '-f', 'cow', '-b', p('nope.img'), p('orphan.cow')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`blk: ${p('orphan.cow')}: backing file ${p('nope.img')} not found\n`);
    expect(fs.existsSync(p('orphan.cow'))).toBe(false);
  });

  it('driver refusals are one line: a v3 overlay must match its backing size', () => {
    rawFile(p('b3.img'), 1 << 20);
    const r = blk(['create', '-q', '-f', 'cow', '-b', p('b3.img'), p('big.cow'), '2M']);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^blk: .*big\.cow: .*backing file's size/);
    expect(fs.existsSync(p('big.cow'))).toBe(false);
  });
});

describe('blk info', () => {
  it('human output', () => {
    rawFile(p('hb.img'), 1 << 20, [[0, 65536, 1]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('hb.img'), p('h.cow')]).code).toBe(0);
    const r = blk(['info', p('h.cow')]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 3)).toEqual([
      `image: ${p('h.cow')}`,
      'file format: cow',
      'virtual size: 1 MiB (1048576 bytes)',
    ]);
    expect(lines[3]).toMatch(/^disk size: \d+(\.\d+)? (B|KiB)$/);
    expect(lines.slice(4, 7)).toEqual([
      `backing file: ${p('hb.img')}`,
      'backing file format: raw',
      'Format specific information:',
    ]);
    expect(r.stdout).toContain('\n    version: 3\n');
    expect(r.stdout).toContain('\n    sector size: 512\n');
    expect(r.stdout).toContain('\n    backing mtime matches: true\n');
  });

  it('--backing-chain lists every layer (human and json)', () => {
    const human = blk(['info', '--backing-chain', p('h.cow')]);
    expect(human.code).toBe(0);
    const blocks = human.stdout.split('\n\n');
    expect(blocks).toHaveLength(2);
    expect(blocks[1]).toMatch(
      new RegExp(`^image: ${p('hb.img')}\nfile format: raw\nvirtual size: 1 MiB \\(1048576 bytes\\)\n`),
    );
    const r = blk(['info', '--backing-chain', '--output=json', p('h.cow')]);
    const chain = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    expect(chain.map((e) => [e.filename, e.format])).toEqual([
      [p('h.cow'), 'cow'],
      [p('hb.img'), 'raw'],
    ]);
  });

  it('reports a changed backing file instead of refusing, and keeps working when it is missing', () => {
    rawFile(p('mb.img'), 1 << 20);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('mb.img'), p('m.cow')]).code).toBe(0);
    const later = new Date(Date.now() + 100_000);
    fs.utimesSync(p('mb.img'), later, later);
    const info = json(['info', '--output=json', p('m.cow')]);
    expect((info['format-specific'] as { data: Record<string, unknown> }).data['backing-mtime-matches']).toBe(false);
    // Using the overlay is refused, with the reason in one line (blk io's is qemu-io's can't-open line).
    const io = blk(['io', '-c', 'read 0 512', p('m.cow')]);
    expect(io.code).toBe(1);
    expect(io.stderr).toMatch(
      /^qemu-io: can't open device .*m\.cow: backing file .*mb\.img: mtime \d+ differs from \d+ recorded in the overlay; /,
    );
    expect(io.stderr).toMatch(/; if the change is harmless, record it with: blk rebase -u -b \S+mb\.img \S+m\.cow\n$/);
    // ... and that advice works.
    const fixed = blk(['rebase', '-u', '-b', p('mb.img'), p('m.cow')]);
    expect(fixed).toMatchObject({ code: 0, stderr: '' });
    expect(blk(['io', '-c', 'read -P 0 0 512', p('m.cow')]).code).toBe(0);
    fs.utimesSync(p('mb.img'), later, new Date(Date.now() + 200_000));
    fs.unlinkSync(p('mb.img'));
    const gone = json(['info', '--output=json', p('m.cow')]);
    expect(gone['backing-filename']).toBe(p('mb.img'));
    const chain = blk(['info', '--backing-chain', p('m.cow')]);
    expect(chain.code).toBe(1);
    expect(chain.stderr).toBe(`blk: ${p('m.cow')}: backing file ${p('mb.img')} not found\n`);
  });

  it("JSON keys come in qemu-img's order", () => {
    const r = blk(['info', '--output=json', p('h.cow')]);
    const keys = [...r.stdout.matchAll(/^ {4}"([a-z-]+)":/gm)].map((m) => m[1]);
    expect(keys).toEqual([
      'backing-filename-format',
      'virtual-size',
      'filename',
      'format',
      'actual-size',
      'format-specific',
      'full-backing-filename',
      'backing-filename',
      'dirty-flag',
    ]);
  });

  it.skipIf(!hasCommand('qemu-img'))('raw output is byte-identical to qemu-img info (qemu-img installed)', () => {
    rawFile(p('q1.img'), 3 << 20, [[65536, 65536, 7]]);
    for (const args of [[], ['--output=json']]) {
      const ours = blk(['info', ...args, 'q1.img'], { cwd: scratch.dir });
      const theirs = spawnSync('qemu-img', ['info', '-f', 'raw', ...args, 'q1.img'], {
        cwd: scratch.dir,
        encoding: 'utf8',
      });
      expect(ours.stdout).toBe(theirs.stdout);
    }
  });
});

describe('blk map', () => {
  it("JSON: allocation across the chain in maximal runs, qemu-img map's shape", () => {
    rawFile(p('mapb.img'), 1 << 20, [[0, 1 << 20, 0x11]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('mapb.img'), p('map.cow')]).code).toBe(0);
    expect(
      blk([
        'io',
        '-c',
        'write -P 0x22 512 1k',
        '-c',
        'write -P 0x33 64k 64k',
        '-c',
        'write -P 0x44 128k 4k',
        p('map.cow'),
      ]).code,
    ).toBe(0);
    const r = blk(['map', '--output=json', p('map.cow')]);
    expect(r.code).toBe(0);
    // Data of layer 0 lies at data offset 12288 (v3, 1 MiB) + guest offset.
    expect(r.stdout).toBe(
      '[{ "start": 0, "length": 512, "depth": 1, "present": true, "zero": false, "data": true, "offset": 0},\n'
        + '{ "start": 512, "length": 1024, "depth": 0, "present": true, "zero": false, "data": true, "offset": 12800},\n'
        + '{ "start": 1536, "length": 64000, "depth": 1, "present": true, "zero": false, "data": true, "offset": 1536},\n'
        + '{ "start": 65536, "length": 69632, "depth": 0, "present": true, "zero": false, "data": true, "offset": 77824},\n'
        + '{ "start": 135168, "length": 913408, "depth": 1, "present": true, "zero": false, "data": true, "offset": 135168}]\n',
    );
    const parsed = JSON.parse(r.stdout) as Array<{ start: number; length: number }>;
    expect(parsed.reduce((n, e) => n + e.length, 0)).toBe(1 << 20);
  });

  it('human output: data runs with host offsets and files', () => {
    const r = blk(['map', p('map.cow')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'Offset          Length          Mapped to       File\n'
        + `0               0x200           0               ${p('mapb.img')}\n`
        + `0x200           0x400           0x3200          ${p('map.cow')}\n`
        + `0x600           0xfa00          0x600           ${p('mapb.img')}\n`
        + `0x10000         0x11000         0x13000         ${p('map.cow')}\n`
        + `0x21000         0xdf000         0x21000         ${p('mapb.img')}\n`,
    );
  });

  it('unallocated runs without a backing layer read as zeros (depth of the bottom, present false)', () => {
    rawFile(p('zb.img'), 1 << 20);
    expect(blk(['create', '-q', '-f', 'cow', '-o', 'version=2', p('z.cow'), '1M']).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 1 4k 4k', p('z.cow')]).code).toBe(0);
    const entries = JSON.parse(blk(['map', '--output=json', p('z.cow')]).stdout) as unknown[];
    expect(entries).toEqual([
      { start: 0, length: 4096, depth: 0, present: false, zero: true, data: false },
      { start: 4096, length: 4096, depth: 0, present: true, zero: false, data: true, offset: expect.any(Number) },
      { start: 8192, length: (1 << 20) - 8192, depth: 0, present: false, zero: true, data: false },
    ]);
    // The human format lists only data.
    expect(
      blk(['map', p('z.cow')])
        .stdout.split('\n')
        .filter(Boolean),
    ).toHaveLength(2);
  });

  it('--start-offset and --max-length limit the map', () => {
    const entries = JSON.parse(
      blk(['map', '--output=json', '-s', '64k', '-l', '8k', p('map.cow')]).stdout,
    ) as unknown[];
    expect(entries).toEqual([
      { start: 65536, length: 8192, depth: 0, present: true, zero: false, data: true, offset: 77824 },
    ]);
  });
});
