/**
 * What QEMU's iotests found blk io doing differently from qemu-io on qcow2 images, each reduced to
 * its few commands and run twice, once with blk io and once with the real qemu-io on a copy made
 * the same way; real qemu-img judges (map, check, read back):
 *
 * - iotest 290: `discard` on a compat=0.10 overlay with a backing file does nothing (v2 has no zero
 *   flag, and QEMU never lets a guest's discard expose the backing file's data).
 * - iotest 179: `write -z -u` over unallocated clusters of an image without a backing file makes
 *   zero clusters (qemu-io's `map` and qemu-img's map see them), as QEMU's zero_in_l2_slice.
 * - iotest 112: a copy-on-write away from a cluster whose 64-bit refcount has its MSb set
 *   decrements that refcount (2^63 - 1 afterwards) instead of failing at close.
 * - iotests 098 and 039: a dirty image (lazy refcounts, writer killed) opened writable is repaired
 *   first, and blk io prints the repair's lines on stderr as qemu-io does.
 * - iotest 039: with lazy refcounts a writethrough write leaves the data cluster's refcount in
 *   memory (the dirty bit says so): killed then, qemu-img check finds what it finds after qemu-io.
 */
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { blk, BLK, filterQemuIo, hasCommand, qemuImg, qemuIo, scratchDir } from './helpers.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
const scratch = scratchDir('io-qcow2-iotests');
const { p } = scratch;

/** Runs the same commands with blk io on `ours` and with qemu-io on `theirs`; both outputs, filtered. */
function both(cmds: string[], ours: string, theirs: string): { blk: string; qemu: string } {
  const args = (file: string) => ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), file];
  const b = blk(['io', ...args(ours)]);
  expect(b.stderr).toBe('');
  expect(b.code).toBe(0);
  const q = qemuIo(args(theirs));
  expect(q.stderr).toBe('');
  return { blk: filterQemuIo(b.stdout), qemu: filterQemuIo(q.stdout) };
}

/** qemu-img map's human output with the file names made equal. */
const humanMap = (file: string) => qemuImg(['map', file]).replaceAll(file, 'FILE');
const jsonMap = (file: string) => JSON.parse(qemuImg(['map', '--output=json', file])) as unknown;

