/**
 * The repository's build steps print a line per thing they did, keep the
 * compilers' output in a log file, and skip what is up to date:
 * scripts/build.mjs (`pnpm run build`, run first by `pnpm example` and
 * `pnpm test`) on a scratch workspace, and @blk/native's install.cjs on a
 * scratch copy of the package (so nothing the other tests use is rebuilt).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NOISE = 250; // lines a package's build prints (tsup and node-gyp print about that many together)

let work: string;
beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-build-scripts-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function run(cmd: string, args: string[], cwd: string) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS;
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env, timeout: 600_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A workspace like this one: scripts/build.mjs and packages a <- b, whose builds are noisy and count themselves. */
function scratchWorkspace(): string {
  const root = fs.mkdtempSync(path.join(work, 'ws-'));
  fs.mkdirSync(path.join(root, 'scripts'), { recursive: true });
  fs.copyFileSync(path.join(REPO, 'scripts', 'build.mjs'), path.join(root, 'scripts', 'build.mjs'));
  fs.writeFileSync(path.join(root, 'tsconfig.json'), '{}\n');
  const builder =
    `const fs=require('fs');for(let i=0;i<${NOISE};i++)console.log('noise line '+i);`
    + `fs.rmSync('dist',{recursive:true,force:true});fs.mkdirSync('dist');fs.writeFileSync('dist/index.js','built');`
    + `fs.appendFileSync('../../builds.txt',require('./package.json').name+'\\n')`;
  for (const [name, deps] of [
    ['a', {}],
    ['b', { a: 'workspace:*' }],
  ] as const) {
    const dir = path.join(root, 'packages', name);
    fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'src', 'index.ts'), 'export {};\n');
    fs.writeFileSync(path.join(dir, 'build.cjs'), builder);
    fs.writeFileSync(
      path.join(dir, 'package.json'),
      JSON.stringify({ name, version: '1.0.0', dependencies: deps, scripts: { build: 'node build.cjs' } }),
    );
  }
  return root;
}

