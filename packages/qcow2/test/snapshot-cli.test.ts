/**
 * The spawned `blk snapshot -c/-a/-d/-l [-f FMT] [-q] FILE` against `qemu-img snapshot` on copies
 * of one image: the same results (listed by qemu-img), the same messages with `blk:` for
 * `qemu-img:` and the same exit codes, including unknown snapshots, delete by ID (qemu-img looks
 * names up only), duplicate names (allowed, new IDs), a format without snapshots and mixed actions.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the blk snapshot CLI tests are skipped');

let dir: string;
const env = { TZ: 'UTC' };
const { spawn: run, ok, p } = qemuTools(() => dir, env);

/** Runs `args` (file names relative to dir) as `blk snapshot` on b-FILE and `qemu-img snapshot` on q-FILE. */
function both(args: string[], file: string, blkOnly: string[] = []) {
  const b = blk(['snapshot', ...blkOnly, ...args, p(`b-${file}`)], { env, cwd: dir });
  const q = run('qemu-img', ['snapshot', ...args, p(`q-${file}`)]);
  return { b, q };
}

/** qemu-img's stderr as blk prints it: the program name, and the file names of the blk copy. */
const asBlk = (stderr: string) => stderr.replaceAll('qemu-img:', 'blk:').replaceAll('/q-', '/b-');
/** The listing without the dates (the two copies' snapshots are made a moment apart). */
const undated = (list: string) => list.replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/g, 'DATE');

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-snapcli');
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', 'img.qcow2', '1M');
  ok('qemu-io', '-c', 'write -P 0x11 0 256k', 'img.qcow2');
  ok('qemu-img', 'create', '-q', '-f', 'raw', 'img.raw', '1M');
  for (const f of ['img.qcow2', 'img.raw']) {
    fs.copyFileSync(p(f), p(`b-${f}`));
    fs.copyFileSync(p(f), p(`q-${f}`));
  }
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('blk snapshot as qemu-img snapshot', () => {
  it('-c, -l, -a, -d and their failures: same results, messages and exit codes', () => {
    const steps: string[][] = [
      ['-c', 'one'],
      ['-c', 'one'], // a duplicate name is allowed: ID 2
      ['-q', '-c', 'two'],
      ['-l'],
      ['-a', 'nope'],
      ['-d', 'nope'],
      ['-d', '3'], // qemu-img -d looks names up only
      ['-a', '1'], // -a looks IDs up first
      ['-d', 'one'], // the first with that name: ID 1
      ['-a', 'two'],
      ['-c', 'n'.repeat(300)], // qemu-img keeps 255 bytes of a name
      ['-l'],
      ['-l', '-c', 'x'],
      ['-U', '-c', 'x'],
      ['-c', ''], // an empty name, as qemu-img allows
    ];
    for (const args of steps) {
      const { b, q } = both(args, 'img.qcow2');
      const what = `snapshot ${args.join(' ')}`;
      expect(b.code, `${what}: ${b.stderr}`).toBe(q.status);
      expect(b.stderr.split('\n')[0], what).toBe(asBlk(q.stderr).split('\n')[0]);
      expect(undated(b.stdout), what).toBe(undated(q.stdout));
    }
    // What blk left, qemu-img reads: the same snapshots and the same data as qemu-img's copy.
    expect(undated(ok('qemu-img', 'snapshot', '-l', 'b-img.qcow2'))).toBe(
      undated(ok('qemu-img', 'snapshot', '-l', 'q-img.qcow2')),
    );
    expect(run('qemu-img', ['check', 'b-img.qcow2']).status).toBe(0);
    expect(run('qemu-img', ['compare', 'b-img.qcow2', 'q-img.qcow2']).status).toBe(0);
  });

  it('apply brings the data back, as qemu-io reads it', () => {
    const f = p('b-img.qcow2');
    expect(blk(['snapshot', '-c', 'before', f], { env }).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0x22 4k 64k', f], { env }).code).toBe(0);
    const r = blk(['snapshot', '-a', 'before', f], { env });
    expect([r.code, r.stdout, r.stderr]).toEqual([0, '', '']);
    expect(ok('qemu-io', '-c', 'read -P 0x11 0 256k', f)).not.toContain('Pattern verification failed');
    expect(run('qemu-img', ['check', f]).status).toBe(0);
  });

  it('a format without snapshots: qemu-img words and exit codes; -l lists nothing', () => {
    for (const args of [['-c', 'x'], ['-a', 'x'], ['-d', 'x'], ['-l']]) {
      // qemu-img snapshot has no -f (it probes, and warns about raw); blk is told.
      const { b, q } = both(args, 'img.raw', ['-f', 'raw']);
      const what = `snapshot ${args.join(' ')}`;
      expect(b.code, `${what}: ${b.stderr}`).toBe(q.status);
      expect(b.stdout, what).toBe(q.stdout);
      // blk adds the detail after qemu-img's words (create: the errno qemu-img prints).
      const want = asBlk(q.stderr)
        .split('\n')
        .filter((l) => l.startsWith('blk:'))
        .join('\n');
      if (args.includes('-a'))
        expect(b.stderr).toMatch(/^blk: Could not apply snapshot 'x': .*does not support snapshots/);
      else expect(b.stderr.startsWith(want), `${what}: ${b.stderr} vs ${want}`).toBe(true);
    }
  });

  it('a missing backing file (direct or deeper): qemu-img words, exit 1, file unchanged', () => {
    // qemu-img create refuses a missing backing file: make the chain, then delete its base.
    ok('qemu-img', 'create', '-q', '-f', 'qcow2', 'gone.qcow2', '1M');
    ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'gone.qcow2', '-F', 'qcow2', 'mid.qcow2');
    ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2');
    for (const f of ['mid.qcow2', 'top.qcow2']) {
      fs.copyFileSync(p(f), p(`b-${f}`));
      fs.copyFileSync(p(f), p(`q-${f}`));
    }
    fs.rmSync(p('gone.qcow2'));
    for (const file of ['mid.qcow2', 'top.qcow2']) {
      const before = fs.readFileSync(p(`b-${file}`));
      for (const args of [['-l'], ['-c', 'x'], ['-a', 'x'], ['-d', 'x']]) {
        const { b, q } = both(args, file);
        const what = `snapshot ${args.join(' ')} ${file}`;
        expect(q.status, what).toBe(1);
        expect(b.code, `${what}: ${b.stderr}`).toBe(q.status);
        expect(b.stderr, what).toBe(asBlk(q.stderr));
        expect(b.stdout, what).toBe('');
      }
      expect(fs.readFileSync(p(`b-${file}`)).equals(before), file).toBe(true);
    }
  });
});
