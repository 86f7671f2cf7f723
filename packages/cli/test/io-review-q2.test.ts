/**
 * Review of today's qcow2 amend and blk io work (issue 13), as a careless user and a hostile
 * image author would use it, judged against qemu-io where it applies.
 *
 * - raw's window (`offset`/`size` in a json: name) named by a relative file name: the window
 *   must apply exactly as with an absolute name (it was silently dropped: writes landed at the
 *   file's start and the whole file was the disk).
 * - `truncate` of a window: with `size`, QEMU's "Cannot resize fixed-size raw disks"; with only an
 *   offset, the file resized to offset + size (QEMU's raw_co_truncate). blk refused both in its words.
 * - `amend -o refcount_bits=N` on a hostile qcow2 whose refcount table names the L1 table as a
 *   refcount block: QEMU's overlap check stops it; blk wrote its new refcount blocks into the
 *   clusters the bogus counts called free (the L2 tables and data) and said it succeeded. A count
 *   too wide for the new width at offset 0 is `Cluster at offset 0` in QEMU's words (C's %#x), not 0x0.
 * - `reopen` of a file deleted meanwhile: QEMU keeps the image it had (its descriptor) and says why
 *   the new open failed; blk closed it, could not open the name again, and lost the image.
 * - a json: name whose `driver` blk has no driver for: QEMU says `Unknown driver 'X'`; blk said
 *   `Could not open backing file: Unknown driver 'X'` for an image that has no backing file.
 * - a bad size option (`offset=-1`): QEMU's error is three lines; blk printed one line with
 *   literal `\n`s in it (its escaping of names applied to its own text).
 * - a file another process holds: qemu-io's `Failed to get "write" lock` / `Failed to get shared
 *   "write" lock` and `Is another process using the image [F]?` (blk io said it its own way).
 */
import * as fs from 'node:fs';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { blk, BLK, hasCommand, qemuIo, rawFile, runTool, scratchDir } from './helpers.js';

const QEMU = hasCommand('qemu-io');
const scratch = scratchDir('io-review-q2');
const { p } = scratch;

const windowJson = (file: string) =>
  `json:{"driver":"raw","offset":4096,"size":65536,"file":{"driver":"file","filename":"${file}"}}`;

describe("raw's window with a relative file name", () => {
  it('applies the offset and size as an absolute name does', () => {
    rawFile(p('w.bin'), 1 << 20, [[0, 1 << 20, 0xaa]]);
    const r = blk(['io', '-c', 'length', '-c', 'write -P 0x11 0 4096', windowJson('w.bin')], { cwd: scratch.dir });
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')[0]).toBe('64 KiB');
    const data = fs.readFileSync(p('w.bin'));
    // The write landed at the window's start, not the file's.
    expect(data.subarray(0, 4096).every((b) => b === 0xaa)).toBe(true);
    expect(data.subarray(4096, 8192).every((b) => b === 0x11)).toBe(true);
  });

  it.skipIf(!QEMU)('refuses a write past the window as qemu-io does, touching nothing outside it', () => {
    rawFile(p('e.bin'), 1 << 20, [[0, 1 << 20, 0xaa]]);
    const cmd = ['-c', 'write -P 0x22 61440 8192', windowJson('e.bin')];
    const theirs = qemuIo(cmd, { cwd: scratch.dir });
    const ours = blk(['io', ...cmd], { cwd: scratch.dir });
    expect(ours.stdout).toBe(theirs.stdout);
    expect(theirs.stdout).toBe('write failed: Input/output error\n');
    const data = fs.readFileSync(p('e.bin'));
    expect(data.every((b) => b === 0xaa)).toBe(true);
  });
});

const QEMU_IMG = hasCommand('qemu-img') && hasCommand('qemu-io');

function run(cmd: string, args: string[]): { code: number | null; out: string } {
  const r = runTool(cmd, args, { fixedTimeout: true });
  return { code: r.code, out: r.stdout + r.stderr };
}

