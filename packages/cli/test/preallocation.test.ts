/** blk create -o preallocation=off|metadata|falloc|full: qemu-img's accept/refuse list for raw; cow reserves space, bits clear. */
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { blk, hasCommand, rawFile, scratchDir } from './helpers.js';

const HAVE_QEMU = hasCommand('qemu-img');
if (!HAVE_QEMU)
  console.warn('preallocation.test.ts: qemu-img is not installed; the side-by-side comparison is skipped');

const scratch = scratchDir('prealloc');
const { p } = scratch;
const used = (file: string) => fs.statSync(file).blocks * 512;
const MiB = 1 << 20;

describe('blk create -o preallocation=', () => {
  it.skipIf(!HAVE_QEMU)(
    'raw: the same Formatting line, exit code, size and allocation as qemu-img (qemu-img installed)',
    () => {
      for (const mode of ['off', 'metadata', 'falloc', 'full']) {
        const ours = blk(['create', '-f', 'raw', '-o', `preallocation=${mode}`, p(`b-${mode}.img`), '4M']);
        const q = spawnSync(
          'qemu-img',
          ['create', '-f', 'raw', '-o', `preallocation=${mode}`, p(`q-${mode}.img`), '4M'],
          { encoding: 'utf8' },
        );
        expect(ours.code, mode).toBe(q.status);
        expect(ours.stdout.replaceAll('b-', 'q-'), mode).toBe(q.stdout);
        expect(ours.stderr.replaceAll('b-', 'q-'), mode).toBe(q.stderr.replace('qemu-img:', 'blk:'));
        expect(fs.existsSync(p(`b-${mode}.img`)) ? fs.statSync(p(`b-${mode}.img`)).size : -1, mode).toBe(
          fs.existsSync(p(`q-${mode}.img`)) && q.status === 0 ? fs.statSync(p(`q-${mode}.img`)).size : -1,
        );
        if (q.status === 0) expect(used(p(`b-${mode}.img`)) >= 4 * MiB, mode).toBe(used(p(`q-${mode}.img`)) >= 4 * MiB);
      }
    },
  );

  it('raw: falloc and full allocate the whole disk, off none; a bad mode is refused before anything is made', () => {
    for (const [mode, full] of [
      ['off', false],
      ['falloc', true],
      ['full', true],
    ] as const) {
      expect(
        blk(['create', '-q', '-f', 'raw', '-o', `preallocation=${mode}`, p(`r-${mode}.img`), '4M']).code,
        mode,
      ).toBe(0);
      expect(used(p(`r-${mode}.img`)) >= 4 * MiB, mode).toBe(full);
    }
    expect(blk(['create', '-f', 'raw', '-o', 'preallocation=xx', p('r-xx.img'), '4M'])).toMatchObject({
      code: 1,
      stdout: '',
      // qemu-img names the image too: "qemu-img: FILE: invalid parameter value: xx".
      stderr: `blk: ${p('r-xx.img')}: Invalid preallocation mode 'xx' (expected off, metadata, falloc or full)\n`,
    });
    expect(fs.existsSync(p('r-xx.img'))).toBe(false);
    expect(blk(['create', '-f', 'raw', '-o', 'help', p('unused.img')]).stdout).toContain(
      'preallocation=<str>  Preallocation mode (allowed values: off, falloc, full)',
    );
  });

  it('cow: every mode; space is reserved but no bit is set, so the backing file still shows through', () => {
    rawFile(p('base.img'), 4 * MiB, [[0, MiB, 0x5a]]);
    const expectations: Array<[string, (n: number) => boolean]> = [
      ['off', (n) => n < 64 * 1024],
      ['metadata', (n) => n >= 4096 && n < 64 * 1024], // header padding and bitmap written, data sparse
      ['falloc', (n) => n >= 4 * MiB],
      ['full', (n) => n >= 4 * MiB],
    ];
    for (const version of ['3', '2']) {
      for (const [mode, allocated] of expectations) {
        const file = p(`c${version}-${mode}.cow`);
        const r = blk([
          'create',
          '-f',
          'cow',
          '-o',
          `version=${version},preallocation=${mode}`,
          '-b',
          p('base.img'),
          file,
        ]);
        expect(r.code, `${version} ${mode}`).toBe(0);
        expect(r.stdout, mode).toContain(` preallocation=${mode}`);
        expect(allocated(used(file)), `v${version} ${mode}: ${used(file)} bytes used`).toBe(true);
        expect(blk(['check', file]).code, `${version} ${mode}`).toBe(0);
        const io = blk(['io', '-c', 'read -P 0x5a 0 1M', '-c', 'read -P 0 1M 3M', '-c', 'alloc 0 4M', file]);
        expect(io.stdout, `${version} ${mode}`).not.toMatch(/verification failed/);
        expect(io.stdout, `${version} ${mode}`).toContain('0/4194304 bytes allocated at offset 0 bytes');
      }
    }
    // v3's bitmap lies in a block of its own (offset 8192): metadata allocates it, off leaves a hole.
    expect(used(p('c3-metadata.cow'))).toBeGreaterThan(used(p('c3-off.cow')));
  });

  it("convert -o preallocation= reserves the output as create does; the contents are the source's", () => {
    rawFile(p('src.img'), 4 * MiB, [[MiB, 4096, 0x33]]);
    expect(blk(['convert', '-O', 'raw', '-o', 'preallocation=full', p('src.img'), p('dst.img')]).code).toBe(0);
    expect(used(p('dst.img'))).toBeGreaterThanOrEqual(4 * MiB);
    expect(blk(['compare', p('src.img'), p('dst.img')]).code).toBe(0);
    expect(blk(['convert', '-O', 'raw', p('src.img'), p('sparse.img')]).code).toBe(0);
    expect(used(p('sparse.img'))).toBeLessThan(MiB);
  });

  it.skipIf(!hasCommand('uml_moo'))(
    'a preallocated v3 overlay is still what uml_moo reads (uml-utilities installed)',
    () => {
      expect(
        blk(['create', '-q', '-f', 'cow', '-o', 'preallocation=full', '-b', p('base.img'), p('moo.cow')]).code,
      ).toBe(0);
      expect(blk(['io', '-c', 'write -P 0x77 2M 4k', p('moo.cow')]).code).toBe(0);
      const r = spawnSync('uml_moo', [p('moo.cow'), p('moo.img')], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const merged = fs.readFileSync(p('moo.img'));
      expect(merged[0]).toBe(0x5a);
      expect(merged[2 * MiB]).toBe(0x77);
      expect(merged[3 * MiB]).toBe(0);
    },
  );
});
