/**
 * Special files: FIFOs, sockets, character devices, directories and block
 * devices, named as images, as backing files (by a path inside an image) and
 * as convert targets. Every command runs as a spawned `blk` with a timeout,
 * so that a hang (a FIFO opened for reading blocks until a writer comes)
 * fails the test instead of stalling it.
 *
 * - Only regular files and block devices open as images; everything else is
 *   refused with one clear line, and never opened in a way that blocks.
 * - A block device named on the command line opens with its real size (fstat
 *   says 0), is written in place by convert and create, and never replaced.
 * - A block device named by an image is refused unless --backing-devices.
 *
 * Device nodes are made with mknod in a temporary directory, for a loop
 * device over a temporary file (root only; skipped otherwise).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, rawFile, type Result, scratchDir } from './helpers.js';

const isRoot = process.getuid?.() === 0;
const hasPython = spawnSync('python3', ['-c', 'import socket'], { stdio: 'ignore' }).status === 0;
/** A hang fails the test: 15 s is far more than any of these commands needs on a loaded machine. */
const TIMEOUT = 15_000;
const DEV_SIZE = 4 * 1024 * 1024;

const scratch = scratchDir('special');
let loopFile: string;
let loopDevice: string | undefined;
const nodes: Record<string, string> = {};

function mknod(file: string, ...spec: string[]): void {
  execFileSync('mknod', [file, ...spec]);
}

beforeAll(() => {
  if (!isRoot) return;
  nodes.fifo = path.join(scratch.dir, 'fifo');
  mknod(nodes.fifo, 'p');
  nodes['char device'] = path.join(scratch.dir, 'null');
  mknod(nodes['char device'], 'c', '1', '3');
  nodes.directory = path.join(scratch.dir, 'directory');
  fs.mkdirSync(nodes.directory);
  if (hasPython) {
    nodes.socket = path.join(scratch.dir, 'socket');
    execFileSync('python3', [
      '-c',
      `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(nodes.socket)})`,
    ]);
  }
  // A loop device over a file of 0xd5 bytes, and a node of our own for it.
  loopFile = path.join(scratch.dir, 'loop-backing.img');
  rawFile(loopFile, DEV_SIZE, [[0, DEV_SIZE, 0xd5]]);
  try {
    loopDevice = execFileSync('losetup', ['--show', '-f', loopFile], { encoding: 'utf8' }).trim();
  } catch {
    return; // No loop devices here: the device tests are skipped.
  }
  const rdev = fs.statSync(loopDevice).rdev;
  nodes['block device'] = path.join(scratch.dir, 'blockdev');
  mknod(nodes['block device'], 'b', String((rdev >> 8) & 0xfff), String((rdev & 0xff) | ((rdev >> 12) & 0xfff00)));
  nodes['symlink to a block device'] = path.join(scratch.dir, 'devlink');
  fs.symlinkSync(nodes['block device'], nodes['symlink to a block device']);
});

afterAll(() => {
  if (loopDevice) execFileSync('losetup', ['-d', loopDevice]);
});

/** blk with a timeout; a hang is a test failure, not a stalled run. */
function run(args: string[], env?: Record<string, string>): Result {
  const r = blk(args, { timeout: TIMEOUT, ...(env ? { env } : {}) });
  expect(r.signal, `blk ${args.join(' ')} hung (killed after ${TIMEOUT} ms)`).toBeNull();
  return r;
}

/** The kind of node at `file` (not following a final symlink). */
function kindOf(file: string): string {
  const st = fs.lstatSync(file);
  return st.isFIFO()
    ? 'fifo'
    : st.isCharacterDevice()
      ? 'char'
      : st.isBlockDevice()
        ? 'block'
        : st.isSocket()
          ? 'socket'
          : st.isDirectory()
            ? 'scratch.dir'
            : st.isSymbolicLink()
              ? 'symlink'
              : 'file';
}

function devicesReady(): boolean {
  return loopDevice !== undefined;
}

