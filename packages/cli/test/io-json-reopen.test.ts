/**
 * blk io against the real qemu-io on twin images, for what QEMU's iotests found missing:
 *
 * - `json:` filenames (iotests 171, 089): QEMU's dialect ('single quotes'), nested and dotted
 *   (`file.filename`) options, raw's `offset` and `size` (a window on the file, with QEMU's
 *   boundary errors and open checks), `backing: null`, `-o` options winning over the name's, and
 *   QEMU's parse errors for a malformed name (one line, no crash).
 * - `reopen` (iotests 187, 133, 039, 171): -r/-w, what cannot change (`node-name`, `driver`),
 *   what cannot be mixed (-r/-w with `read-only`, -c with `cache.*`), bad values, qcow2's
 *   `lazy-refcounts` (the dirty bit left by a killed writer), raw's window moved.
 * - qemu-io's error lines (iotests 069, 114, 187): `qemu-io: can't open device NAME: Could not open
 *   backing file: ...`, `qemu-io: Block node is read-only`.
 *
 * Every comparison is of stdout and stderr, filtered as the iotests filter them, file names made equal.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { blk, filterQemuIo, hasCommand, qemuImg, qemuIo, rawFile, scratchDir } from './helpers.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
const scratch = scratchDir('io-json-reopen');
const { p } = scratch;

interface Run {
  out: string;
  err: string;
  code: number | null;
}

/**
 * Runs `args(file)` with blk io on `ours` and with qemu-io on `theirs` (each name replaced by FILE
 * in the output), one run after another when the arguments are a list of runs.
 */
function both(args: (file: string) => string[], ours: string, theirs: string): { blk: Run; qemu: Run } {
  const norm = (r: { stdout: string; stderr: string; code: number | null }, file: string): Run => ({
    out: filterQemuIo(r.stdout).replaceAll(file, 'FILE'),
    err: r.stderr.replaceAll(file, 'FILE'),
    code: r.code,
  });
  return { blk: norm(blk(['io', ...args(ours)]), ours), qemu: norm(qemuIo(args(theirs)), theirs) };
}

const cmds = (list: string[]) => list.flatMap((c) => ['-c', c]);

/** iotest 171's img_json: raw with an offset (and a size) over a file. */
const rawJson = (file: string, offset: number | string, size?: number | string) =>
  `json:{"driver":"raw", "offset":"${offset}", ${size !== undefined ? `"size":"${size}", ` : ''}"file": {"driver":"file", "filename":"${file}" } }`;

