/** -p: progress on a terminal for every long job, silence in pipes. */
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { blk, BLK, hasCommand, rawFile, scratchDir, shellQuote, underPty } from './helpers.js';

const scratch = scratchDir('progress');
beforeAll(() => {
  rawFile(path.join(scratch.dir, 'base.img'), 4 << 20, [[0, 1 << 20, 1]]);
  rawFile(path.join(scratch.dir, 'other.img'), 4 << 20, [
    [0, 1 << 20, 1],
    [2 << 20, 4096, 2],
  ]);
  const ovl = path.join(scratch.dir, 'ovl.cow');
  expect(blk(['create', '-q', '-f', 'cow', '-b', path.join(scratch.dir, 'base.img'), ovl]).code).toBe(0);
  expect(blk(['io', '-c', 'write -P 7 0 1M', ovl]).code).toBe(0);
});

const JOBS: Array<[string, string[], string]> = [
  ['convert', ['convert', '-p', 'ovl.cow', 'out.img'], ''],
  ['compare', ['compare', '-p', 'ovl.cow', 'ovl.cow'], 'Images are identical.'],
  ['check', ['check', '-p', 'ovl.cow'], 'No errors were found on the image.'],
  ['rebase', ['rebase', '-p', '-b', 'other.img', 'ovl.cow'], ''],
  ['commit', ['commit', '-p', '-d', 'ovl.cow'], 'Image committed.'],
];

describe('progress', () => {
  it.each(JOBS)('%s -p is quiet in a pipe', (_name, args, message) => {
    const r = blk(args, { cwd: scratch.dir });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith(message ? `${message}\n` : '')).toBe(true);
    expect(r.stdout).not.toContain('/100%');
  });

  it.skipIf(!hasCommand('script'))("-p draws qemu-img's progress line on a terminal (util-linux script)", () => {
    for (const [name, args, message] of JOBS) {
      const line = [process.execPath, BLK, ...args.map((a) => (a === 'out.img' ? 'out2.img' : a))]
        .map(shellQuote)
        .join(' ');
      const r = underPty(line, scratch.dir);
      expect(r.code, name).toBe(0);
      expect(r.stdout, name).toContain('    (0.00/100%)\r');
      expect(r.stdout, name).toContain('    (100.00/100%)\r');
      if (message) expect(r.stdout, name).toContain(`(100.00/100%)\r\r\n${message}\r\n`);
    }
  });

  it('prints a clear SKIP when util-linux script is missing', () => {
    if (!hasCommand('script')) console.warn('SKIP progress on a terminal: util-linux `script` is not installed');
    expect(true).toBe(true);
  });
});
