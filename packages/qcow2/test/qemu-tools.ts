/**
 * The qcow2 tests' shared way of driving the real qemu-img/qemu-io in a scratch directory and of
 * checking that blk reads an image exactly as `qemu-img convert -O raw` does (whole image, the given
 * unaligned pieces, and the spawned `blk convert -O raw`).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { openImage } from '@blk/images';
import { blk } from '../../cli/test/helpers.js';

/** What a spawned tool did. */
export interface ToolRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * qemu-img/qemu-io (or any command) run in the directory `dir()` returns (called at each run: set in
 * beforeAll), with `env` added to the environment: `spawn` reports, `run`/`ok` throw unless exit 0.
 */
export function qemuTools(dir: () => string, env?: Record<string, string>) {
  const spawn = (cmd: string, args: string[]): ToolRun => {
    const r = spawnSync(cmd, args, {
      cwd: dir(),
      encoding: 'utf8',
      timeout: 60_000,
      env: env ? { ...process.env, ...env } : process.env,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const run = (cmd: string, args: string[]): string => {
    const r = spawn(cmd, args);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  return {
    spawn,
    run,
    ok: (cmd: string, ...args: string[]) => run(cmd, args),
    p: (name: string) => path.join(dir(), name),
    img: (...args: string[]) => run('qemu-img', args),
    io: (file: string, ...cmds: string[]) =>
      run('qemu-io', [...(file.endsWith('.raw') ? ['-f', 'raw'] : []), ...cmds.flatMap((c) => ['-c', c]), file]),
  };
}

/**
 * Reads `file` through openImage (whole, then each [offset, length] piece inside it) and through the
 * spawned `blk convert -O raw` into `copy`, expecting `want` (qemu-img's raw view) every time.
 */
export async function expectReadsAsQemu(
  file: string,
  want: Buffer,
  pieces: ReadonlyArray<readonly [number, number]>,
  copy: string,
): Promise<void> {
  const image = await openImage(file, { readOnly: true });
  try {
    expect(image.format).toBe('qcow2');
    expect(image.size).toBe(want.length);
    const got = new Uint8Array(image.size);
    await image.readInto(0, got);
    expect(Buffer.from(got).equals(want)).toBe(true);
    for (const [off, len] of pieces) {
      if (off + len > want.length) continue;
      const part = new Uint8Array(len);
      await image.readInto(off, part);
      expect(Buffer.from(part).equals(want.subarray(off, off + len)), `${off}+${len}`).toBe(true);
    }
  } finally {
    await image.close();
  }
  const r = blk(['convert', '-O', 'raw', file, copy]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(fs.readFileSync(copy).equals(want)).toBe(true);
}