describe.skipIf(!QEMU)('blk io json: filenames against qemu-io', () => {
  it('171: raw offset and size: a window on the file, with qemu-io errors at its boundary', () => {
    for (const [offset, size] of [
      [512, undefined],
      [512, 2048],
    ] as const) {
      for (const who of ['blk', 'qemu']) rawFile(p(`${who}.raw`), 4096, [[0, 4096, 0x0a]]);
      const end = size ?? 4096 - offset;
      const runs = [
        [`write -P 0x0b 0 ${end}`],
        [`read -P 0x0b 0 ${end}`],
        [`write ${end - 1} 1`, `write ${end - 1} 2`, `write ${end} 1`, `writev ${end - 512} 512 512`],
        [`read ${end - 1} 2`, `read ${end + 512} 1`, `readv ${end - 512} 512 512`],
        ['write -z 0 512', `write -z ${end - 1} 2`, `write -z ${end - 2} 2`, 'discard 0 512', `discard ${end - 1} 2`],
      ];
      for (const run of runs) {
        const r = both((f) => ['-f', 'raw', ...cmds(run), rawJson(f, offset, size)], p('blk.raw'), p('qemu.raw'));
        expect(r.blk, run.join('; ')).toEqual(r.qemu);
      }
      // Where the window's writes landed in the file.
      expect(fs.readFileSync(p('blk.raw'))).toEqual(fs.readFileSync(p('qemu.raw')));
    }
  });

  it("171: raw's open checks and QEMU's JSON parse errors are qemu-io's lines", () => {
    rawFile(p('c.raw'), 4096);
    const names = [
      rawJson(p('c.raw'), 5000),
      rawJson(p('c.raw'), 512, 4000),
      rawJson(p('c.raw'), 0, 1000),
      'json:{',
      'json:[1]',
      'json:{"a":}',
      'json:{"a" 1}',
      'json:{a:1}',
      'json:{"a":tru}',
      'json:{"a":1} {}',
      `json:{"driver":"raw","file":{"filename":"${p('c.raw')}"},"file":{"filename":"x"}}`,
      `json:{"driver":"raw","filename":"${p('c.raw')}"}`,
      `json:{"driver":"raw","file":"${p('c.raw')}"}`,
      `json:{"driver":"raw","file":{"driver":"file"}}`,
      `json:{"driver":"raw","file":{"filename":"${p('c.raw')}"},"node-name":"1x"}`,
      `json:{"driver":"raw","file":{"driver":"file","filename":"${p('nonexistent')}"}}`,
    ];
    for (const name of names) {
      const r = both(() => ['-c', 'read 0 1', name], p('c.raw'), p('c.raw'));
      expect(r.blk, name).toEqual(r.qemu);
      expect(r.blk.code, name).toBe(1);
    }
    // The protocol driver alone: the file's bytes.
    const file = both(
      () => [
        '-c',
        'write -P 0x3c 512 512',
        '-c',
        'read -P 0x3c 512 512',
        `json:{"driver":"file","filename":"${p('c.raw')}"}`,
      ],
      p('c.raw'),
      p('c.raw'),
    );
    expect(file.blk).toEqual(file.qemu);
    expect(file.blk.code).toBe(0);
  });

  it("089: qcow2 by json: (nested, dotted, single-quoted), backing: null, -o winning over the name's options", () => {
    qemuImg(['create', '-q', '-f', 'qcow2', p('base.qcow2'), '1M']);
    qemuIo(['-f', 'qcow2', '-c', 'write -P 42 0 64k', p('base.qcow2')]);
    qemuImg(['create', '-q', '-f', 'qcow2', '-b', p('base.qcow2'), '-F', 'qcow2', p('top.qcow2')]);
    const top = p('top.qcow2');
    const runs: string[][] = [
      ['-c', 'read -P 42 0 512', `json:{"driver":"qcow2","file":{"driver":"file","filename":"${top}"}}`],
      ['-c', 'read -P 0 0 512', `json:{'driver':'qcow2','file':{'driver':'file','filename':'${top}'},'backing':null}`],
      ['-c', 'read -P 42 0 512', `json:{"driver":"qcow2","file.filename":"${top}"}`],
      ['-c', `open -o driver=qcow2 json:{"file.filename":"${top}"}`, '-c', 'info'],
      ['-c', `open -o driver=qcow2 json:{"driver":"raw","file.filename":"${top}"}`, '-c', 'info'],
    ];
    // A path and a file.filename: refused, as qemu-io.
    const both2 = both(() => ['-c', `open -o file.filename=${top} ${top}`], top, top);
    expect(both2.blk).toEqual(both2.qemu);
    for (const args of runs) {
      const r = both(() => args, top, top);
      expect(r.blk, args.join(' ')).toEqual(r.qemu);
      expect(r.blk.code, args.join(' ')).toBe(0);
    }
  });
});

