/**
 * Hangs and unbounded resources, through spawned `blk` processes: commands
 * finish in time linear in what they find, wait for a slow reader instead of
 * queueing output, and keep their memory (peak RSS, VmHWM) bounded whatever
 * the image or the arguments. A child that grows past the bound is killed at
 * once, so a regression fails the test instead of exhausting the machine.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { testTimeScale } from '@blk/faults';
import { blk, BLK, exited, scratchDir } from './helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
/** Peak resident memory allowed to any command here. */
const MEMORY_BOUND = 200 * MiB;

const scratch = scratchDir('bounds');

/** A field of /proc/PID/status in bytes (VmRSS, VmHWM), or undefined once the process is gone. */
function procStatusBytes(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes a process has passed to write(2) and the like so far (/proc/PID/io wchar), or undefined once it is gone. */
function bytesWritten(pid: number): number | undefined {
  try {
    const m = /^wchar:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** User + system CPU time of a process in clock ticks, or undefined once it is gone. */
function cpuTicks(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
  } catch {
    return undefined;
  }
}

interface Measured {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Highest VmHWM seen (bytes). */
  peak: number;
  /** Killed for going past MEMORY_BOUND. */
  overBound: boolean;
}

/** Runs blk ARGS, sampling its peak RSS every few ms and killing it past MEMORY_BOUND or `timeout`. */
async function measured(args: string[], timeout = 60_000): Promise<Measured> {
  const child = spawn(process.execPath, [BLK, ...args], { cwd: scratch.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  let peak = 0;
  let overBound = false;
  const sample = setInterval(() => {
    const hwm = procStatusBytes(child.pid!, 'VmHWM');
    if (hwm === undefined) return;
    peak = Math.max(peak, hwm);
    if (hwm > MEMORY_BOUND && !overBound) {
      overBound = true;
      child.kill('SIGKILL');
    }
  }, 5);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
  const { code, signal } = await exited(child);
  clearInterval(sample);
  clearTimeout(timer);
  return { code, signal, stdout, stderr, peak, overBound };
}

/** A cow overlay (`size` bytes) of `base` in which every other sector is allocated: one map entry per sector. */
function fragmentedOverlay(name: string, size: number): string {
  const base = path.join(scratch.dir, `${name}.raw`);
  const overlay = path.join(scratch.dir, `${name}.cow`);
  fs.closeSync(fs.openSync(base, 'w'));
  fs.truncateSync(base, size);
  expect(blk(['create', '-q', '-f', 'cow', '-b', base, '-F', 'raw', overlay]).code).toBe(0);
  const data = (
    JSON.parse(blk(['info', '--output=json', overlay]).stdout) as {
      'format-specific': { data: Record<string, number> };
    }
  )['format-specific'].data;
  const fd = fs.openSync(overlay, 'r+');
  fs.writeSync(fd, Buffer.alloc(data['bitmap-length']!, 0x55), 0, data['bitmap-length']!, data['bitmap-offset']!);
  fs.closeSync(fd);
  return overlay;
}

describe('hangs: concurrency past the bitmap cache', () => {
  it('2100 concurrent aio_writes 16 MiB apart on a 40 GiB overlay (more chunks than the default cache holds) complete', async () => {
    const base = path.join(scratch.dir, 'aio-base.raw');
    const overlay = path.join(scratch.dir, 'aio.cow');
    fs.closeSync(fs.openSync(base, 'w'));
    fs.truncateSync(base, 40 * GiB);
    expect(blk(['create', '-q', '-f', 'cow', '-b', base, '-F', 'raw', overlay]).code).toBe(0);
    const cmds = Array.from({ length: 2100 }, (_, i) => ['-c', `aio_write -q ${i * 16}M 512`]).flat();
    const r = await measured(['io', ...cmds, '-c', 'aio_flush', '-c', 'read -q -P 0xcd 32784M 512', overlay], 60_000);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const map = blk(['map', '--output=json', overlay]);
    expect((JSON.parse(map.stdout) as Array<{ depth: number }>).filter((e) => e.depth === 0)).toHaveLength(2100);
  }, 90_000);
});

describe('cost linear in the runs found', () => {
  it('map, compare and convert of an empty sparse 1 TiB overlay over a 1000-extent sparse base finish in seconds', async () => {
    const base = path.join(scratch.dir, 'tib.raw');
    const overlay = path.join(scratch.dir, 'tib.cow');
    const fd = fs.openSync(base, 'w');
    fs.ftruncateSync(fd, TiB);
    const extent = Buffer.alloc(4096, 0x5a);
    const starts: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const at = Math.floor((i * TiB) / 1000 / 65536) * 65536;
      fs.writeSync(fd, extent, 0, extent.length, at);
      starts.push(at);
    }
    fs.closeSync(fd);
    expect(blk(['create', '-q', '-f', 'cow', '-b', base, '-F', 'raw', overlay]).code).toBe(0);
    // Before the fix each took 140-164 s (the overlay's 256 MiB bitmap re-scanned per base extent).
    const map = await measured(['map', '--output=json', overlay], 30_000);
    expect(map.signal, 'blk map did not finish in 30 s').toBeNull();
    const entries = JSON.parse(map.stdout) as Array<{ start: number; data: boolean; depth: number }>;
    expect(entries.filter((e) => e.data).map((e) => e.start)).toEqual(starts);
    const compare = await measured(['compare', overlay, base], 30_000);
    expect(compare.signal, 'blk compare did not finish in 30 s').toBeNull();
    expect(compare.stdout).toBe('Images are identical.\n');
    const out = path.join(scratch.dir, 'tib-out.raw');
    const convert = await measured(['convert', '-O', 'raw', overlay, out], 30_000);
    expect(convert.signal, 'blk convert did not finish in 30 s').toBeNull();
    expect(convert.code, convert.stderr).toBe(0);
    expect(fs.statSync(out).size).toBe(TiB);
    fs.rmSync(out);
  }, 120_000);
});

describe('memory bounded whatever the image or the arguments', () => {
  it('blk map --output=json into a stopped reader waits for it (no CPU, bounded memory), and the output is complete once read', async () => {
    // 512 MiB, every other sector allocated: 1 Mi entries, 120 MB of JSON.
    const overlay = fragmentedOverlay('frag', 512 * MiB);
    const child = spawn(process.execPath, [BLK, 'map', '--output=json', overlay], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      child.stdout.pause(); // a reader that does not read
      // Until blk has started and filled the pipe (64 KiB at least): its output stops growing. Not a fixed
      // time: a loaded machine's slow start could outlast it, and the window below then caught the start's CPU.
      const deadline = Date.now() + 30_000 * testTimeScale();
      for (let last = -1; ; ) {
        await new Promise((r) => setTimeout(r, 200));
        if (cpuTicks(child.pid!) === undefined) break; // gone: said below
        const written = bytesWritten(child.pid!);
        if (written === undefined) {
          await new Promise((r) => setTimeout(r, 1300)); // no /proc/PID/io here: a fixed wait
          break;
        }
        if (written >= 64 * 1024 && written === last) break;
        if (Date.now() > deadline) throw new Error(`blk map's output still growing after 30 s (${written} bytes)`);
        last = written;
      }
      const before = cpuTicks(child.pid!);
      await new Promise((r) => setTimeout(r, 700));
      const after = cpuTicks(child.pid!);
      const hwm = procStatusBytes(child.pid!, 'VmHWM');
      expect(before, 'blk map ended instead of waiting for its reader').toBeDefined();
      // Waiting for 'drain': idle. Without backpressure it would keep mapping into memory (100 ticks a second).
      expect(after! - before!).toBeLessThanOrEqual(10);
      expect(hwm!).toBeLessThan(MEMORY_BOUND);
      // Reading resumes the command, which then runs to the end with nothing lost.
      let bytes = 0;
      let tail = '';
      child.stdout.on('data', (b: Buffer) => {
        bytes += b.length;
        tail = (tail + b.toString('latin1')).slice(-200);
      });
      child.stdout.resume();
      const { code } = await exited(child);
      expect(code).toBe(0);
      expect(bytes).toBeGreaterThan(100 * MiB);
      // The last entry (the last sector, from the base), and the end of the list.
      expect(tail).toMatch(new RegExp(`\\{ "start": ${512 * MiB - 512}, "length": 512, "depth": 1, [^\\n]*\\}\\]\\n$`));
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);

  it('blk io write -s /dev/zero reads no more of the pattern file than the request needs', async () => {
    const image = path.join(scratch.dir, 'small.raw');
    fs.writeFileSync(image, Buffer.alloc(MiB));
    const r = await measured(['io', '-f', 'raw', '-c', 'write -s /dev/zero 0 512', '-c', 'read -P 0 0 512', image]);
    expect(r.overBound, `peak ${r.peak}`).toBe(false);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('wrote 512/512 bytes at offset 0');
  }, 60_000);

  it('blk io requests past the end of the image fail before their buffers are allocated', async () => {
    const image = path.join(scratch.dir, 'small2.raw');
    fs.writeFileSync(image, Buffer.alloc(MiB));
    const r = await measured([
      'io',
      '-f',
      'raw',
      '-c',
      'write -z -n 0 3G',
      '-c',
      'read 0 2047M',
      '-c',
      'write 1M 2047M',
      '-c',
      'readv 0 1G 512M',
      '-c',
      'aio_write -z 0 2047M',
      '-c',
      'aio_read 0 2047M',
      '-c',
      'aio_flush',
      image,
    ]);
    expect(r.overBound, `peak ${r.peak}`).toBe(false);
    expect(r.stdout).toBe(
      ['write', 'read', 'write', 'readv', 'aio_write', 'readv']
        .map((w) => `${w} failed: Input/output error\n`)
        .join(''),
    );
    expect(r.code).toBe(1);
  }, 60_000);

  it('blk io write -z of gigabytes writes zeros from a small buffer', async () => {
    const image = path.join(scratch.dir, 'zeros.raw');
    fs.writeFileSync(image, Buffer.alloc(MiB, 0x11));
    fs.truncateSync(image, 1 * GiB);
    const r = await measured(['io', '-f', 'raw', '-c', 'write -z 0 300M', '-c', 'read -q -P 0 0 1M', image]);
    expect(r.overBound, `peak ${r.peak}`).toBe(false);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    // However it is carried out, an aio_write -z keeps its place before a later overlapping request.
    const aio = blk([
      'io',
      '-f',
      'raw',
      '-c',
      'aio_write -q -z 0 3M',
      '-c',
      'aio_write -q -P 0x55 1M 512',
      '-c',
      'aio_flush',
      '-c',
      'read -q -P 0x55 1M 512',
      '-c',
      'read -q -P 0 0 1M',
      '-c',
      'read -q -P 0 1049088 2096640',
      image,
    ]);
    expect(aio.stdout + aio.stderr).toBe('');
    expect(aio.code).toBe(0);
  }, 60_000);

  it('blk io reads and writes of 250 MB go through a small buffer, with the same pattern checks', async () => {
    const image = path.join(scratch.dir, 'big.raw');
    fs.closeSync(fs.openSync(image, 'w'));
    fs.truncateSync(image, 256 * MiB);
    const r = await measured([
      'io',
      '-f',
      'raw',
      '-c',
      'write -q -P 0x22 0 250M',
      '-c',
      'writev -q -P 0x33 0 512K 512K',
      '-c',
      'read -q -P 0x22 -s 1M -l 249M 0 250M',
      '-c',
      'readv -q -P 0x22 1M 100M 149M',
      '-c',
      'read -q -P 0x33 0 1M',
      '-c',
      'read -P 0x22 0 250M',
      image,
    ]);
    expect(r.overBound, `peak ${r.peak}`).toBe(false);
    // Only the last read fails its check, for the whole range as qemu-io reports it.
    expect(r.stdout.split('\n')[0]).toBe('Pattern verification failed at offset 0, 262144000 bytes');
    expect(r.stdout).toMatch(/^read 262144000\/262144000 bytes at offset 0$/m);
    expect(r.code).toBe(1);
    // Written in pieces, an aio_write still keeps its place before a later overlapping request.
    const aio = blk([
      'io',
      '-f',
      'raw',
      '-c',
      'aio_write -q -P 0x11 0 40M',
      '-c',
      'aio_write -q -P 0x55 20M 512',
      '-c',
      'aio_flush',
      '-c',
      'read -q -P 0x55 20M 512',
      '-c',
      'read -q -P 0x11 0 20M',
      '-c',
      'read -q -P 0x11 20972032 20971008',
      image,
    ]);
    expect(aio.stdout + aio.stderr).toBe('');
    expect(aio.code).toBe(0);
  }, 60_000);

  it('blk rebase refuses a reference the overlay cannot record before copying anything', async () => {
    const oldBase = path.join(scratch.dir, 'old.raw');
    const newBase = path.join(scratch.dir, 'new.raw');
    const overlay = path.join(scratch.dir, 'rb.cow');
    fs.writeFileSync(oldBase, Buffer.alloc(4 * MiB, 0x33));
    fs.writeFileSync(newBase, Buffer.alloc(8 * MiB)); // another size: a UML (v3) overlay cannot take it
    expect(blk(['create', '-q', '-f', 'cow', '-b', oldBase, '-F', 'raw', overlay]).code).toBe(0);
    const before = fs.readFileSync(overlay);
    const r = blk(['rebase', '-b', newBase, '-F', 'raw', overlay]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cannot be changed/);
    // Nothing copied: the overlay is byte for byte what it was (and as sparse).
    expect(fs.readFileSync(overlay).equals(before)).toBe(true);
  }, 60_000);
});
