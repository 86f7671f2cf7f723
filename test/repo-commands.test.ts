/**
 * blk as the READMEs tell people to run it inside this repository: its
 * stdout is blk's output alone (no package-manager banner in a JSON file
 * made with `> f.json`), and relative paths mean what they mean where the
 * command was typed (pnpm runs scripts from the package root; scripts/blk.mjs
 * goes back to INIT_CWD), from the root, a plain subdirectory, inside a
 * workspace package (-w) and from outside the repository (-C).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BLK = path.join(REPO, 'packages', 'cli', 'dist', 'blk.js');

let inside: string; // a plain directory inside the repository (.tmp is ignored by git)
let outside: string;

function run(cmd: string, args: string[], cwd: string) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.INIT_CWD; // as in a fresh shell: pnpm sets it
  for (const k of Object.keys(env)) if (k.startsWith('npm_') || k.startsWith('PNPM_')) delete env[k];
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env, timeout: 120_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** What blk itself prints for `info --output=json NAME` run in `cwd`. */
function direct(name: string, cwd: string): string {
  const r = run(process.execPath, [BLK, 'info', '--output=json', name], cwd);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

beforeAll(() => {
  if (!fs.existsSync(BLK)) throw new Error(`${BLK} is missing: run pnpm run build first`);
  fs.mkdirSync(path.join(REPO, '.tmp'), { recursive: true });
  inside = fs.mkdtempSync(path.join(REPO, '.tmp', 'repo-commands-'));
  outside = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-repo-commands-'));
  for (const dir of [inside, outside]) {
    fs.mkdirSync(path.join(dir, 'sub'));
    const r = run(process.execPath, [BLK, 'create', '-q', '-f', 'raw', path.join(dir, 'sub', 'disk.img'), '1M'], dir);
    expect(r.code, r.stderr).toBe(0);
  }
});

afterAll(() => {
  for (const dir of [inside, outside]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('pnpm -s blk in the repository', () => {
  const cases: Array<[string, () => { args: string[]; cwd: string; name: string }]> = [
    [
      'from the repository root',
      () => ({ args: ['-s', 'blk'], cwd: REPO, name: path.relative(REPO, path.join(inside, 'sub', 'disk.img')) }),
    ],
    [
      'from a plain subdirectory, with a relative path',
      () => ({ args: ['-s', 'blk'], cwd: inside, name: 'sub/disk.img' }),
    ],
    ['from deeper, with ../', () => ({ args: ['-s', 'blk'], cwd: path.join(inside, 'sub'), name: '../sub/disk.img' })],
    [
      'from inside a workspace package (-w)',
      () => ({
        args: ['-s', '-w', 'blk'],
        cwd: path.join(REPO, 'packages', 'core', 'src'),
        name: path.relative(path.join(REPO, 'packages', 'core', 'src'), path.join(inside, 'sub', 'disk.img')),
      }),
    ],
    [
      'from outside the repository (-C)',
      () => ({ args: ['-s', '-C', REPO, 'blk'], cwd: outside, name: 'sub/disk.img' }),
    ],
  ];
  for (const [where, setup] of cases) {
    it(`${where}: stdout is exactly blk's JSON, for the file named relative to there`, () => {
      const { args, cwd, name } = setup();
      const r = run('pnpm', [...args, 'info', '--output=json', name], cwd);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(direct(name, cwd));
      expect(JSON.parse(r.stdout)).toMatchObject({ filename: name, format: 'raw', 'virtual-size': 1 << 20 });
    });
  }

  it("blk's exit status and error line come through unchanged, without pnpm's", () => {
    const r = run('pnpm', ['-s', 'blk', 'info', 'sub/missing.img'], inside);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('blk: sub/missing.img: no such file or directory\n');
  });
});

describe('the READMEs', () => {
  const readmes = [
    path.join(REPO, 'README.md'),
    ...fs
      .readdirSync(path.join(REPO, 'packages'))
      .map((p) => path.join(REPO, 'packages', p, 'README.md'))
      .filter((f) => fs.existsSync(f)),
  ];

  it('run blk and the example through pnpm only with -s (pnpm prints its own lines into stdout otherwise)', () => {
    const unsilenced: string[] = [];
    for (const file of readmes) {
      for (const [i, line] of fs.readFileSync(file, 'utf8').split('\n').entries()) {
        if (/\bpnpm\s+(?:run\s+)?(?:blk|example)\b/.test(line))
          unsilenced.push(`${path.relative(REPO, file)}:${i + 1}: ${line.trim()}`);
      }
    }
    expect(unsilenced).toEqual([]);
  });
});