describe.skipIf(!QEMU)('blk io reopen against qemu-io', () => {
  const twins = (size = '64M', opts: string[] = []) => {
    for (const who of ['blk', 'qemu']) qemuImg(['create', '-q', '-f', 'qcow2', ...opts, p(`${who}.qcow2`), size]);
  };
  const compare = (runs: string[][], flags: string[] = ['-f', 'qcow2']) => {
    for (const run of runs) {
      const r = both((f) => [...flags, ...cmds(run), f], p('blk.qcow2'), p('qemu.qcow2'));
      expect(r.blk, run.join('; ')).toEqual(r.qemu);
    }
  };

  it('187: -r and -w switch between read-only and read-write; a write on read-only is refused', () => {
    twins();
    compare(
      [
        ['reopen -w', 'write 0 64k'],
        ['reopen -w', 'reopen -r', 'write 0 64k'],
      ],
      ['-f', 'qcow2', '-r'],
    );
    compare([['write 0 64k'], ['reopen -r', 'write 0 64k'], ['reopen -r', 'reopen -w', 'write 0 64k']]);
  });

  it("133: what reopen cannot change or mix, and bad values, are qemu-io's errors", () => {
    twins();
    compare([
      ['reopen -o node-name=foo'],
      ['reopen -o driver=raw'],
      ['reopen -o file.driver=qcow2'],
      ['reopen -o driver=qcow2', 'reopen -o file.driver=file', 'read 0 512'],
      ['reopen -r -o read-only=on'],
      ['reopen -w -o read-only=on'],
      ['reopen -c none -o cache.direct=on'],
      ['reopen -c directsync -o cache.no-flush=on'],
      ['reopen -o read-only=foo'],
      ['reopen -o cache.no-flush=bar'],
      ['reopen -o cache.direct=baz'],
      ['reopen -r -w'],
      ['reopen -c bogus'],
    ]);
    for (const [blkFile, qemuFile] of [[p('blk.qcow2'), p('qemu.qcow2')]] as const) {
      const r = both(
        (f) => ['-c', `open -o node-name=foo ${f}`, '-c', 'reopen -o node-name=foo', '-c', 'reopen'],
        blkFile,
        qemuFile,
      );
      expect(r.blk).toEqual(r.qemu);
    }
  });

  it('039: reopen -o lazy-refcounts=on|off decides whether a killed writer leaves the dirty bit', () => {
    for (const [created, option] of [
      ['off', 'on'],
      ['on', 'off'],
    ] as const) {
      twins('128M', ['-o', `compat=1.1,lazy_refcounts=${created}`]);
      const run = [`reopen -o lazy-refcounts=${option}`, 'write -P 0x5a 0 512', 'sigraise 9'];
      // --cache writeback, as the iotests run qemu-io.
      const r = both((f) => ['-f', 'qcow2', '--cache', 'writeback', ...cmds(run), f], p('blk.qcow2'), p('qemu.qcow2'));
      expect(r.blk).toEqual(r.qemu);
      // The dirty bit: set by a lazy-refcounts writer, whatever the header's bit says. (What qemu-img
      // check then finds depends on how far the killed writer got, in QEMU too: not compared.)
      const dirty = (f: string) =>
        (JSON.parse(qemuImg(['info', '-U', '--output=json', f])) as { 'dirty-flag'?: boolean })['dirty-flag'];
      expect(dirty(p('blk.qcow2'))).toBe(option === 'on');
      expect(dirty(p('qemu.qcow2'))).toBe(option === 'on');
    }
    // lazy-refcounts needs compat=1.1.
    twins('64M', ['-o', 'compat=0.10']);
    compare([['reopen -o lazy-refcounts=on', 'write 0 512'], ['reopen -o lazy-refcounts=42']]);
  });

  it("171: reopen moves raw's window", () => {
    for (const who of ['blk', 'qemu']) rawFile(p(`${who}.raw`), 4096);
    const run = [
      'write -P 0x0a 0 512',
      'reopen -o driver=raw,offset=1536,size=1024',
      'write -P 0x0b 0 1024',
      'write -P 0x0b 1024 1',
      'reopen -o driver=raw,offset=1536,size=1000',
    ];
    const r = both((f) => ['-f', 'raw', ...cmds(run), rawJson(f, 512, 512)], p('blk.raw'), p('qemu.raw'));
    expect(r.blk).toEqual(r.qemu);
    expect(fs.readFileSync(p('blk.raw'))).toEqual(fs.readFileSync(p('qemu.raw')));
  });
});

