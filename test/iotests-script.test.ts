/**
 * scripts/iotests.mjs's verdict for a failed test: the first differing line compares lines as
 * check's file_diff does (trailing whitespace ignored: iotest 026 echoes `write ` where its .out has
 * `write`), and a run whose blk.js vanished under it (a rebuild) says so instead of blaming the test.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without types
import { failureReason } from '../scripts/iotests.mjs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-script-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const reason = failureReason as (expectedFile: string, text: string) => string;

describe('iotests.mjs failure reasons', () => {
  const out = path.join(dir, '026.out');
  fs.writeFileSync(out, 'QA output created by 026\nEvent: l1_update; write\nwrite failed: Input/output error\n');

  it('skips lines that differ only in trailing whitespace, as check does', () => {
    expect(reason(out, "QA output created by 026\nEvent: l1_update; write \nqemu-io: can't open device x: y\n")).toBe(
      'line 3: expected "write failed: Input/output error", got "qemu-io: can\'t open device x: y"',
    );
    expect(reason(out, 'QA output created by 026\nEvent: l1_update; write  \nwrite failed: Input/output error\n')).toBe(
      '',
    );
  });

  it('names a missing blk.js (blk rebuilt while the run went on)', () => {
    const text = "QA output created by 026\n+Error: Cannot find module '/repo/packages/cli/dist/blk.js'\n";
    expect(reason(out, text)).toBe('blk.js was missing (rebuilt during the run): run it again');
  });
});
