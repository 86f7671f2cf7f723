/**
 * blk map over a chain whose raw base has holes: the holes are allocated in the
 * base (present, depth 1) but are not data, and read as zeros, with their
 * offsets, as qemu-img map prints a raw backing file's holes.
 */
import { describe, expect, it } from 'vitest';
import { blk, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('map-status');
const { p } = scratch;
const K = 1024;

describe('blk map: present, depth, data and zero from the chain status', () => {
  it('a cow over a sparse raw base: base holes are present at depth 1, zero and not data; written data at depth 0', () => {
    rawFile(p('base.raw'), 1024 * K, [[256 * K, 64 * K, 0x11]]);
    expect(blk(['create', '-q', '-f', 'cow', '-b', p('base.raw'), p('top.cow')]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0x22 512k 4k', p('top.cow')]).code).toBe(0);
    const r = blk(['map', '--output=json', p('top.cow')]);
    expect(r.stderr).toBe('');
    // Data of layer 0 lies at data offset 12288 (v3, 1 MiB) + guest offset.
    expect(JSON.parse(r.stdout)).toEqual([
      { start: 0, length: 256 * K, depth: 1, present: true, zero: true, data: false, offset: 0 },
      { start: 256 * K, length: 64 * K, depth: 1, present: true, zero: false, data: true, offset: 256 * K },
      { start: 320 * K, length: 192 * K, depth: 1, present: true, zero: true, data: false, offset: 320 * K },
      { start: 512 * K, length: 4 * K, depth: 0, present: true, zero: false, data: true, offset: 12288 + 512 * K },
      { start: 516 * K, length: 508 * K, depth: 1, present: true, zero: true, data: false, offset: 516 * K },
    ]);
    // The human format lists the data runs only.
    expect(blk(['map', p('top.cow')]).stdout).toBe(
      'Offset          Length          Mapped to       File\n'
        + `0x40000         0x10000         0x40000         ${p('base.raw')}\n`
        + `0x80000         0x1000          0x83000         ${p('top.cow')}\n`,
    );
  });
});
