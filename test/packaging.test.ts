/**
 * The packages as a user outside this repository gets them: `pnpm pack`ed
 * (scripts/pack.mjs), installed with plain npm from the tarballs into an
 * empty project and globally (`-g --prefix`), with no registry (`--offline`:
 * the third-party dependencies are packed from this checkout too, and no
 * @blk package may be fetched from anywhere but the tarballs). Then blk runs
 * from there, the native addon is built (locks, holes), and the library
 * loads from ESM, from CommonJS `require` (with Node's require(esm) off, as
 * before Node 20.19) and from a CommonJS TypeScript project.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
const KIB = 1024;
// npm installs, two addon builds and a TypeScript compile: minutes on a busy 2-core machine.
const SLOW = 600_000;

let work: string;
let tarballs: string[];
let project: string;
let prefix: string;

function run(cmd: string, args: string[], cwd: string, options: SpawnSyncOptions = {}) {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  delete env.NODE_OPTIONS; // vitest's hooks must not reach the children
  delete env.INIT_CWD;
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k]; // no settings of the pnpm that started us
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: SLOW, maxBuffer: 64 << 20, ...options, env });
  if (r.error) throw r.error;
  return { code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function ok(cmd: string, args: string[], cwd: string, options: SpawnSyncOptions = {}): string {
  const r = run(cmd, args, cwd, options);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function npm(args: string[], cwd: string): string {
  // The cache is private to the test: nothing comes from an earlier download.
  return ok('npm', [...args, '--offline', '--no-audit', '--no-fund', `--cache=${path.join(work, 'npm-cache')}`], cwd);
}

/** A 1 MiB raw image with 64 KiB of 0xab at 512 KiB and holes around it, made by `blk` itself. */
function makeImage(blk: string[], dir: string, name: string, env?: NodeJS.ProcessEnv): string {
  const [cmd, ...pre] = blk;
  ok(cmd!, [...pre, 'create', '-q', '-f', 'raw', name, '1M'], dir, { env });
  ok(cmd!, [...pre, 'io', '-c', 'write -P 0xab 512k 64k', name], dir, { env });
  return path.join(dir, name);
}

const holeyMap = [
  { start: 0, length: 512 * KIB, depth: 0, present: true, zero: true, data: false, offset: 0 },
  { start: 512 * KIB, length: 64 * KIB, depth: 0, present: true, zero: false, data: true, offset: 512 * KIB },
  { start: 576 * KIB, length: 448 * KIB, depth: 0, present: true, zero: true, data: false, offset: 576 * KIB },
];

