/**
 * blk commit under SIGINT / SIGTERM: the signal aborts the job (@blk/jobs'
 * AbortSignal), which stops between two runs; blk says so and exits 128 +
 * the signal's number. What it leaves is what a kill leaves (the overlay
 * marked, the commit journal beside it), and a re-run of the same command
 * finishes the commit.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  alternatingExpected,
  alternatingOverlay,
  blk,
  blkSpawn,
  exited,
  expectSameImages,
  scratchDir,
  waitFor,
} from './helpers.js';

const scratch = scratchDir('interrupt-jobs');
const { p } = scratch;
const MiB = 1 << 20;

describe('blk commit interrupted by a signal', () => {
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`${sig}: stops between runs, exits ${code}, leaves the mark and the journal; a re-run finishes`, async () => {
      const size = 64 * MiB;
      const name = `int-${sig}`;
      const { base, overlay } = alternatingOverlay(scratch.dir, name, size);
      alternatingExpected(p(`${name}.expected`), size);
      const before = fs.statSync(base).mtimeMs;
      const child = blkSpawn(['commit', overlay]);
      let stderr = '';
      let stdout = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      await waitFor(() => fs.statSync(base).mtimeMs !== before, 20_000, 'the commit to start writing');
      child.kill(sig);
      const end = await exited(child);
      expect({ code: end.code, signal: end.signal, stdout, stderr }).toEqual({
        code,
        signal: null,
        stdout: '',
        stderr: `blk: interrupted by ${sig}\n`,
      });
      // Part of the data is in the base; the overlay is marked and blk's journal names both files.
      expect(blk(['compare', base, p(`${name}.expected`)]).code).toBe(1);
      expect(fs.existsSync(`${overlay}.blk-commit`)).toBe(true);
      const chk = blk(['check', overlay]);
      expect(chk.code).toBe(2);
      expect(chk.stderr).toContain(`a commit into it was interrupted; finish it with: blk commit ${overlay}`);
      // Recovery: run it again.
      expect(blk(['commit', overlay])).toMatchObject({ code: 0, stdout: 'Image committed.\n', stderr: '' });
      expect(fs.existsSync(`${overlay}.blk-commit`)).toBe(false);
      expectSameImages(base, p(`${name}.expected`));
      expectSameImages(overlay, p(`${name}.expected`));
    }, 60_000);
  }
});