describe('scripts/build.mjs', () => {
  it('prints a line per package built (output in .tmp/build.log), dependencies first; a second run builds nothing; a changed source rebuilds its package only', () => {
    const root = scratchWorkspace();
    const builds = () =>
      fs.existsSync(path.join(root, 'builds.txt'))
        ? fs.readFileSync(path.join(root, 'builds.txt'), 'utf8').trim().split('\n')
        : [];
    const build = path.join(root, 'scripts', 'build.mjs');

    const first = run(process.execPath, [build], root);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^build: a \(\d+\.\d s\)$/),
      expect.stringMatching(/^build: b \(\d+\.\d s\)$/),
      'build: 2 packages built (log: .tmp/build.log)',
    ]);
    expect(first.stdout + first.stderr).not.toContain('noise line');
    expect(fs.readFileSync(path.join(root, '.tmp', 'build.log'), 'utf8')).toContain(`noise line ${NOISE - 1}`);
    expect(builds()).toEqual(['a', 'b']);

    const second = run(process.execPath, [build], root);
    expect(second.stdout).toBe('build: everything up to date\n');
    expect(builds()).toEqual(['a', 'b']);
    // The log of the last real build stays.
    expect(fs.readFileSync(path.join(root, '.tmp', 'build.log'), 'utf8')).toContain('noise line 0');

    const later = new Date(Date.now() + 5_000);
    fs.utimesSync(path.join(root, 'packages', 'b', 'src', 'index.ts'), later, later);
    const third = run(process.execPath, [build], root);
    expect(third.stdout).toMatch(/^build: b \(\d+\.\d s\)\nbuild: 1 package built/);
    expect(builds()).toEqual(['a', 'b', 'b']);
  });

  it("a package whose tsup config bundles workspace packages (noExternal) is rebuilt when a dependency's dist is newer, even an indirect one", () => {
    const root = scratchWorkspace();
    const dir = path.join(root, 'packages', 'c');
    fs.cpSync(path.join(root, 'packages', 'b'), dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'package.json'),
      JSON.stringify({
        name: 'c',
        version: '1.0.0',
        devDependencies: { b: 'workspace:*' },
        scripts: { build: 'node build.cjs' },
      }),
    );
    fs.writeFileSync(path.join(dir, 'tsup.bin.config.ts'), 'export default { noExternal: [/^a$|^b$/] };\n');
    const build = path.join(root, 'scripts', 'build.mjs');
    const built = (r: ReturnType<typeof run>) =>
      r.stdout
        .split('\n')
        .filter((l) => /^build: \w \(/.test(l))
        .map((l) => l.split(' ')[1]);
    expect(built(run(process.execPath, [build], root))).toEqual(['a', 'b', 'c']);

    // Everything as if built a minute ago from older inputs; then a's source changes.
    const ago = (s: number) => new Date(Date.now() - s * 1000);
    const age = (p: string, t: Date): void => {
      if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) age(path.join(p, e), t);
      else fs.utimesSync(p, t, t);
    };
    for (const pkg of ['a', 'b', 'c']) {
      const d = path.join(root, 'packages', pkg);
      for (const e of fs.readdirSync(d)) age(path.join(d, e), e === 'dist' ? ago(60) : ago(120));
    }
    age(path.join(root, 'tsconfig.json'), ago(120));
    fs.utimesSync(path.join(root, 'packages', 'a', 'src', 'index.ts'), ago(30), ago(30));
    // a is rebuilt; b only imports a (left external): up to date; c carries a copy of a: rebuilt.
    expect(built(run(process.execPath, [build], root))).toEqual(['a', 'c']);
    expect(run(process.execPath, [build], root).stdout).toBe('build: everything up to date\n');
  });

  it("a failing build: its output's tail, the log's name, exit status 1", () => {
    const root = scratchWorkspace();
    fs.writeFileSync(
      path.join(root, 'packages', 'a', 'build.cjs'),
      "console.log('the compiler says: bad thing');process.exit(3)",
    );
    const r = run(process.execPath, [path.join(root, 'scripts', 'build.mjs')], root);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the compiler says: bad thing');
    expect(r.stderr).toMatch(/build: a FAILED \(full log: \.tmp\/build\.log\)/);
    expect(fs.existsSync(path.join(root, 'packages', 'b', 'dist'))).toBe(false); // nothing built on a broken dependency
  });
});

describe('@blk/native install.cjs', () => {
  it('builds the addon printing one line (compiler output in install.log), and leaves an up-to-date addon alone', () => {
    const pkg = path.join(work, 'native');
    fs.mkdirSync(pkg);
    for (const f of ['install.cjs', 'binding.gyp', 'package.json'])
      fs.copyFileSync(path.join(REPO, 'packages', 'native', f), path.join(pkg, f));
    fs.cpSync(path.join(REPO, 'packages', 'native', 'native'), path.join(pkg, 'native'), { recursive: true });
    const addon = path.join(pkg, 'build', 'Release', 'blk_native.node');

    const first = run(process.execPath, ['install.cjs'], pkg);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(
      /^@blk\/native: built build\/Release\/blk_native\.node with (node-gyp|cc) \(log: .*install\.log\)\n$/,
    );
    expect(first.stderr).toBe('');
    expect(fs.readFileSync(path.join(pkg, 'install.log'), 'utf8').length).toBeGreaterThan(0);
    const builtAt = fs.statSync(addon).mtimeMs;

    const second = run(process.execPath, ['install.cjs'], pkg);
    expect(second.stdout).toBe('@blk/native: build/Release/blk_native.node is up to date\n');
    expect(fs.statSync(addon).mtimeMs).toBe(builtAt);

    // A newer C source is rebuilt.
    const later = new Date(Date.now() + 5_000);
    fs.utimesSync(path.join(pkg, 'native', 'io.c'), later, later);
    expect(run(process.execPath, ['install.cjs'], pkg).stdout).toMatch(/^@blk\/native: built /);
  });
});