describe.skipIf(!QEMU_IMG)('amend refcount_bits on a refcount table that names other metadata', () => {
  it('refuses before writing, the data intact', () => {
    const f = p('overlap.qcow2');
    expect(run('qemu-img', ['create', '-q', '-f', 'qcow2', f, '4M']).code).toBe(0);
    expect(run('qemu-io', ['-c', 'write -P 0x33 0 1M', f]).code).toBe(0);
    const bytes = fs.readFileSync(f);
    const l1 = bytes.readBigUInt64BE(40);
    const reftable = Number(bytes.readBigUInt64BE(48));
    bytes.writeBigUInt64BE(l1, reftable); // refcount block 0 is the L1 table
    fs.writeFileSync(f, bytes);
    for (const bits of ['64', '1']) {
      const r = blk(['amend', '-o', `refcount_bits=${bits}`, f]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/corrupt|Cannot decrease/);
    }
    expect(fs.readFileSync(f).equals(bytes)).toBe(true);
    const read = run('qemu-io', ['-r', '-c', 'read -P 0x33 0 1M', f]);
    expect(read.out).toMatch(/^read 1048576\/1048576 bytes/);
  });
});

/** Runs `cmd args` with commands on stdin: `first`, then (once its output came) `then()`, then `rest`. */
function interactive(cmd: string, args: string[], first: string, then: () => void, rest: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let stage = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const take = (chunk: Buffer) => {
      out += chunk.toString();
      if (stage === 0 && out.includes('read 4096/4096')) {
        stage = 1;
        then();
        child.stdin.end(rest);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    child.stdin.write(first);
  });
}

describe('reopen of a file deleted meanwhile', () => {
  const tools: [string, string, string[]][] = [['blk io', process.execPath, [BLK, 'io']]];
  if (QEMU_IMG) tools.push(['qemu-io', 'qemu-io', []]);
  for (const [label, cmd, pre] of tools) {
    it(`${label} keeps the image it had and says why`, async () => {
      const f = p(`gone-${label.replace(' ', '-')}.raw`);
      rawFile(f, 1 << 20, [[0, 4096, 0x5]]);
      const out = await interactive(
        cmd,
        [...pre, '-f', 'raw', '-r', f],
        'read -P 0x5 0 4k\n',
        () => fs.unlinkSync(f),
        'reopen -w\nread -P 0x5 0 4k\nquit\n',
      );
      const lines = out.replace(/qemu-io> /g, '').split('\n');
      expect(lines).toContain(`qemu-io: Could not open '${f}': No such file or directory`);
      // The image is still there: the second read works.
      expect(lines.filter((l) => l.startsWith('read 4096/4096 bytes at offset 0'))).toHaveLength(2);
    });
  }
});

describe('a json: name with a driver blk lacks', () => {
  it.skipIf(!QEMU)('is an unknown driver of the image, not of a backing file (as qemu-io says)', () => {
    rawFile(p('d.bin'), 65536);
    const cmd = ['-c', 'length', 'json:{"driver":"nosuch","file":{"filename":"d.bin"}}'];
    const ours = blk(['io', ...cmd], { cwd: scratch.dir });
    const theirs = qemuIo(cmd, { cwd: scratch.dir });
    expect(theirs.stderr).toMatch(/: Unknown driver 'nosuch'$/m);
    expect(ours.stderr).toBe(theirs.stderr);
    expect(ours.code).toBe(theirs.code);
  });
});

describe.skipIf(!QEMU)('a bad size option', () => {
  it("is QEMU's three lines, at open and at reopen", () => {
    rawFile(p('s.bin'), 65536);
    for (const cmd of [
      ['-c', 'length', 'json:{"driver":"raw","offset":-512,"file":{"filename":"s.bin"}}'],
      ['-f', 'raw', '-c', 'reopen -o offset=-1', '-c', 'length', 's.bin'],
    ]) {
      const ours = blk(['io', ...cmd], { cwd: scratch.dir });
      const theirs = qemuIo(cmd, { cwd: scratch.dir });
      expect(theirs.stderr).toContain('\nOptional suffix k, M, G');
      expect(ours.stderr).toBe(theirs.stderr);
      expect(ours.stdout).toBe(theirs.stdout);
    }
  });
});

