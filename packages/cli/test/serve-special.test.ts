/**
 * blk serve and special files. Images open through the CLI's open path, so its special-file checks apply
 * to every export (FILE, --export, --exports-file): FIFOs, character devices, directories and sockets are
 * refused with one line and nothing blocks (a FIFO opened for reading would wait for a writer: every run
 * has a timeout); a symlink to an image serves the image, a block device its real size. The files blk serve reads or writes besides
 * images are guarded too: an exports file, TLS credentials or an authz file that is a FIFO is refused; a
 * symlink planted at the pid file's temporary name is not written through; -k never replaces a
 * non-socket.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BLK, blk, ensureBuilt, hasCommand, rawFile, tempDir } from './helpers.js';
import { startServe, tool } from './serve-helpers.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
let dir: string;

beforeAll(() => {
  ensureBuilt();
  dir = tempDir('serve-special');
});

/** `blk serve ARGS` with a hang detector; it must fail at once with one line. */
function refused(args: string[], msg: RegExp): void {
  const sock = path.join(dir, 'refused.sock');
  const r = spawnSync(process.execPath, [BLK, 'serve', '-k', sock, ...args], { encoding: 'utf8', timeout: 15_000 });
  expect(r.signal, `blk serve ${args.join(' ')} hung`).toBeNull();
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(msg);
  expect(fs.existsSync(sock)).toBe(false);
}

