/**
 * blk serve with several exports: FILE (-x/-D), repeated --export NAME=FILE[,ro][,format=][,description=]
 * and --exports-file JSON, each its own image and options; nbdinfo --list lists them all, qemu-img and
 * qemu-io reach each by name, an unknown name is refused, and bad export lists stop the command.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, rawFile, tempDir } from './helpers.js';
import { startServe, tool } from './serve-helpers.js';

const MiB = 1024 * 1024;
const missing = ['qemu-img', 'qemu-io', 'nbdinfo'].every(hasCommand)
  ? undefined
  : 'qemu-img, qemu-io or nbdinfo missing';
if (missing) console.warn(`serve-exports.test.ts: some tests skipped: ${missing}`);

beforeAll(() => ensureBuilt());

/** export name -> [is_read_only, description] from `nbdinfo --list` text. */
function listed(text: string): Record<string, { ro: boolean; description: string | undefined; size: number }> {
  const out: Record<string, { ro: boolean; description: string | undefined; size: number }> = {};
  for (const block of text.split(/^export=/m).slice(1)) {
    const name = JSON.parse(block.split('\n')[0]!.replace(/:$/, '')) as string;
    out[name] = {
      ro: /is_read_only: true/.test(block),
      description: block.match(/description: (.*)\n/)?.[1],
      size: Number(block.match(/export-size: (\d+)/)?.[1]),
    };
  }
  return out;
}

