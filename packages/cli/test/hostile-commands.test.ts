/**
 * Hostile images through every command, as spawned processes: each of info,
 * map, check, compare, convert (and -n), commit (and -b), rebase, io, bench
 * and dd must fail on each
 * hostile image with one line on stderr (`blk: ...`, a typed error's
 * message, no stack trace), within a time bound, and without changing a
 * byte of any file or leaving a new one behind.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { FOREIGN_SAMPLES } from '../../../test/fixtures/foreign-samples.js';
import { blk, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('hostile');
const { p } = scratch;

/** sha256 of every file in the directory, by name. */
function snapshot(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(scratch.dir).sort()) {
    out[name] = createHash('sha256')
      .update(fs.readFileSync(p(name)))
      .digest('hex');
  }
  return out;
}

/** A v3 overlay made by blk, with `patch` applied to its bytes. */
function patchedOverlay(name: string, patch: (b: Buffer) => void): void {
  const r = blk(['create', '-q', '-f', 'cow', '-b', 'good.img', name], { cwd: scratch.dir });
  if (r.code !== 0) throw new Error(r.stderr);
  const b = fs.readFileSync(p(name));
  patch(b);
  fs.writeFileSync(p(name), b);
}

/**
 * The hostile images, with what their error must mention, and whether the
 * harm is in the backing chain (then `info`, which does not open the chain,
 * as qemu-img info, may succeed; it still must not change a byte).
 */
const HOSTILE: Array<[string, RegExp, 'image' | 'chain']> = [
  ['foreign.qcow2', /qcow2/, 'image'],
  ['fixed.vhd', /vpc/, 'image'],
  ['v9.cow', /version 9/, 'image'],
  ['short.cow', /shorter than its header/, 'image'],
  ['exabyte.cow', /size|header/, 'image'],
  ['zero-align.cow', /alignment/, 'image'],
  ['v2-unknown.cow', /v2|layout/, 'image'],
  ['self-backing.cow', /loop|backing/, 'chain'],
  ['missing-backing.cow', /not found|missing/, 'chain'],
  ['qcow2-backing.cow', /qcow2/, 'chain'],
];

beforeAll(() => {
  rawFile(p('good.img'), 64 * 1024, [[0, 4096, 0x11]]);
  rawFile(p('other.img'), 64 * 1024);
  // Another mtime than good.img's: rebase must not take other.img for the end of a torn rebase onto it.
  fs.utimesSync(p('other.img'), 1_000_000_000, 1_000_000_000);
  fs.writeFileSync(p('foreign.qcow2'), FOREIGN_SAMPLES.find((s) => s.format === 'qcow2')!.bytes);
  fs.writeFileSync(p('fixed.vhd'), FOREIGN_SAMPLES.find((s) => s.format === 'vpc' && s.bytes.length > 4096)!.bytes);
  fs.writeFileSync(p('v9.cow'), Uint8Array.from([0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 9, ...new Uint8Array(8192)]));
  fs.writeFileSync(p('short.cow'), Uint8Array.from([0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 3, 0x2f, ...new Uint8Array(90)]));
  patchedOverlay('exabyte.cow', (b) => b.writeBigUInt64BE(2n ** 63n, 12));
  patchedOverlay('zero-align.cow', (b) => b.writeUInt32BE(0, 24));
  patchedOverlay('self-backing.cow', (b) => {
    b.fill(0, 32, 32 + 4096);
    b.write(p('self-backing.cow'), 32);
  });
  patchedOverlay('missing-backing.cow', (b) => {
    b.fill(0, 32, 32 + 4096);
    b.write(p('nowhere.img'), 32);
  });
  const v2 = Buffer.alloc(8192);
  v2.writeUInt32BE(0x4f4f4f4d, 0);
  v2.writeUInt32BE(2, 4);
  v2.write('/x', 8);
  fs.writeFileSync(p('v2-unknown.cow'), v2);
  patchedOverlay('qcow2-backing.cow', (b) => {
    b.fill(0, 32, 32 + 4096);
    b.write(p('foreign.qcow2'), 32);
    b.writeBigUInt64BE(BigInt(fs.statSync(p('foreign.qcow2')).size), 12);
  });
}, 60_000);
const COMMANDS: Array<[string, (image: string) => string[]]> = [
  ['info', (f) => ['info', f]],
  ['map', (f) => ['map', '--output=json', f]],
  ['check', (f) => ['check', f]],
  ['compare', (f) => ['compare', f, 'good.img']],
  ['convert', (f) => ['convert', '-O', 'raw', f, 'converted.img']],
  ['commit', (f) => ['commit', f]],
  ['rebase', (f) => ['rebase', '-b', 'other.img', f]],
  ['io', (f) => ['io', '-c', 'write -P 0x66 0 512', '-c', 'read 0 512', f]],
  ['bench', (f) => ['bench', '-c', '16', '-d', '4', f]],
  ['bench -w', (f) => ['bench', '-w', '-c', '16', '-d', '4', f]],
  ['dd', (f) => ['dd', 'bs=4k', 'count=4', `if=${f}`, 'of=dd-out.img']],
  ['convert -n', (f) => ['convert', '-n', f, 'good.img']],
  ['commit -b', (f) => ['commit', '-b', 'other.img', f]],
];

describe('hostile images through every command', () => {
  it.each(COMMANDS)(
    'blk %s fails on each hostile image with one typed line, no hang, and no byte changed',
    (_name, args) => {
      const before = snapshot();
      for (const [image, mentions, where] of HOSTILE) {
        const argv = args(image);
        const r = blk(argv, { cwd: scratch.dir, timeout: 20_000 });
        const what = `blk ${argv.join(' ')}`;
        expect(r.signal, what).toBeNull();
        expect(r.stderr, what).not.toMatch(/^\s+at /m);
        expect(r.stdout + r.stderr, what).not.toMatch(
          /TypeError|RangeError|ReferenceError|Cannot read|is not a function|undefined/,
        );
        expect(snapshot(), what).toEqual(before);
        if (argv[0] === 'info' && where === 'chain' && r.code === 0) continue;
        expect(r.code, `${what}: ${r.stdout}${r.stderr}`).not.toBe(0);
        if (argv[0] === 'check') {
          // check reports what it cannot open as a finding (ERROR lines, exit 2 as qemu-img check's "corrupt").
          expect(r.stdout + r.stderr, what).toMatch(mentions);
          continue;
        }
        const lines = r.stderr.split('\n').filter(Boolean);
        expect(lines, what).toHaveLength(1);
        // blk io stands in for qemu-io and says it as qemu-io does (the file is named there too).
        expect(lines[0], what).toMatch(argv[0] === 'io' ? /^qemu-io: can't open device / : /^blk: /);
        expect(lines[0], what).toMatch(mentions);
      }
    },
  );
});
