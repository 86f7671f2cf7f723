/**
 * The host Vfs opens only regular files (and block devices when asked), and
 * never blocks doing so; openImage refuses special files named as backing
 * files before opening them. (Block
 * devices themselves are exercised through the CLI with a loop device, in
 * packages/cli/test/special-files.test.ts.)
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockError, DriverRegistry, NodeVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { makeOverlayFile, overlayDriver } from './fixtures/overlay-driver.js';

let dir: string;
let fifo: string;
/**
 * Opens the FIFO read-write every 2 s, which releases any open blocked on it:
 * a regression that blocks then fails the test (by its time and result)
 * instead of stalling the whole run in a synchronous open.
 */
let rescuer: ChildProcess;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-special-'));
  fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  rescuer = spawn('sh', ['-c', 'while :; do sleep 2; : <> "$0"; done', fifo], { stdio: 'ignore' });
});
afterAll(() => {
  rescuer.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

const registry = new DriverRegistry([overlayDriver, rawDriver]);

async function errorOf(promise: Promise<unknown>): Promise<BlockError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BlockError);
  return err as BlockError;
}

describe('NodeVfs.open', () => {
  it.each([
    ['read-only', { readOnly: true }],
    ['read-write', {}],
    ['create', { create: true }],
    ['create + truncate', { create: true, truncate: true }],
  ])('refuses a FIFO (%s) with special-file at once, without waiting for a writer', async (_label, options) => {
    const started = performance.now();
    const err = await errorOf(new NodeVfs().open(fifo, options));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(err.kind).toBe('special-file');
    expect(err.message).toBe(`${fifo}: is a FIFO (named pipe), not a regular file`);
    expect(fs.statSync(fifo).isFIFO()).toBe(true);
  });

  it('refuses a directory and a character device with special-file', async () => {
    expect((await errorOf(new NodeVfs().open(dir, { readOnly: true }))).kind).toBe('special-file');
    expect((await errorOf(new NodeVfs().open(dir))).message).toMatch(/is a directory/);
    expect((await errorOf(new NodeVfs().open('/dev/null', { readOnly: true, blockDevices: true }))).message).toBe(
      '/dev/null: is a character device, not a regular file or a block device',
    );
  });

  it('stat tells the node type and identity: a hard link has the same id', async () => {
    const file = path.join(dir, 'f.img');
    fs.writeFileSync(file, new Uint8Array(512));
    const link = path.join(dir, 'f-link.img');
    fs.linkSync(file, link);
    const vfs = new NodeVfs();
    const [a, b, f] = await Promise.all([vfs.stat(file), vfs.stat(link), vfs.stat(fifo)]);
    expect(a.type).toBe('file');
    expect(a.id).toBe(b.id);
    expect(a.nlink).toBe(2);
    expect(f.type).toBe('fifo');
  });
});

describe('openImage with special backing files', () => {
  it('refuses a FIFO named as a backing file before opening it (special-file, naming the overlay)', async () => {
    const top = path.join(dir, 'top.ovl');
    fs.writeFileSync(top, makeOverlayFile({ size: 4096, backingPath: fifo }));
    const err = await errorOf(openImage(top, { registry, vfs: new NodeVfs(), format: 'ovl', readOnly: true }));
    expect(err.kind).toBe('special-file');
    expect(err.path).toBe(top);
    expect(err.message).toContain(fifo);
  });
});