describe.skipIf(!QEMU)('a file another process holds', () => {
  it("is refused in qemu-io's words, at open and at reopen", async () => {
    const f = 'held.qcow2';
    expect(run('qemu-img', ['create', '-q', '-f', 'qcow2', p(f), '1M']).code).toBe(0);
    for (const [holderArgs, cases] of [
      [
        ['-r'],
        [
          ['-c', 'read 0 512', f],
          ['-r', '-c', 'reopen -w', f],
        ],
      ],
      [[], [['-r', '-c', 'read 0 512', f]]],
    ] as const) {
      // The holder has the image open once its OFD locks show in /proc/locks (by inode); no other qemu-io runs
      // before that, or the two would race for the lock and the holder could be the one refused.
      const holder = spawn('qemu-io', [...holderArgs, '-c', 'sleep 120000', f], {
        cwd: scratch.dir,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      try {
        let err = '';
        holder.stderr.on('data', (b) => {
          err += b;
        });
        const inode = `:${fs.statSync(p(f)).ino} `;
        for (let t = Date.now(); !fs.readFileSync('/proc/locks', 'utf8').includes(inode); ) {
          if (holder.exitCode !== null) throw new Error(`the holder exited (${holder.exitCode}): ${err}`);
          if (Date.now() - t > 30_000) throw new Error('the holder took no lock in 30 s');
          await new Promise((r) => setTimeout(r, 20));
        }
        for (const cmd of cases) {
          const theirs = qemuIo([...cmd], { cwd: scratch.dir });
          expect(theirs.stderr).toMatch(/Failed to get .*lock\nIs another process using the image \[held.qcow2\]\?/);
          expect(blk(['io', ...cmd], { cwd: scratch.dir }).stderr).toBe(theirs.stderr);
        }
      } finally {
        if (holder.exitCode === null && holder.signalCode === null) {
          holder.kill();
          await new Promise((r) => holder.on('close', r));
        }
      }
    }
  });
});

describe.skipIf(!QEMU_IMG)('amend refcount_bits on counts read from a data cluster', () => {
  it("names offset 0 as qemu-img does (C's %#x)", () => {
    const f = p('data-rc.qcow2');
    expect(run('qemu-img', ['create', '-q', '-f', 'qcow2', f, '4M']).code).toBe(0);
    expect(run('qemu-io', ['-c', 'write -P 0x33 0 1M', f]).code).toBe(0);
    const bytes = fs.readFileSync(f);
    const reftable = Number(bytes.readBigUInt64BE(48));
    bytes.writeBigUInt64BE(0x50000n, reftable); // refcount block 0 is a data cluster: counts of 0x3333
    fs.writeFileSync(f, bytes);
    const twin = p('data-rc-q.qcow2');
    fs.writeFileSync(twin, bytes);
    const ours = blk(['amend', '-o', 'refcount_bits=1', f]);
    const theirs = run('qemu-img', ['amend', '-o', 'refcount_bits=1', twin]);
    expect(theirs.out).toContain('Cluster at offset 0 has a refcount of 13107');
    expect(ours.stderr).toContain('Cluster at offset 0 has a refcount of 13107');
    expect(fs.readFileSync(f).equals(bytes)).toBe(true);
  });
});

describe.skipIf(!QEMU)('truncate of a window', () => {
  it('is refused with a size and resizes the file with only an offset, as qemu-io', () => {
    const cmds = (json: string) => [
      '-c',
      'truncate 64k',
      '-c',
      'length',
      '-c',
      'write -P 1 65536 512',
      '-c',
      'truncate 2M',
      '-c',
      'length',
      '-c',
      'read -P 0 1M 4k',
      json,
    ];
    const files: Record<string, Buffer> = {};
    for (const [who, runIt] of [
      ['blk', (args: string[]) => blk(['io', ...args], { cwd: scratch.dir })],
      ['qemu', (args: string[]) => qemuIo(args, { cwd: scratch.dir })],
    ] as const) {
      const f = `t-${who}.bin`;
      rawFile(p(f), 1 << 20, [[0, 1 << 20, 0xaa]]);
      const fixed = runIt(cmds(`json:{"driver":"raw","offset":4096,"size":65536,"file":{"filename":"${f}"}}`));
      const open = runIt(cmds(`json:{"driver":"raw","offset":4096,"file":{"filename":"${f}"}}`));
      files[who] = fs.readFileSync(p(f));
      files[`${who}-out`] = Buffer.from(
        [fixed.stdout, fixed.stderr, open.stdout, open.stderr].join('|').replace(/ops;.*\n/g, '\n'),
      );
    }
    expect(files['blk-out']!.toString()).toBe(files['qemu-out']!.toString());
    expect(files['qemu-out']!.toString()).toContain('Cannot resize fixed-size raw disks');
    expect(files.blk!.length).toBe(4096 + 2 * 1024 * 1024);
    expect(files.blk!.equals(files.qemu!)).toBe(true);
  });
});
