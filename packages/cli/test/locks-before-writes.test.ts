/**
 * A command refused because another process holds the image must leave it
 * exactly as it was: the lock is taken (or tested) before anything is
 * truncated or replaced. Before this was so, `blk create` over an image in
 * use emptied it and then reported the lock, and `blk convert` renamed a new
 * file over it, so the running writer's later writes went to a file nobody
 * could see any more.
 *
 * Holders: `blk io` in another process (a writer that keeps writing
 * afterwards), qemu-io (the same), and a plain POSIX fcntl(F_SETLK) holder
 * (what UML takes; Python's fcntl.lockf is that call).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { blk, BLK, rawFile, scratchDir } from './helpers.js';

const hasQemu = spawnSync('qemu-io', ['--version'], { stdio: 'ignore' }).status === 0;
const hasPython = spawnSync('python3', ['-c', 'import fcntl'], { stdio: 'ignore' }).status === 0;

const scratch = scratchDir('locks');

interface Holder {
  /** Writes 512 bytes of `byte` at `offset` through the holder's open image and waits for it (writers only). */
  write?(offset: number, byte: number): Promise<void>;
  stop(): Promise<void>;
}

/** Waits for `pattern` in what `child` prints on stdout. */
function printed(child: ChildProcess, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${pattern} (got ${JSON.stringify(seen)})`)),
      20_000,
    );
    const onData = (d: Buffer) => {
      seen += String(d);
      if (pattern.test(seen)) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`holder exited with ${code} before printing ${pattern}: ${seen}`));
    });
  });
}

/** A qemu-io-style writer (blk io or qemu-io) reading commands from stdin: holds the image open for writing. */
async function ioWriter(command: string, args: string[]): Promise<Holder> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const write = async (offset: number, byte: number) => {
    const done = printed(child, new RegExp(`wrote 512/512 bytes at offset ${offset}\\n`));
    child.stdin!.write(`write -P ${byte} ${offset} 512\n`);
    await done;
  };
  await write(0, 0x77); // Written: the image is open (and locked) now.
  return {
    write,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.stdin!.end('quit\n');
      await gone;
    },
  };
}

/** A process holding a classic POSIX record lock on the whole file, as UML's os_lock_file does. */
async function fcntlHolder(file: string): Promise<Holder> {
  const code = `
import fcntl, os, time
fd = os.open(${JSON.stringify(file)}, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print('locked', flush=True)
time.sleep(60)`;
  const child = spawn('python3', ['-c', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await printed(child, /locked/);
  return {
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

const holders: Array<[string, boolean, (file: string) => Promise<Holder>]> = [
  ['blk io in another process', true, (file) => ioWriter(process.execPath, [BLK, 'io', '-f', 'raw', file])],
  ['qemu-io', hasQemu, (file) => ioWriter('qemu-io', ['-f', 'raw', file])],
  ['a POSIX fcntl(F_SETLK) holder (UML)', hasPython, fcntlHolder],
];

/** A directory with a busy image (1 MiB, 0x5a at 64 KiB), a source and a base, and the image's holder. */
async function scene(start: (file: string) => Promise<Holder>) {
  const sub = fs.mkdtempSync(path.join(scratch.dir, 'h-'));
  const image = path.join(sub, 'busy.img');
  rawFile(image, 1024 * 1024, [[65536, 4096, 0x5a]]);
  const src = path.join(sub, 'src.img');
  rawFile(src, 2 * 1024 * 1024, [[0, 4096, 0x11]]);
  const base = path.join(sub, 'base.img');
  rawFile(base, 1024 * 1024);
  const holder = await start(image);
  return { sub, image, src, base, holder, before: fs.readFileSync(image), ino: fs.statSync(image).ino };
}

/** Runs each `blk ARGS` and checks it was refused for the lock and left `image` as it was. */
function expectRefused(image: string, before: Buffer, ino: number, attempts: string[][]): void {
  for (const args of attempts) {
    const r = blk(args, { timeout: 30_000 });
    expect(r.stderr, `blk ${args.join(' ')}`).toMatch(/lock/);
    expect(r.code, `blk ${args.join(' ')}`).toBe(1);
    expect(fs.statSync(image).ino, `blk ${args.join(' ')} replaced the image`).toBe(ino);
    expect(fs.readFileSync(image).equals(before), `blk ${args.join(' ')} changed the image`).toBe(true);
  }
}

describe.each(holders)('while %s holds the image for writing', (_name, available, start) => {
  it.skipIf(!available)(
    'blk create (raw, and cow over a backing file) is refused and truncates nothing',
    async () => {
      const { image, base, holder, before, ino } = await scene(start);
      try {
        expectRefused(image, before, ino, [
          ['create', '-q', '-f', 'raw', image, '2M'],
          ['create', '-q', '-f', 'cow', '-b', base, image],
        ]);
      } finally {
        await holder.stop();
      }
    },
    120_000,
  );

  it.skipIf(!available)(
    "blk convert onto it (and onto a hard link of it) is refused, replaces nothing, and the writer's later writes land in the image",
    async () => {
      const { sub, image, src, holder, before, ino } = await scene(start);
      try {
        // A second name for the image: convert writes such a file in place, after taking the lock.
        const link = path.join(sub, 'busy-link.img');
        fs.linkSync(image, link);
        expectRefused(image, before, ino, [
          ['convert', src, image],
          ['convert', '-O', 'cow', src, image],
          ['convert', src, link],
        ]);
        expect(fs.readdirSync(sub).filter((n) => n.includes('.tmp-'))).toEqual([]);
        if (holder.write) {
          // The writer goes on: what it writes now is in the image everybody opens.
          await holder.write(8192, 0x66);
          await holder.stop();
          const after = fs.readFileSync(image);
          expect(after.subarray(8192, 8704).every((b) => b === 0x66)).toBe(true);
          expect(after.subarray(65536, 65536 + 4096).every((b) => b === 0x5a)).toBe(true);
        }
      } finally {
        await holder.stop();
      }
    },
    120_000,
  );
});
