/** blk as a program: help, version, one-line errors, exit codes, lazy loading. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { blk, BLK, CLI_DIR, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('basics');

describe('blk executable', () => {
  it('is an executable node script (the bin: dist/blk.cjs; dist/blk.js runs it too)', () => {
    const bin = path.join(CLI_DIR, 'dist', 'blk.cjs');
    for (const file of [BLK, bin]) {
      expect(fs.readFileSync(file, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
      expect(fs.statSync(file).mode & 0o111).not.toBe(0);
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(CLI_DIR, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    expect(pkg.bin.blk).toBe('./dist/blk.cjs');
  });

  it('--version and -V print the package version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(CLI_DIR, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = blk([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`blk version ${pkg.version}\n`);
    }
  });

  it('--help lists every command', () => {
    const r = blk(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['create', 'info', 'map', 'convert', 'commit', 'rebase', 'compare', 'check', 'io']) {
      expect(r.stdout).toMatch(new RegExp(`^  ${cmd} `, 'm'));
    }
    for (const v of ['BLK_DEBUG', 'BLK_LOCK', 'BLK_NATIVE_IO']) expect(r.stdout).toMatch(new RegExp(`^  ${v}=`, 'm'));
  });

  it.each([
    ['create', ['-f, --format', '-b, --backing', '-F, --backing-format', '-o, --options']],
    ['info', ['--output', '--backing-chain']],
    ['map', ['--output']],
    ['convert', ['-O, --output-format', '-p, --progress', '-S, --sparse-size']],
    ['commit', ['-d, --keep', '-p, --progress']],
    ['rebase', ['-b, --backing', '-u, --unsafe']],
    ['compare', ['-f, --format', '-F, --second-format', '-s, --strict']],
    ['check', ['--output']],
    ['io', ['-c, --cmd', '-r, --read-only']],
  ])('blk %s --help shows its options', (cmd, options) => {
    const r = blk([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: blk ${cmd} `);
    for (const o of options) expect(r.stdout).toContain(o);
  });

  it('no command: usage on stderr, exit 1', () => {
    const r = blk([]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Usage: blk');
  });

  it('usage errors are one line on stderr', () => {
    let r = blk(['frobnicate']);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toMatch(/^blk: 'frobnicate' is not a blk command; the commands are create, info, /);
    r = blk(['info']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("blk: missing required argument 'file'\n");
    r = blk(['info', '--bogus', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("blk: unknown option '--bogus'\n");
    r = blk(['create', '-f', 'raw', path.join(scratch.dir, 'x.img'), '12X']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^blk: invalid image size '12X': .*\n$/);
  });

  it('runtime errors: one line naming the file, no stack trace unless BLK_DEBUG', () => {
    const missing = path.join(scratch.dir, 'missing.img');
    let r = blk(['info', missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`blk: ${missing}: no such file or directory\n`);
    r = blk(['info', missing], { env: { BLK_DEBUG: '1' } });
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(`blk: ${missing}: no such file or directory`);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it('unknown formats list the known ones', () => {
    const img = path.join(scratch.dir, 'u.img');
    rawFile(img, 4096);
    const r = blk(['info', '-f', 'qcow9', img]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^blk: .*unknown format 'qcow9' \(known: cow, qcow2, raw\)\n$/);
  });

  it('loads only the command it runs: one bundle whose commands initialise lazily, no command import at start', () => {
    const bundle = fs.readFileSync(path.join(CLI_DIR, 'dist', 'blk-main.cjs'), 'utf8');
    // Every command module is reached through a dynamic import, which the bundle turns into a lazy initialiser.
    expect(bundle).not.toMatch(/\bimport\(/);
    expect(bundle).not.toContain('require("@blk/');
    // No other file of dist/ is loaded by the bin (the library entry is separate).
    expect(
      fs.readdirSync(path.join(CLI_DIR, 'dist')).filter((f) => /^(chunk|info|map|create)-.*\.js$/.test(f)),
    ).toEqual([]);
  });
});