describe('blk serve and special files', () => {
  it('refuses a FIFO, a character device, a directory and a socket as an image, however it is named', () => {
    const fifo = path.join(dir, 'fifo');
    spawnSync('mkfifo', [fifo]);
    const linkToFifo = path.join(dir, 'link-to-fifo.img');
    fs.symlinkSync(fifo, linkToFifo);
    const directory = path.join(dir, 'directory');
    fs.mkdirSync(directory);
    let chr = '/dev/zero';
    if (isRoot) {
      chr = path.join(dir, 'null-node');
      spawnSync('mknod', [chr, 'c', '1', '3']);
    }
    const cases: Array<[string, RegExp]> = [
      [fifo, /is a FIFO \(named pipe\), not a regular file or a block device/],
      [linkToFifo, /is a FIFO/],
      [chr, /is a character device/],
      [directory, /is a directory/],
    ];
    if (hasCommand('python3')) {
      const sock = path.join(dir, 'a-socket');
      spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`]);
      if (fs.existsSync(sock)) cases.push([sock, /is a socket/]);
    }
    for (const [file, msg] of cases) {
      refused([file], msg);
      refused(['--export', `x=${file}`], msg);
      const cfg = path.join(dir, 'special.json');
      fs.writeFileSync(cfg, JSON.stringify({ exports: [{ name: 'x', file }] }));
      refused(['--exports-file', cfg], msg);
    }
    // Also with a format named (nothing is probed, the check still comes first).
    refused(['-f', 'raw', fifo], /is a FIFO/);
  });

  it('refuses a FIFO where it reads an exports file, TLS credentials or an authz list', () => {
    const fifo = path.join(dir, 'fifo2');
    spawnSync('mkfifo', [fifo]);
    const img = path.join(dir, 'ok.img');
    rawFile(img, MiB);
    refused(['--exports-file', fifo], /not a regular file/);
    refused(['--tls-psk', fifo, img], /the PSK keys file is not a regular file/);
    const certs = path.join(dir, 'certs-fifo');
    fs.mkdirSync(certs);
    spawnSync('mkfifo', [path.join(certs, 'ca-cert.pem')]);
    refused(['--tls-certificates', certs, img], /ca-cert.pem: the CA certificate is not a regular file/);
    const pskDir = path.join(dir, 'psk-fifo');
    fs.mkdirSync(pskDir);
    spawnSync('mkfifo', [path.join(pskDir, 'keys.psk')]);
    refused(
      ['--object', `tls-creds-psk,id=t,dir=${pskDir},endpoint=server`, '--tls-creds', 't', img],
      /not a regular file/,
    );
    const keys = path.join(dir, 'hand-made.psk');
    fs.writeFileSync(keys, `alice:${'ab'.repeat(32)}\n`);
    refused(
      ['--tls-psk', keys, '--object', `authz-listfile,id=a,filename=${fifo}`, '--tls-authz', 'a', img],
      /fifo2: not a regular file of at most 1 MiB/,
    );
  });

  it('a symlink to an image serves the image: reads and writes reach the target, the link stays a link', async (ctx) => {
    if (!hasCommand('qemu-io')) ctx.skip();
    const target = path.join(dir, 'target.img');
    rawFile(target, 2 * MiB, [[0, 4096, 0x5d]]);
    const link = path.join(dir, 'link.img');
    fs.symlinkSync(target, link);
    const sock = path.join(dir, 'link.sock');
    const s = await startServe(dir, ['-t', '-f', 'raw', '-k', sock, link]);
    try {
      const io = tool('qemu-io', [
        '-f',
        'raw',
        '-c',
        'read -P 0x5d 0 4k',
        '-c',
        'write -P 0x6e 1M 4k',
        `nbd+unix:///?socket=${sock}`,
      ]);
      expect(io.code, io.stderr).toBe(0);
      expect(io.stdout).not.toMatch(/Pattern verification|failed/);
    } finally {
      await s.stop();
    }
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(
      fs
        .readFileSync(target)
        .subarray(MiB, MiB + 4)
        .every((b) => b === 0x6e),
    ).toBe(true);
  });

  it('a block device (a loop device, root only) is served with its real size; writes reach the device', async (ctx) => {
    if (!isRoot || !hasCommand('losetup') || !hasCommand('nbdinfo') || !hasCommand('qemu-io')) ctx.skip();
    const backing = path.join(dir, 'loop-backing.img');
    rawFile(backing, 4 * MiB, [[0, 4 * MiB, 0xd5]]);
    const attach = spawnSync('losetup', ['--show', '-f', backing], { encoding: 'utf8' });
    if (attach.status !== 0) ctx.skip(); // no loop devices in this container
    const device = attach.stdout.trim();
    // A node of our own for it, in the temporary directory (nothing under /dev is touched but the loop).
    const node = path.join(dir, 'loopnode');
    const st = fs.statSync(device);
    spawnSync('mknod', [node, 'b', String(Math.floor(st.rdev / 256)), String(st.rdev % 256)]);
    const sock = path.join(dir, 'blockdev.sock');
    try {
      const s = await startServe(dir, ['-t', '-f', 'raw', '-k', sock, node]);
      try {
        const size = tool('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]);
        expect(size.stdout.trim(), size.stderr).toBe(String(4 * MiB));
        const io = tool('qemu-io', [
          '-f',
          'raw',
          '-c',
          'read -P 0xd5 0 64k',
          '-c',
          'write -P 0x17 1M 4k',
          `nbd+unix:///?socket=${sock}`,
        ]);
        expect(io.code, io.stderr).toBe(0);
        expect(io.stdout).not.toMatch(/Pattern verification|failed/);
      } finally {
        await s.stop();
      }
    } finally {
      spawnSync('losetup', ['-d', device]);
    }
    expect(fs.lstatSync(node).isBlockDevice()).toBe(true);
    expect(
      fs
        .readFileSync(backing)
        .subarray(MiB, MiB + 4)
        .every((b) => b === 0x17),
    ).toBe(true);
  });

  it('the pid file is never written through a symlink; -k never replaces a file that is not a socket', async () => {
    const img = path.join(dir, 'pid.img');
    rawFile(img, MiB);
    const victim = path.join(dir, 'victim.txt');
    fs.writeFileSync(victim, 'untouched\n');
    const pidFile = path.join(dir, 'serve.pid');
    fs.symlinkSync(victim, `${pidFile}.tmp`);
    fs.symlinkSync(victim, pidFile);
    const sock = path.join(dir, 'pid.sock');
    const child = spawnSync(
      process.execPath,
      [BLK, 'serve', '--fork', '-t', '-f', 'raw', '-k', sock, '--pid-file', pidFile, img],
      { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    expect(child.status).toBe(0);
    expect(fs.readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(fs.lstatSync(pidFile).isFile()).toBe(true);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 200 && fs.existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 50));
    expect(fs.existsSync(pidFile)).toBe(false);
    const plain = path.join(dir, 'not-a-socket.txt');
    fs.writeFileSync(plain, 'data\n');
    const r = blk(['serve', '-f', 'raw', '-k', plain, img]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/EADDRINUSE|address already in use/i);
    expect(fs.readFileSync(plain, 'utf8')).toBe('data\n');
  });
});
