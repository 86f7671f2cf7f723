/**
 * `reopen` keeps the image's OS lock the whole time, as qemu-io does: another process that tries
 * to take a writer's lock over and over while the file is reopened hundreds of times (-r, -w,
 * -r, ...) never gets it, from blk io as from qemu-io. The poller is a small Node process taking
 * an exclusive OFD lock through @blk/native (it conflicts with blk's locks and QEMU's alike), and
 * qemu-io opening the file for writing. Before, blk io closed the image then opened it again, and
 * the poller got the lock in between (and blk's reopen then failed).
 *
 * Also: -w to -r lets a reader in and -r to -w locks it out again, and a reopen -w refused
 * because a reader holds the file leaves it open read-only with its lock (qemu-io's words). The
 * lock changes in place on one descriptor (@blk/native converts an OFD lock without releasing it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockFd, unlockFd } from '@blk/images';
import { BLK, REPO, ensureBuilt, hasCommand, qemuIo, rawFile, tempDir } from './helpers.js';

const QEMU = hasCommand('qemu-io') && process.platform === 'linux';
let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = tempDir('io-reopen-lock');
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const NATIVE = path.join(REPO, 'packages/native/dist/index.js');

/** A process that, between `go` and `stop` on stdin, tries to lock `file` (`mode`) as fast as it can. */
const POLLER = `
import * as fs from 'node:fs';
const { lockFd, unlockFd } = await import(process.argv[1]);
const [file, mode] = process.argv.slice(2);
const fd = fs.openSync(file, mode === 'exclusive' ? 'r+' : 'r');
let tries = 0, got = 0, polling = false;
const poll = () => {
  if (!polling) return;
  tries++;
  try { lockFd(fd, mode, file); got++; unlockFd(fd); } catch {}
  setImmediate(poll);
};
process.stdin.on('data', (d) => {
  for (const word of String(d).split(/\\s+/)) {
    if (word === 'go') { polling = true; poll(); process.stdout.write('polling\\n'); }
    if (word === 'stop') { polling = false; process.stdout.write(JSON.stringify({ tries, got }) + '\\n'); process.exit(0); }
  }
});
`;

/** Resolves with what `child` printed once it matches `pattern`. */
function printed(child: ChildProcess, pattern: RegExp, ms = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}: ${seen}`)), ms);
    const onData = (d: Buffer) => {
      seen += String(d);
      if (pattern.test(seen)) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve(seen);
      }
    };
    child.stdout!.on('data', onData);
  });
}

interface Io {
  child: ChildProcess;
  err: () => string;
  /** Sends `commands` and waits for the `write` marker after them. */
  run(commands: string[], marker: number): Promise<string>;
  quit(): Promise<number | null>;
}

/**
 * An interactive qemu-io-style process (blk io or qemu-io) on `file`. qemu-io reading a pipe takes
 * one line at a time between its prompts (what follows in the same read is lost), so its commands
 * go one per prompt; blk io reads them all.
 */
function ioProcess(tool: 'blk' | 'qemu', args: string[]): Io {
  const child =
    tool === 'blk'
      ? spawn(process.execPath, [BLK, 'io', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('qemu-io', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += String(d)));
  let out = '';
  let prompts = 0;
  let onOut: (() => void) | undefined;
  child.stdout!.on('data', (d) => {
    out += String(d);
    prompts += String(d).split('qemu-io> ').length - 1;
    onOut?.();
  });
  const until = (cond: () => boolean) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${tool} io stalled: ${err}`)), 30_000);
      const check = () => {
        if (!cond()) return;
        clearTimeout(timer);
        onOut = undefined;
        resolve();
      };
      onOut = check;
      check();
    });
  return {
    child,
    err: () => err,
    async run(commands, marker) {
      const all = [...commands, `read ${marker * 512} 512`];
      const start = out.length;
      if (tool === 'blk') child.stdin!.write(`${all.join('\n')}\n`);
      else {
        for (const c of all) {
          const seen = prompts;
          child.stdin!.write(`${c}\n`);
          if (c !== all.at(-1)) await until(() => prompts > seen);
        }
      }
      const done = new RegExp(`read 512/512 bytes at offset ${marker * 512}\n`);
      await until(() => done.test(out.slice(start)));
      return out.slice(start);
    },
    quit: () =>
      new Promise((resolve) => {
        child.once('exit', (code) => resolve(code));
        child.stdin!.end('quit\n');
      }),
  };
}