describe.skipIf(!QEMU)('blk io against qemu-io on the cases of QEMU iotests', () => {
  it('290: discard on a compat=0.10 overlay with a backing file leaves the data, on compat=1.1 zeros it', () => {
    qemuImg(['create', '-q', '-f', 'qcow2', p('base.qcow2'), '128k']);
    qemuIo(['-f', 'qcow2', '-c', 'write -P 0xff 0 128k', p('base.qcow2')]);
    for (const compat of ['0.10', '1.1']) {
      for (const who of ['blk', 'qemu']) {
        qemuImg([
          'create',
          '-q',
          '-f',
          'qcow2',
          '-o',
          `compat=${compat}`,
          '-b',
          p('base.qcow2'),
          '-F',
          'qcow2',
          p(`${who}.qcow2`),
        ]);
      }
      const expected = compat === '0.10' ? 0x01 : 0x00;
      const out = both(
        ['write -P 0x01 0 128k', 'discard 0 128k', `read -P ${expected} 0 128k`],
        p('blk.qcow2'),
        p('qemu.qcow2'),
      );
      expect(out.blk).not.toContain('Pattern verification failed');
      expect(out.blk).toBe(out.qemu);
      expect(humanMap(p('blk.qcow2'))).toBe(humanMap(p('qemu.qcow2')));
      qemuImg(['check', '-q', p('blk.qcow2')]);
    }
  });

  it("179: write -z -u on unallocated clusters without a backing file makes zero clusters, as qemu-io's map shows", () => {
    for (const who of ['blk', 'qemu']) qemuImg(['create', '-q', '-f', 'qcow2', p(`z-${who}.qcow2`), '64M']);
    const cmds = ['write -z -u 2M 2M', 'write -z 6M 2M', 'map'];
    const out = both(cmds, p('z-blk.qcow2'), p('z-qemu.qcow2'));
    expect(out.qemu).toContain('2 MiB (0x200000) bytes     allocated at offset 2 MiB (0x200000)');
    expect(out.blk).toBe(out.qemu);
    expect(jsonMap(p('z-blk.qcow2'))).toEqual(jsonMap(p('z-qemu.qcow2')));
    qemuImg(['check', '-q', p('z-blk.qcow2')]);
  });

  it('112: writing through a cluster whose 64-bit refcount is 2^63 (COPIED cleared) works and decrements it', () => {
    for (const who of ['blk', 'qemu']) {
      const f = p(`msb-${who}.qcow2`);
      qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=64', f, '64M']);
      qemuIo(['-f', 'qcow2', '-c', 'write 0 512', f]);
      // The iotest's offsets (64 KiB clusters): the refblock at 0x20000 (cluster 5's entry at +0x28), L2 at 0x40000.
      expect(jsonMap(f)).toContainEqual(expect.objectContaining({ start: 0, offset: 0x50000 }));
      const fd = fs.openSync(f, 'r+');
      fs.writeSync(fd, Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0]), 0, 8, 0x20028);
      fs.writeSync(fd, Buffer.from([0, 0, 0, 0, 0, 0x05, 0, 0]), 0, 8, 0x40000);
      fs.closeSync(fd);
    }
    const out = both(['write 0 512'], p('msb-blk.qcow2'), p('msb-qemu.qcow2'));
    expect(out.blk).toBe(out.qemu);
    // qemu-img check prints the leaks on stderr and the summary on stdout.
    const check = (who: string) => {
      const r = spawnSync('qemu-img', ['check', p(`msb-${who}.qcow2`)], { encoding: 'utf8' });
      expect(r.status).toBe(3);
      return `${r.stderr}${r.stdout}`.replace(/Image end offset.*\n?/, '');
    };
    expect(check('blk')).toContain('Leaked cluster 5 refcount=9223372036854775807 reference=0');
    expect(check('blk')).toBe(check('qemu'));
  });

  it('098/039: opening a dirty image writable prints the repair lines qemu-io prints', () => {
    const dirty = p('dirty.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', dirty, '64M']);
    // Killed after a writethrough write: the L2 entry is on disk, the data cluster's refcount is not.
    const killed = spawnSync('qemu-io', ['-t', 'writethrough', '-c', 'write -P 0x5a 0 512', '-c', 'sigraise 9', dirty]);
    expect(killed.signal).toBe('SIGKILL');
    fs.copyFileSync(dirty, p('dirty-blk.qcow2'));
    const q = qemuIo(['-f', 'qcow2', '-c', 'close', dirty]);
    const b = blk(['io', '-f', 'qcow2', '-c', 'close', p('dirty-blk.qcow2')]);
    expect(b.code).toBe(0);
    expect(q.stderr).toContain('Repairing cluster');
    expect(b.stderr).toBe(q.stderr);
    qemuImg(['check', '-q', p('dirty-blk.qcow2')]);
    expect(blk(['io', '-f', 'qcow2', '-c', 'read -P 0x5a 0 512', p('dirty-blk.qcow2')]).stdout).toMatch(
      /^read 512\/512/,
    );
  });

  it("039: lazy refcounts, killed after a writethrough write: qemu-img check's findings equal qemu-io's", () => {
    const findings: Record<string, string> = {};
    for (const who of ['blk', 'qemu']) {
      const f = p(`lazy-${who}.qcow2`);
      qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'compat=1.1,lazy_refcounts=on', f, '128M']);
      const cmds = ['--cache', 'writethrough', '-c', 'write -P 0x5a 0 512', '-c', 'sigraise 9', f];
      const r =
        who === 'blk'
          ? spawnSync(process.execPath, [BLK, 'io', ...cmds], { encoding: 'utf8' })
          : spawnSync('qemu-io', ['-t', 'writethrough', ...cmds.slice(2)], { encoding: 'utf8' });
      expect(r.signal).toBe('SIGKILL');
      expect(fs.readFileSync(f)[79]! & 1).toBe(1); // the dirty bit
      const c = spawnSync('qemu-img', ['check', f], { encoding: 'utf8' });
      expect(c.status).toBe(2);
      findings[who] = c.stderr;
    }
    expect(findings.qemu).toContain('ERROR cluster 5 refcount=0 reference=1');
    expect(findings.blk).toBe(findings.qemu);
  });
});
