/**
 * QEMU's own iotests, quick mode: scripts/iotests.mjs fetches Debian's QEMU
 * 7.2 source (cached outside git) and runs a few fast tests with the built
 * `blk io` as QEMU_IO_PROG and the real qemu-img as the judge. The full run
 * (`node scripts/iotests.mjs -qcow2`, `-raw`) is too slow for the suite; its
 * results are in packages/qcow2/IOTESTS.md. Skips, saying why, when the
 * source cannot be fetched (no apt-get/dpkg-source, no network, no python3)
 * or qemu-img is missing.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO, ensureBuilt, hasCommand } from '../packages/cli/test/helpers.js';

const SCRIPT = path.join(REPO, 'scripts', 'iotests.mjs');
let skip: string | undefined;

beforeAll(() => {
  if (!hasCommand('qemu-img') || !hasCommand('python3')) {
    skip = 'qemu-img or python3 is missing: the iotests quick run is skipped';
    return;
  }
  const r = spawnSync(process.execPath, [SCRIPT, '--fetch-only'], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) {
    skip = `the QEMU source could not be fetched, the iotests quick run is skipped: ${(r.stderr || r.stdout).trim().split('\n').pop()}`;
    return;
  }
  ensureBuilt();
}, 150_000);

function check(fmt: string, tests: string[]): Record<string, { status: string; reason: string }> {
  const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'blk-iotests-')), 'out.json');
  const r = spawnSync(process.execPath, [SCRIPT, `-${fmt}`, '--json', json, ...tests], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (!fs.existsSync(json)) throw new Error(`iotests.mjs wrote no results: ${r.stderr}${r.stdout}`);
  const results = JSON.parse(fs.readFileSync(json, 'utf8')).results;
  fs.rmSync(path.dirname(json), { recursive: true, force: true });
  return results;
}

describe("QEMU's iotests with blk io as qemu-io (quick mode)", () => {
  it('raw 001 and 002 (read/write patterns, unaligned I/O) pass with blk io', (ctx) => {
    if (skip) return ctx.skip(skip);
    const results = check('raw', ['001', '002']);
    expect(results['001'], JSON.stringify(results)).toEqual({ status: 'pass', reason: '' });
    expect(results['002'], JSON.stringify(results)).toEqual({ status: 'pass', reason: '' });
  }, 150_000);
});