/** Reads `length` bytes of the loop device's backing file at `offset` (what the device holds). */
function deviceBytes(offset: number, length: number): Buffer {
  execFileSync('sync');
  const fd = fs.openSync(loopDevice!, 'r');
  try {
    const b = Buffer.alloc(length);
    fs.readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

function fillDevice(byte: number): void {
  const fd = fs.openSync(loopDevice!, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(DEV_SIZE, byte), 0, DEV_SIZE, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const refusedKinds = ['fifo', 'char device', 'socket', 'directory'];

describe.skipIf(!isRoot)('a FIFO, socket, character device or directory named as the image', () => {
  it.each(refusedKinds)(
    '%s: every command refuses it at once with one line naming it, and leaves it as it was',
    (kind) => {
      const node = nodes[kind];
      if (node === undefined) return; // No python3 for the socket.
      const before = kindOf(node);
      const out = path.join(scratch.dir, `out-${kind.replace(' ', '-')}.img`);
      const base = path.join(scratch.dir, 'plain-base.img');
      rawFile(base, 1024 * 1024);
      const commands: string[][] = [
        ['info', node],
        ['map', node],
        ['check', node],
        ['io', '-c', 'read 0 512', node],
        ['io', '-c', 'write 0 512', node],
        ['compare', node, base],
        ['convert', node, out],
        ['commit', node],
        ['rebase', '-u', '-b', base, node],
        ['rebase', '-b', base, node],
        ['create', '-q', '-f', 'raw', node, '1M'],
        ['create', '-q', '-f', 'cow', '-b', base, node],
        ['resize', node, '2M'],
        ['measure', node],
        ['measure', '-O', 'raw', node],
        ['amend', '-o', 'version=2', node],
      ];
      for (const args of commands) {
        const r = run(args);
        expect(r.code, `blk ${args.join(' ')}`).not.toBe(0);
        expect(r.stderr, `blk ${args.join(' ')}`).toContain(node);
        expect(r.stderr.trim().split('\n'), `blk ${args.join(' ')}`).toHaveLength(1);
        expect(kindOf(node), `blk ${args.join(' ')} replaced the ${kind}`).toBe(before);
      }
      expect(fs.existsSync(out)).toBe(false);
    },
    120_000,
  );

  it.each(refusedKinds)("%s as convert's target: refused, not replaced by a regular file", (kind) => {
    const node = nodes[kind];
    if (node === undefined) return;
    const src = path.join(scratch.dir, 'plain-src.img');
    rawFile(src, 1024 * 1024, [[0, 512, 0x42]]);
    const r = run(['convert', src, node]);
    expect(r.stderr).toMatch(/convert writes only regular files and block devices/);
    expect(r.code).toBe(1);
    expect(kindOf(node)).toBe(
      kind === 'fifo' ? 'fifo' : kind === 'char device' ? 'char' : kind === 'socket' ? 'socket' : 'scratch.dir',
    );
    expect(fs.readdirSync(scratch.dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });
});

describe.skipIf(!isRoot)('a special file named as a backing file inside an image', () => {
  /** An overlay whose backing path names `node` (made over a regular file, which the node then replaces). */
  function overlayOver(kind: string): { overlay: string; backingPath: string } {
    const sub = fs.mkdtempSync(path.join(scratch.dir, 'ov-'));
    const backingPath = path.join(sub, 'backing');
    rawFile(backingPath, DEV_SIZE);
    const overlay = path.join(sub, 'top.cow');
    const made = blk(['create', '-q', '-f', 'cow', '-b', backingPath, overlay]);
    expect(made.code, made.stderr).toBe(0);
    fs.rmSync(backingPath);
    if (kind === 'fifo') mknod(backingPath, 'p');
    else if (kind === 'char device') mknod(backingPath, 'c', '1', '3');
    else if (kind === 'directory') fs.mkdirSync(backingPath);
    else if (kind === 'socket')
      execFileSync('python3', [
        '-c',
        `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(backingPath)})`,
      ]);
    else fs.symlinkSync(nodes['block device']!, backingPath);
    return { overlay, backingPath };
  }

  const kinds = [...refusedKinds, 'symlink to a block device'];
  it.each(kinds)(
    '%s: every command that opens the chain refuses it without hanging; nothing is written',
    (kind) => {
      if (nodes[kind] === undefined) return; // No python3 for the socket, or no loop device.
      const { overlay, backingPath } = overlayOver(kind);
      const before = fs.readFileSync(overlay);
      const nodeKind = kindOf(backingPath);
      const out = path.join(path.dirname(overlay), 'out.img');
      const other = path.join(path.dirname(overlay), 'other.img');
      rawFile(other, DEV_SIZE / 2);
      const opening: string[][] = [
        ['info', '--backing-chain', overlay],
        ['map', overlay],
        ['io', '-c', 'read 0 512', overlay],
        ['io', '-c', 'write 0 512', overlay],
        ['compare', overlay, other],
        ['convert', overlay, out],
        ['commit', overlay],
        ['commit', '--force', overlay],
        ['rebase', '-b', other, overlay],
        ['check', overlay],
        ['resize', overlay, '8M'],
        ['measure', overlay],
        ['amend', '-o', 'version=2', overlay],
      ];
      const message =
        kind === 'symlink to a block device'
          ? /is a block device; .*--backing-devices/
          : new RegExp(`is a ${kind === 'fifo' ? 'FIFO' : kind === 'char device' ? 'character device' : kind}`);
      for (const args of opening) {
        const r = run(args);
        expect(r.code, `blk ${args.join(' ')}: ${r.stdout}`).not.toBe(0);
        expect(r.stderr, `blk ${args.join(' ')}`).toMatch(message);
        expect(fs.readFileSync(overlay).equals(before), `blk ${args.join(' ')} changed the overlay`).toBe(true);
        expect(kindOf(backingPath), `blk ${args.join(' ')} replaced the backing node`).toBe(nodeKind);
      }
      // info without the chain reads the overlay alone: it answers, and still does not hang.
      expect(run(['info', overlay]).code).toBe(0);
      expect(fs.existsSync(out)).toBe(false);
    },
    180_000,
  );

  it("a block device backing file is read (not zeros) when the user allows devices: UML's COW file over /dev/sdX", (ctx) => {
    if (!devicesReady()) return ctx.skip(); // no free loop device here
    fillDevice(0xd5);
    // Named on the command line, the device is the user's choice: create takes it.
    const overlay = path.join(fs.mkdtempSync(path.join(scratch.dir, 'uml-')), 'top.cow');
    let r = run(['create', '-q', '-f', 'cow', '-b', nodes['symlink to a block device']!, overlay]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // Read back from the image, it is refused by default and read when allowed.
    expect(run(['io', '-c', 'read 0 512', overlay]).stderr).toMatch(/is a block device; .*--backing-devices/);
    const allow = ['--backing-devices'];
    r = run(['io', ...allow, '-c', `read -P 0xd5 0 ${DEV_SIZE}`, overlay]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    r = run(['io', ...allow, '-c', 'write -P 0x3c 0 4096', overlay]);
    expect(r.code).toBe(0);
    // The overlay recorded the device's real size (fstat says 0), so it still matches: commit writes into it.
    r = run(['commit', ...allow, overlay]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(deviceBytes(0, 4096).every((b) => b === 0x3c)).toBe(true);
    expect(deviceBytes(4096, 4096).every((b) => b === 0xd5)).toBe(true);
    expect(kindOf(nodes['block device']!)).toBe('block');
  });
});

describe.skipIf(!isRoot)('a block device named on the command line', () => {
  it('opens with its real size; convert from it copies all of it', (ctx) => {
    if (!devicesReady()) return ctx.skip(); // no free loop device here
    fillDevice(0xd5);
    const dev = nodes['block device']!;
    const info = JSON.parse(run(['info', '--output=json', dev]).stdout) as { 'virtual-size': number };
    expect(info['virtual-size']).toBe(DEV_SIZE);
    // Without the addon's lseek(SEEK_END): the size from /sys/dev/block.
    const fallback = JSON.parse(run(['info', '--output=json', dev], { BLK_NATIVE_IO: 'off' }).stdout) as {
      'virtual-size': number;
    };
    expect(fallback['virtual-size']).toBe(DEV_SIZE);
    const out = path.join(scratch.dir, 'from-device.img');
    const r = run(['convert', dev, out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const bytes = fs.readFileSync(out);
    expect(bytes.length).toBe(DEV_SIZE);
    expect(bytes.every((b) => b === 0xd5)).toBe(true);
  });

  it('convert onto it (or a symlink to it) writes the device in place, zeros included; the node stays', (ctx) => {
    if (!devicesReady()) return ctx.skip(); // no free loop device here
    const src = path.join(scratch.dir, 'to-device.img');
    rawFile(src, 1024 * 1024, [
      [0, 4096, 0x42],
      [512 * 1024, 512, 0x43],
    ]);
    for (const target of [nodes['block device']!, nodes['symlink to a block device']!]) {
      fillDevice(0xee);
      const r = run(['convert', src, target]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(kindOf(nodes['block device']!)).toBe('block');
      expect(kindOf(nodes['symlink to a block device']!)).toBe('symlink');
      const got = deviceBytes(0, 1024 * 1024);
      expect(got.equals(fs.readFileSync(src))).toBe(true); // The old 0xee under the source's zeros is gone.
      expect(deviceBytes(1024 * 1024, 4096).every((b) => b === 0xee)).toBe(true); // Past the image: untouched.
    }
    expect(fs.readdirSync(scratch.dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('create -f raw fits the image on the device in place (no growing); a cow image on it is refused', (ctx) => {
    if (!devicesReady()) return ctx.skip(); // no free loop device here
    const dev = nodes['block device']!;
    fillDevice(0xee);
    let r = run(['create', '-q', '-f', 'raw', dev, '1M']);
    expect(r.code).toBe(0);
    expect(kindOf(dev)).toBe('block');
    expect(deviceBytes(0, 4096).every((b) => b === 0xee)).toBe(true); // As qemu-img: the device is not cleared.
    r = run(['create', '-q', '-f', 'raw', dev, '1G']);
    expect(r.stderr).toMatch(/cannot grow a block device/);
    expect(r.code).toBe(1);
    r = run(['create', '-q', '-f', 'cow', dev, '1M']);
    expect(r.stderr).toMatch(/cannot be created on a block device/);
    expect(r.code).toBe(1);
    expect(deviceBytes(0, 4096).every((b) => b === 0xee)).toBe(true);
    expect(kindOf(dev)).toBe('block');
  });
});
