/**
 * Every error line names the file it concerns, as qemu-img's
 * `qemu-img: FILE: ...` does, across the commands. blk io stands in for
 * qemu-io and prints qemu-io's lines: a file that does not open is named
 * (`qemu-io: can't open device FILE: ...`); the errors of a session, which has
 * one file, are qemu-io's own texts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { blk, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('error-names');
beforeAll(() => {
  rawFile(path.join(scratch.dir, 'r.img'), 1024 * 1024);
  expect(
    blk(['create', '-q', '-f', 'cow', '-b', path.join(scratch.dir, 'r.img'), path.join(scratch.dir, 'o.cow')]).code,
  ).toBe(0);
  fs.writeFileSync(path.join(scratch.dir, 'junk.cow'), 'not an image');
});
const { p } = scratch;

describe('error lines name the file', () => {
  const cases: Array<[string, () => string[], () => string]> = [
    [
      'create -o with an option raw lacks',
      () => ['create', '-f', 'raw', '-o', 'foo=bar', p('new.img'), '1M'],
      () => p('new.img'),
    ],
    [
      'create -o with a bad cow version',
      () => ['create', '-f', 'cow', '-o', 'version=9', p('new.cow'), '1M'],
      () => p('new.cow'),
    ],
    ['create with an unknown format', () => ['create', '-f', 'nosuch', p('new.img'), '1M'], () => p('new.img')],
    [
      'create over a missing backing file',
      () => ['create', '-f', 'cow', '-b', p('gone.img'), p('new.cow')],
      () => p('new.cow'),
    ],
    [
      'convert -o with an option raw lacks',
      () => ['convert', '-O', 'raw', '-o', 'foo=bar', p('r.img'), p('out.img')],
      () => p('out.img'),
    ],
    ['convert from a missing file', () => ['convert', p('gone.img'), p('out.img')], () => p('gone.img')],
    ['info of a missing file', () => ['info', p('gone.img')], () => p('gone.img')],
    ['info -f cow of a raw file', () => ['info', '-f', 'cow', p('r.img')], () => p('r.img')],
    ['map -s past the end', () => ['map', '-f', 'raw', '-s', '5M', p('r.img')], () => p('r.img')],
    ['commit of a raw file', () => ['commit', '-f', 'raw', p('r.img')], () => p('r.img')],
    ['rebase onto a missing file', () => ['rebase', '-b', p('gone.img'), p('o.cow')], () => p('o.cow')],
    ['compare with a missing file', () => ['compare', p('r.img'), p('gone.img')], () => p('gone.img')],
    ['check of a missing file', () => ['check', p('gone.img')], () => p('gone.img')],
    ['check of a junk file named cow', () => ['check', '-f', 'cow', p('junk.cow')], () => p('junk.cow')],
  ];
  it.each(cases)('%s', (_what, args, file) => {
    const r = blk(args());
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^blk: /);
    expect(lines[0]).toContain(file());
  });
});

describe("blk io's error lines are qemu-io's", () => {
  const opens: Array<[string, () => string[], () => string]> = [
    ['io on a missing file', () => ['io', '-c', 'read 0 1', p('gone.img')], () => p('gone.img')],
    ['io open with a bad -o', () => ['io', '-c', `open -o colour=blue ${p('r.img')}`], () => p('r.img')],
  ];
  it.each(opens)('%s names the file', (_what, args, file) => {
    const r = blk(args());
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^qemu-io: can't open device ${file()}: `));
  });
  const session: Array<[string, () => string[], string]> = [
    [
      'io write on a read-only open',
      () => ['io', '-r', '-f', 'raw', '-c', 'write 0 1', p('r.img')],
      'qemu-io: Block node is read-only',
    ],
    [
      'io discard on a read-only open',
      () => ['io', '-r', '-c', 'discard 0 512', p('o.cow')],
      'qemu-io: Block node is read-only',
    ],
    [
      'io open of a second file',
      () => ['io', '-f', 'raw', '-c', `open ${p('o.cow')}`, p('r.img')],
      "qemu-io: file open already, try 'help close'",
    ],
  ];
  it.each(session)('%s', (_what, args, line) => {
    const r = blk(args());
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe(`${line}\n`);
  });
});
