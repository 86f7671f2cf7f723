/**
 * Two processes must not write one image at once. @blk/native takes OS
 * advisory locks that UML and QEMU also see: an exclusive whole-file lock for
 * writable opens, a shared lock (QEMU's reader bytes) for read-only ones.
 * Checked here against a second process, against a classic POSIX
 * fcntl(F_SETLK) holder (what UML takes; Python's fcntl.lockf is that call)
 * and against qemu-io when it is installed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockError, NodeVfs, openImage } from '@blk/images';
import { LockingVfs, lockFd, lockingAvailable } from '../packages/native/src/index.js';

const addonPath = path.resolve('packages/native/build/Release/blk_native.node');
const available = lockingAvailable().available;
const hasPython = spawnSync('python3', ['-c', 'import fcntl'], { stdio: 'ignore' }).status === 0;
const hasQemu = spawnSync('qemu-io', ['--version'], { stdio: 'ignore' }).status === 0;

let dir: string;
let image: string;
const vfs = new LockingVfs(new NodeVfs());

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-lock-'));
  image = path.join(dir, 'disk.raw');
  fs.writeFileSync(image, new Uint8Array(1024 * 1024));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A second process that takes a lock through the same addon and holds it until killed. */
function holder(mode: 'exclusive' | 'shared'): Promise<ChildProcess> {
  const code = `
    const fs = require('fs');
    const a = require(${JSON.stringify(addonPath)});
    const fd = fs.openSync(${JSON.stringify(image)}, ${JSON.stringify(mode === 'exclusive' ? 'r+' : 'r')});
    const [err] = a.lock(fd, ${mode === 'exclusive' ? 2 : 1});
    process.stdout.write(err === 0 ? 'locked\\n' : 'refused ' + err + '\\n');
    setInterval(() => {}, 1000);`;
  return started(spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] }));
}

/** A process holding a classic POSIX record lock on the whole file, as UML's os_lock_file does. */
function umlLikeHolder(mode: 'exclusive' | 'shared'): Promise<ChildProcess> {
  const code = `
import fcntl, os, sys, time
fd = os.open(${JSON.stringify(image)}, os.O_RDWR if ${mode === 'exclusive' ? 'True' : 'False'} else os.O_RDONLY)
fcntl.lockf(fd, (fcntl.LOCK_EX if ${mode === 'exclusive' ? 'True' : 'False'} else fcntl.LOCK_SH) | fcntl.LOCK_NB)
print('locked', flush=True)
time.sleep(30)`;
  return started(spawn('python3', ['-c', code], { stdio: ['ignore', 'pipe', 'inherit'] }));
}

/**
 * Resolves once the child printed its first line (the lock is held). A child
 * that was refused is killed before the promise rejects: it would otherwise
 * sit in its setInterval for ever, outliving the test run.
 */