describe.skipIf(!QEMU)("blk io's open errors in qemu-io's words", () => {
  it('069, 114: a missing backing file, an unknown backing format, a missing file', () => {
    for (const who of ['blk', 'qemu']) {
      qemuImg(['create', '-q', '-f', 'qcow2', p(`${who}.base`), '1M']);
      qemuImg(['create', '-q', '-f', 'qcow2', p(`${who}.base2`), '1M']);
      qemuImg(['create', '-q', '-f', 'qcow2', '-b', p(`${who}.base`), '-F', 'qcow2', p(`${who}.top`)]);
      qemuImg(['create', '-q', '-f', 'qcow2', '-b', p(`${who}.base2`), '-F', 'qcow2', p(`${who}.foo`)]);
      // iotest 114's way to record a format QEMU does not know (qemu-img refuses to write one).
      const foo = fs.readFileSync(p(`${who}.foo`));
      const at = foo.indexOf(Buffer.from('qcow2\0', 'latin1'), 0x48);
      foo.write('foo\0\0', at, 'latin1');
      foo.writeUInt32BE(3, at - 4); // the backing format extension's length
      fs.writeFileSync(p(`${who}.foo`), foo);
      fs.rmSync(p(`${who}.base`));
    }
    const strip = (run: Run, who: string) => ({ ...run, err: run.err.replaceAll(p(who), 'X') });
    for (const name of ['top', 'foo']) {
      const ours = blk(['io', '-c', 'read 0 512', p(`blk.${name}`)]);
      const theirs = qemuIo(['-c', 'read 0 512', p(`qemu.${name}`)]);
      expect(strip({ out: ours.stdout, err: ours.stderr, code: ours.code }, 'blk')).toEqual(
        strip({ out: theirs.stdout, err: theirs.stderr, code: theirs.code }, 'qemu'),
      );
    }
    const missing = both(() => ['-c', 'read 0 1', p('nothing')], p('nothing'), p('nothing'));
    expect(missing.blk).toEqual(missing.qemu);
  });

  it('080: qcow2 header offsets QEMU refuses, in its words', () => {
    const pokes: Array<[number, string]> = [
      [8, 'ffffffffffffffff'], // backing_file_offset
      [48, '1234567890abcdef'], // refcount_table_offset
      [48, 'ffffffffffff0000'],
      [40, '1234567890abcdef'], // l1_table_offset
    ];
    for (const [at, hex] of pokes) {
      for (const who of ['blk', 'qemu']) {
        qemuImg(['create', '-q', '-f', 'qcow2', p(`${who}.qcow2`), '64M']);
        const fd = fs.openSync(p(`${who}.qcow2`), 'r+');
        fs.writeSync(fd, Buffer.from(hex, 'hex'), 0, 8, at);
        fs.closeSync(fd);
      }
      const r = both((f) => ['-c', 'read 0 512', f], p('blk.qcow2'), p('qemu.qcow2'));
      expect(r.blk, `${at}: ${hex}`).toEqual(r.qemu);
    }
  });

  it("103: qcow2's cache options are checked as QEMU checks them (and change nothing)", () => {
    for (const who of ['blk', 'qemu']) {
      qemuImg(['create', '-q', '-f', 'qcow2', p(`${who}.qcow2`), '64k']);
      qemuIo(['-c', 'write -P 42 0 64k', p(`${who}.qcow2`)]);
    }
    const lists = [
      'cache-size=1.25M,l2-cache-size=1M,refcount-cache-size=0.25M',
      'cache-size=1M,l2-cache-size=2M',
      'cache-size=1M,refcount-cache-size=2M',
      'cache-size=0,l2-cache-size=0,refcount-cache-size=0',
      'l2-cache-entry-size=256',
      'l2-cache-entry-size=4242',
      'l2-cache-entry-size=128k',
      'cache-size=0',
      'l2-cache-size=0',
      'refcount-cache-size=0',
      'cache-size=2M',
      'cache-size=2M,l2-cache-size=1M',
      'cache-size=2M,refcount-cache-size=1M',
      'l2-cache-size=1M,refcount-cache-size=0.25M',
      'refcount-cache-size=256T',
      'l2-cache-entry-size=512,l2-cache-size=1T',
    ];
    for (const list of lists) {
      const r = both((f) => ['-c', `open -o ${list} ${f}`, '-c', 'read -P 42 0 64k'], p('blk.qcow2'), p('qemu.qcow2'));
      expect(r.blk, list).toEqual(r.qemu);
    }
  });
});