describe.sequential('blk serve: several exports', () => {
  it('FILE, --export and --exports-file together: listed with their own size, read-only flag and description; each reachable by name', async (ctx) => {
    if (missing) ctx.skip();
    const dir = tempDir('serve-exports');
    const main = path.join(dir, 'main.img');
    rawFile(main, 2 * MiB, [[0, 4096, 0x10]]);
    const base = path.join(dir, 'base.img');
    rawFile(base, 3 * MiB, [[0, 3 * MiB, 0x20]]);
    const cow = path.join(dir, 'disk, one.cow');
    expect(blk(['create', '-q', '-f', 'cow', '-b', base, cow]).code).toBe(0);
    expect(blk(['io', '-c', 'write -P 0x21 1M 64k', cow]).code).toBe(0);
    const scratch = path.join(dir, 'scratch.img');
    rawFile(scratch, MiB);
    fs.mkdirSync(path.join(dir, 'conf'));
    const fromCfg = path.join(dir, 'conf', 'cfg.img');
    rawFile(fromCfg, 5 * MiB, [[0, 512, 0x50]]);
    const cfg = path.join(dir, 'conf', 'exports.json');
    fs.writeFileSync(
      cfg,
      JSON.stringify({ exports: [{ name: 'from-config', file: 'cfg.img', format: 'raw', description: 'from JSON' }] }),
    );
    const sock = path.join(dir, 's.sock');
    const s = await startServe(dir, [
      '-t',
      '-e',
      '4',
      '-f',
      'raw',
      '-D',
      'the main disk',
      '-k',
      sock,
      main,
      '--export',
      `cow=${cow.replaceAll(',', ',,')},ro,format=cow,description=a cow,, read-only`,
      '--export',
      `scratch=${scratch}`,
      '--exports-file',
      cfg,
    ]);
    const uri = (name: string) => `nbd+unix:///${name}?socket=${sock}`;
    try {
      const list = tool('nbdinfo', ['--list', uri('')]);
      expect(list.code, list.stderr).toBe(0);
      expect(listed(list.stdout)).toEqual({
        '': { ro: false, description: 'the main disk', size: 2 * MiB },
        cow: { ro: true, description: 'a cow, read-only', size: 3 * MiB },
        scratch: { ro: false, description: undefined, size: MiB },
        'from-config': { ro: false, description: 'from JSON', size: 5 * MiB },
      });
      // Each export by name: the cow export reads as its chain (blk convert's view of it).
      const viaBlk = path.join(dir, 'cow-blk.raw');
      expect(blk(['convert', '-O', 'raw', '-U', cow, viaBlk]).code).toBe(0);
      const viaNbd = path.join(dir, 'cow-nbd.raw');
      const conv = tool('qemu-img', ['convert', '-O', 'raw', uri('cow'), viaNbd]);
      expect(conv.code, conv.stderr).toBe(0);
      expect(fs.readFileSync(viaNbd).equals(fs.readFileSync(viaBlk))).toBe(true);
      const cfgInfo = tool('qemu-img', ['info', '--output=json', uri('from-config')]);
      expect(JSON.parse(cfgInfo.stdout)['virtual-size']).toBe(5 * MiB);
      // Writes go to the writable export named, and are refused on the read-only one.
      const w = tool('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 0 64k', uri('scratch')]);
      expect(w.code, w.stderr).toBe(0);
      expect(w.stdout).not.toMatch(/failed/);
      const ro = tool('qemu-io', ['-f', 'raw', '-c', 'write -P 0x66 0 4k', uri('cow')]);
      expect(ro.stderr).toContain('Could not open image: Permission denied'); // qemu sees the READ_ONLY flag
      // Unknown names: refused (ERR_UNKNOWN), the server goes on.
      const unknown = tool('qemu-img', ['info', uri('nope')]);
      expect(unknown.code).not.toBe(0);
      expect(unknown.stderr).toContain("export 'nope' not present");
      expect(tool('nbdinfo', [uri('nope')]).code).not.toBe(0);
      expect(tool('nbdinfo', ['--size', uri('')]).stdout.trim()).toBe(String(2 * MiB));
    } finally {
      expect(await s.stop()).toEqual({ code: 0, signal: null });
    }
    expect([...fs.readFileSync(scratch).subarray(0, 3)]).toEqual([0x66, 0x66, 0x66]);
    const chk = blk(['io', '-c', 'read -P 0x21 1M 64k', '-c', 'read -P 0x20 0 64k', cow]);
    expect(chk.code, chk.stderr).toBe(0);
    expect(chk.stdout).not.toMatch(/Pattern verification/);
  });

  it('without FILE there is no default export unless one is named "": nbdinfo of the default fails, --list works', async (ctx) => {
    if (missing) ctx.skip();
    const dir = tempDir('serve-noddefault');
    const a = path.join(dir, 'a.img');
    rawFile(a, MiB);
    const sock = path.join(dir, 's.sock');
    const s = await startServe(dir, ['-t', '-r', '-f', 'raw', '-k', sock, '--export', `only=${a}`]);
    try {
      const def = tool('nbdinfo', [`nbd+unix:///?socket=${sock}`]);
      expect(def.code).not.toBe(0);
      expect(def.stderr).toMatch(/for the default export/);
      const list = tool('nbdinfo', ['--list', `nbd+unix:///?socket=${sock}`]);
      expect(list.code, list.stderr).toBe(0);
      expect(Object.keys(listed(list.stdout))).toEqual(['only']);
    } finally {
      await s.stop();
    }
  });

  it('refuses bad export lists with one line, before listening', () => {
    const dir = tempDir('serve-exports-bad');
    const a = path.join(dir, 'a.img');
    rawFile(a, MiB);
    const sock = path.join(dir, 's.sock');
    const bad = (args: string[], msg: RegExp, files: Record<string, string> = {}) => {
      for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
      const r = blk(['serve', '-k', sock, ...args]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
      expect(fs.existsSync(sock)).toBe(false);
    };
    bad([], /nothing to serve/);
    bad(['-x', 'n', '--export', `m=${a}`], /-x and -D describe the export of FILE/);
    bad(['--export', a], /expected NAME=FILE/);
    bad(['--export', `x=${a},ro`, '--export', `x=${a},ro`], /export 'x' is given twice/);
    bad(['-x', 'x', a, '--export', `x=${a}`], /export 'x' is given twice/);
    bad(['--export', `x=${a},cache=none`], /unknown option 'cache'/);
    bad(['--exports-file', path.join(dir, 'nope.json')], /not a regular file/);
    bad(['--exports-file', path.join(dir, 'bad.json')], /not JSON/, { 'bad.json': '{"exports": [' });
    bad(['--exports-file', path.join(dir, 'keys.json')], /unknown key "path"/, {
      'keys.json': JSON.stringify({ exports: [{ name: 'a', path: 'a.img' }] }),
    });
    // The same image writable in two exports: the second open meets the first one's lock.
    bad(['-f', 'raw', '--export', `a=${a}`, '--export', `b=${a}`], /write lock/);
    bad(['--export', `x=${path.join(dir, 'missing.img')}`], /missing.img/);
  });

  it('the same image read-only in two exports is fine', async () => {
    const dir = tempDir('serve-exports-shared');
    const a = path.join(dir, 'a.img');
    rawFile(a, MiB, [[0, 512, 0x42]]);
    const sock = path.join(dir, 's.sock');
    const s = await startServe(dir, ['-t', '-f', 'raw', '-k', sock, '--export', `a=${a},ro`, '--export', `b=${a},ro`]);
    await s.stop();
    expect(s.stderr()).toMatch(/serving 'a', 'b' on /);
  });
});