beforeAll(() => {
  for (const pkg of ['core', 'raw', 'cow', 'native', 'images', 'testkit', 'cli']) {
    if (!fs.existsSync(path.join(REPO, 'packages', pkg, 'dist'))) throw new Error(`packages/${pkg} is not built: run pnpm run build`);
  }
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-packaging-'));
  const out = path.join(work, 'tarballs');
  tarballs = ok(process.execPath, [path.join(REPO, 'scripts', 'pack.mjs'), '--third-party', out], REPO).trim().split('\n');
  project = path.join(work, 'project');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true }));
  npm(['install', ...tarballs], project);
  prefix = path.join(work, 'global');
  npm(['install', '-g', `--prefix=${prefix}`, ...tarballs], work);
}, SLOW);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('packed packages installed with npm outside the repository', () => {
  it('every public package is packed, none names a workspace: dependency, @blk/native ships its sources', () => {
    const names = tarballs.map((t) => path.basename(t));
    for (const pkg of ['cli', 'core', 'cow', 'images', 'native', 'raw', 'testkit']) expect(names).toContain(`blk-${pkg}-0.1.0.tgz`);
    expect(names.some((n) => n.startsWith('blk-faults'))).toBe(false); // private, test-only
    for (const pkg of ['cli', 'core', 'cow', 'images', 'native', 'raw', 'testkit']) {
      const manifest = fs.readFileSync(path.join(project, 'node_modules', '@blk', pkg, 'package.json'), 'utf8');
      expect(manifest).not.toContain('workspace:');
    }
    const native = path.join(project, 'node_modules', '@blk', 'native');
    for (const f of ['binding.gyp', 'install.cjs', 'native/addon.c', 'native/lock.c', 'native/io.c', 'native/addon.h']) {
      expect(fs.existsSync(path.join(native, f)), f).toBe(true);
    }
    // ... and the install built the addon there.
    expect(fs.existsSync(path.join(native, 'build', 'Release', 'blk_native.node'))).toBe(true);
  });

  it('the project\'s blk creates, writes, maps (holes: the addon loaded) and reports an image', () => {
    const blk = [path.join(project, 'node_modules', '.bin', 'blk')];
    const image = makeImage(blk, project, 'local.img');
    expect(JSON.parse(ok(blk[0]!, ['map', '--output=json', image], project))).toEqual(holeyMap);
    const info = JSON.parse(ok(blk[0]!, ['info', '--output=json', image], project)) as Record<string, unknown>;
    expect(info['format']).toBe('raw');
    expect(info['virtual-size']).toBe(1024 * KIB);
  });

  it('the library from ESM: images open with OS locks (a second writer is refused)', () => {
    const image = path.join(project, 'local.img');
    const script = `
      import { openImage } from '@blk/images';
      import { convertImage } from '@blk/cli';
      const a = await openImage(${JSON.stringify(image)});
      const second = await openImage(${JSON.stringify(image)}).then(() => 'opened', (e) => e.kind);
      await a.close();
      console.log(JSON.stringify({ second, convertImage: typeof convertImage }));`;
    const out = ok(process.execPath, ['--input-type=module', '-e', script], project);
    expect(JSON.parse(out)).toEqual({ second: 'locked', convertImage: 'function' });
  });

  it('the library from CommonJS require(), without require(esm)', () => {
    const image = path.join(project, 'local.img');
    const script = `
      const { openImage } = require('@blk/images');
      const { convertImage } = require('@blk/cli');
      const { checkReadAfterWrite } = require('@blk/testkit');
      openImage(${JSON.stringify(image)}).then(async (a) => {
        const second = await openImage(${JSON.stringify(image)}).then(() => 'opened', (e) => e.kind);
        await a.close();
        console.log(JSON.stringify({ second, convertImage: typeof convertImage, testkit: typeof checkReadAfterWrite }));
      });`;
    const out = ok(process.execPath, ['--no-experimental-require-module', '-e', script], project);
    expect(JSON.parse(out)).toEqual({ second: 'locked', convertImage: 'function', testkit: 'function' });
  });

  it('a CommonJS TypeScript project compiles against the packages (module commonjs and node16) and runs', () => {
    fs.writeFileSync(path.join(project, 'main.ts'), `
      import { convertImage } from '@blk/cli';
      import { openImage, BlockError } from '@blk/images';
      async function main(): Promise<void> {
        await convertImage('local.img', 'copy.img', { outputFormat: 'raw' });
        const image = await openImage('copy.img', { readOnly: true });
        const bytes = await image.read(512 * 1024 - 2, 4);
        await image.close();
        const missing = await openImage('no-such.img').catch((e: unknown) => e);
        console.log(Array.from(bytes).join(','), missing instanceof BlockError ? 'BlockError' : String(missing));
      }
      void main();
    `);
    for (const [module, resolution] of [['commonjs', 'node10'], ['node16', 'node16']] as const) {
      const outDir = path.join(project, `out-${module}`);
      ok(process.execPath, [TSC, '--module', module, '--moduleResolution', resolution, '--target', 'es2022', '--strict',
        '--skipLibCheck', '--types', 'node', '--typeRoots', path.join(REPO, 'node_modules', '@types'),
        '--outDir', outDir, 'main.ts'], project);
      expect(fs.readFileSync(path.join(outDir, 'main.js'), 'utf8')).toMatch(/require\("@blk\/cli"\)/);
      fs.rmSync(path.join(project, 'copy.img'), { force: true });
      expect(ok(process.execPath, ['--no-experimental-require-module', path.join(outDir, 'main.js')], project).trim()).toBe('0,0,171,171 BlockError');
    }
  });

  it('a global install (npm install -g --prefix) puts a working blk on PATH, run from a scratch directory', () => {
    const scratch = fs.mkdtempSync(path.join(work, 'scratch-'));
    const env = { PATH: `${path.join(prefix, 'bin')}${path.delimiter}${process.env.PATH}` };
    const image = makeImage(['blk'], scratch, 'global.img', env);
    expect(JSON.parse(ok('blk', ['map', '--output=json', 'global.img'], scratch, { env }))).toEqual(holeyMap);
    expect(ok('blk', ['info', 'global.img'], scratch, { env })).toMatch(/^image: global\.img\nfile format: raw\nvirtual size: 1 MiB/);
    expect(fs.existsSync(image)).toBe(true);
    // It is the installed copy that ran, not this repository's.
    expect(fs.realpathSync(ok('sh', ['-c', 'command -v blk'], scratch, { env }).trim())).toContain(prefix);
  });
});