function started(child: ChildProcess): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => {
      if (String(d).startsWith('locked')) {
        resolve(child);
        return;
      }
      child.kill('SIGKILL');
      reject(new Error(String(d)));
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

async function openError(readOnly: boolean): Promise<unknown> {
  try {
    const img = await openImage(image, { vfs, format: 'raw', readOnly });
    await img.close();
    return undefined;
  } catch (err) {
    return err;
  }
}

describe.skipIf(!available)('OS locks: one writer or many readers', () => {
  it('in one process: a second writable open is refused, readers share', async () => {
    const w = await openImage(image, { vfs, format: 'raw' });
    const err = await openError(false);
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).kind).toBe('locked');
    expect((err as BlockError).message).toMatch(/lock on this image/);
    expect(((await openError(true)) as BlockError).kind).toBe('locked'); // no reader while a writer works
    await w.close();
    const r1 = await openImage(image, { vfs, format: 'raw', readOnly: true });
    const r2 = await openImage(image, { vfs, format: 'raw', readOnly: true });
    expect(((await openError(false)) as BlockError).kind).toBe('locked'); // no writer while readers read
    await r1.close();
    await r2.close();
    expect(await openError(false)).toBeUndefined(); // closing released every lock
  });

  it('a second process that holds the image writable makes our writable and read-only opens fail with locked', async () => {
    const child = await holder('exclusive');
    try {
      const err = await openError(false);
      expect((err as BlockError).kind).toBe('locked');
      expect((err as BlockError).message).toContain(image);
      expect(((await openError(true)) as BlockError).kind).toBe('locked');
    } finally {
      await stop(child);
    }
    expect(await openError(false)).toBeUndefined(); // the lock died with the process
  });

  it('while we write, a second process can take neither lock; while we read, it can read', async () => {
    const w = await openImage(image, { vfs, format: 'raw' });
    await expect(holder('exclusive')).rejects.toThrow(/refused 11/);
    await expect(holder('shared')).rejects.toThrow(/refused 11/);
    await w.close();
    const r = await openImage(image, { vfs, format: 'raw', readOnly: true });
    const reader = await holder('shared');
    await stop(reader);
    await expect(holder('exclusive')).rejects.toThrow(/refused 11/);
    await r.close();
  });

  it.skipIf(!hasPython)('sees UML-style POSIX locks (fcntl F_SETLK), and they see ours', async () => {
    const uml = await umlLikeHolder('exclusive');
    try {
      const err = await openError(false);
      expect((err as BlockError).kind).toBe('locked');
      expect((err as BlockError).message).toContain(`process ${uml.pid}`);
    } finally {
      await stop(uml);
    }
    // UML opens backing files with a shared lock: we may read them, not write them.
    const umlBacking = await umlLikeHolder('shared');
    try {
      expect(await openError(true)).toBeUndefined();
      expect(((await openError(false)) as BlockError).kind).toBe('locked');
    } finally {
      await stop(umlBacking);
    }
    const w = await openImage(image, { vfs, format: 'raw' });
    await expect(umlLikeHolder('exclusive')).rejects.toThrow();
    await w.close();
  });

  it.skipIf(!hasQemu)('qemu-io is refused while we write; reads alongside our readers', async () => {
    const qemu = (args: string[]) => spawnSync('qemu-io', [...args, image], { encoding: 'utf8' });
    const w = await openImage(image, { vfs, format: 'raw' });
    const wr = qemu(['-f', 'raw', '-c', 'write 0 512']);
    expect(wr.status).not.toBe(0);
    expect(wr.stderr).toMatch(/lock/i);
    expect(qemu(['-r', '-f', 'raw', '-c', 'read 0 512']).status).not.toBe(0);
    await w.close();
    const r = await openImage(image, { vfs, format: 'raw', readOnly: true });
    expect(qemu(['-r', '-f', 'raw', '-c', 'read 0 512']).status).toBe(0);
    const wr2 = qemu(['-f', 'raw', '-c', 'write 0 512']);
    expect(wr2.status).not.toBe(0);
    expect(wr2.stderr).toMatch(/"write" lock/);
    await r.close();
    expect(qemu(['-f', 'raw', '-c', 'write 0 512']).status).toBe(0);
  });

  it.skipIf(!hasQemu)('while qemu-io has the image open for writing, our writable open fails with locked', async () => {
    const child = spawn('qemu-io', ['-f', 'raw', image], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      // qemu-io prints its prompt once the image is open (and locked).
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`qemu-io exited ${code}`)));
        child.stdin!.write('help\n');
      });
      const err = await openError(false);
      expect((err as BlockError).kind).toBe('locked');
      expect((err as BlockError).message).toMatch(/OFD lock|holds/);
    } finally {
      child.stdin!.end('quit\n');
      await new Promise((r) => child.once('exit', r));
    }
  });

  it('BLK_LOCK=off opens without locks', () => {
    // The blk command passes BLK_LOCK=off as the policy option (libraries read no environment).
    const fd = fs.openSync(image, 'r+');
    expect(lockFd(fd, 'exclusive', image, { policy: 'off' })).toBe('none');
    fs.closeSync(fd);
    expect(lockingAvailable({ policy: 'off' }).available).toBe(false);
  });
});

describe('OS locks: fallback', () => {
  it('reports whether the addon loaded (a missing addon means a one-time warning, not a failure)', () => {
    const status = lockingAvailable();
    console.log(`FIGURE lock: addon ${status.available ? 'loaded (OFD locks)' : `unavailable: ${status.reason}`}`);
    expect(typeof status.available).toBe('boolean');
  });
});