function poller(file: string, mode: 'exclusive' | 'shared'): ChildProcess {
  return spawn(process.execPath, ['--input-type=module', '-e', POLLER, NATIVE, file, mode], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

const ROUNDS = 300;

describe.skipIf(!QEMU)('reopen keeps the lock (blk io and qemu-io)', () => {
  for (const tool of ['blk', 'qemu'] as const) {
    it(`${tool}: a writer polling during ${ROUNDS} reopens -r/-w never gets the lock`, async () => {
      const file = path.join(dir, `${tool}-loop.raw`);
      rawFile(file, 1 << 20);
      const io = ioProcess(tool, ['-f', 'raw', file]);
      await io.run([], 0); // open and locked
      const p = poller(file, 'exclusive');
      const polling = printed(p, /polling\n/);
      p.stdin!.write('go\n');
      await polling;
      const loop = Array.from({ length: ROUNDS }, () => ['reopen -r', 'reopen -w']).flat();
      const out = await io.run(loop, 1);
      // blk's writer lock refuses qemu-io opening it for writing too (qemu-io's own writer does not).
      if (tool === 'blk') expect(qemuIo(['-f', 'raw', '-c', 'quit', file]).stderr).toContain('Failed to lock byte 100');
      const result = printed(p, /\}\n/);
      p.stdin!.end('stop\n');
      const counts = JSON.parse((await result).trim()) as { tries: number; got: number };
      const code = await io.quit();
      expect(io.err()).toBe('');
      expect(code).toBe(0);
      expect(out.replaceAll('qemu-io> ', '')).not.toMatch(/reopen|lock|failed/i);
      expect(counts.tries).toBeGreaterThan(ROUNDS);
      expect(counts.got).toBe(0);
    }, 60_000);
  }

  it('-w to -r lets a reader in, -r to -w locks it out again; a refused -w keeps the file read-only and locked', async () => {
    const results: Record<string, string[]> = {};
    for (const tool of ['blk', 'qemu'] as const) {
      const file = path.join(dir, `${tool}-modes.raw`);
      rawFile(file, 1 << 20);
      const io = ioProcess(tool, ['-f', 'raw', file]);
      await io.run([], 0);
      // Probes, here in the test process on a descriptor of its own: blk's reader lock (admitted by
      // a reader of either tool, refused by a writer) and blk's writer lock (refused by both).
      const fd = fs.openSync(file, 'r+');
      const takes = (mode: 'shared' | 'exclusive') => {
        try {
          lockFd(fd, mode, file);
          unlockFd(fd);
          return 'in';
        } catch {
          return 'out';
        }
      };
      const probe = (state: string, writer = true) =>
        `${state}: reader ${takes('shared')}${writer ? `, writer ${takes('exclusive')}` : ''}`;
      const seen = [probe('rw')];
      await io.run(['reopen -r'], 1);
      seen.push(probe('ro'));
      await io.run(['reopen -w'], 2);
      seen.push(probe('rw again', false));
      await io.run(['reopen -r'], 3);
      // A reader holds the file: reopen -w is refused, the file stays open read-only, still locked.
      const reader = ioProcess('blk', ['-r', '-f', 'raw', file]);
      await reader.run([], 0);
      const before = io.err().length;
      const out = await io.run(['reopen -w', 'write 0 512'], 4);
      seen.push(
        ...`${io.err().slice(before)}${out}`
          .replaceAll('qemu-io> ', '')
          .split('\n')
          .filter((l) => !/^(read|512 bytes)/.test(l)),
      );
      await reader.quit();
      seen.push(probe('after the refused -w'));
      fs.closeSync(fd);
      seen.push(`exit ${await io.quit()}`);
      results[tool] = seen.map((l) => l.replaceAll(file, 'FILE')).filter(Boolean);
    }
    // Where blk io and qemu-io 7.2 differ on purpose: qemu-io's `reopen -w` of a file opened -r does
    // not take QEMU's write permission (a blk reader is let in while it writes; blk io locks it out),
    // and its `write` after a refused `reopen -w` prints nothing (blk io: qemu-io's read-only line).
    const differs = /^(rw again|qemu-io: Block node is read-only|exit )/;
    const same = (list: string[]) => list.filter((l) => !differs.test(l));
    expect(same(results.blk!)).toEqual(same(results.qemu!));
    expect(results.blk).toEqual([
      'rw: reader out, writer out',
      'ro: reader in, writer out',
      'rw again: reader out',
      'qemu-io: Failed to get "write" lock',
      'Is another process using the image [FILE]?',
      'qemu-io: Block node is read-only',
      'after the refused -w: reader in, writer out',
      'exit 1',
    ]);
  }, 60_000);
});
