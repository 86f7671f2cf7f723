/**
 * The packages as a user outside this repository gets them: `pnpm pack`ed
 * (scripts/pack.mjs), installed with plain npm from the tarballs into an
 * empty project and globally (`-g --prefix`), with no registry (`--offline`:
 * the third-party dependencies are packed from this checkout too, and no
 * @blk package may be fetched from anywhere but the tarballs). Then blk runs
 * from there, the native addon is built (locks, holes), and the library
 * loads from ESM, from CommonJS `require` (with Node's require(esm) off, as
 * before Node 20.19) and from a CommonJS TypeScript project. The CLI
 * tarball also installs alone (its bin is self-contained and builds the addon
 * itself; without a compiler it installs and runs without OS locks).
 */
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
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

function childEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_OPTIONS; // vitest's hooks must not reach the children
  delete env.INIT_CWD;
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k]; // no settings of the pnpm that started us
  return env;
}

function run(cmd: string, args: string[], cwd: string, options: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    timeout: SLOW,
    maxBuffer: 64 << 20,
    ...options,
    env: childEnv(options.env),
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/**
 * `ok` without blocking: the installs run side by side, and vitest's worker
 * keeps answering its RPC calls (a minute of spawnSync times them out).
 */
function okAsync(cmd: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'], timeout: SLOW });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout + stderr);
      else reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${code}:\n${stdout}\n${stderr}`));
    });
  });
}

function ok(cmd: string, args: string[], cwd: string, options: SpawnSyncOptions = {}): string {
  const r = run(cmd, args, cwd, options);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** npm with no registry; its output (install scripts' too). Run as npm's own script with node: `env` may give a PATH without npm. */
function npm(args: string[], cwd: string, env?: NodeJS.ProcessEnv): Promise<string> {
  // The cache is private to the test: nothing comes from an earlier download.
  const npmArgs = [
    ...args,
    '--offline',
    '--no-audit',
    '--no-fund',
    '--foreground-scripts',
    `--cache=${path.join(work, 'npm-cache')}`,
  ];
  const npmCli = fs.realpathSync(ok('sh', ['-c', 'command -v npm'], work).trim()); // .../npm/bin/npm-cli.js
  return okAsync(process.execPath, [npmCli, ...npmArgs], cwd, env);
}

/** A directory with a package.json, as `npm init` leaves it. */
function emptyProject(dir: string): string {
  fs.mkdirSync(dir);
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: path.basename(dir), version: '1.0.0', private: true }),
  );
  return dir;
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

let lonePrefix: string;
let loneProject: string;
let loneProjectInstall: string;

beforeAll(async () => {
  for (const pkg of ['core', 'raw', 'cow', 'native', 'images', 'testkit', 'jobs', 'cli']) {
    if (!fs.existsSync(path.join(REPO, 'packages', pkg, 'dist')))
      throw new Error(`packages/${pkg} is not built: run pnpm run build`);
  }
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-packaging-'));
  const out = path.join(work, 'tarballs');
  tarballs = (await okAsync(process.execPath, [path.join(REPO, 'scripts', 'pack.mjs'), '--third-party', out], REPO))
    .trim()
    .split('\n');
  const cliTarball = tarballs.find((t) => path.basename(t).startsWith('blk-cli-'))!;
  project = emptyProject(path.join(work, 'project'));
  prefix = path.join(work, 'global');
  lonePrefix = path.join(work, 'lone-global');
  loneProject = emptyProject(path.join(work, 'lone-project'));
  // The lone project's machine has no C compiler, make, python or node-gyp: PATH holds node and sh only.
  const bare = path.join(work, 'bare-bin');
  fs.mkdirSync(bare);
  fs.symlinkSync(process.execPath, path.join(bare, 'node'));
  fs.symlinkSync(ok('sh', ['-c', 'command -v sh'], work).trim(), path.join(bare, 'sh'));
  [, , , loneProjectInstall] = await Promise.all([
    npm(['install', ...tarballs], project),
    npm(['install', '-g', `--prefix=${prefix}`, ...tarballs], work),
    // The README's install of the blk command: the CLI tarball alone.
    npm(['install', '-g', `--prefix=${lonePrefix}`, cliTarball], work),
    npm(['install', cliTarball], loneProject, { PATH: bare, CC: '' }),
  ]);
}, SLOW);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('packed packages installed with npm outside the repository', () => {
  it('every public package is packed, none names a workspace: dependency, @blk/native ships its sources', () => {
    const names = tarballs.map((t) => path.basename(t));
    for (const pkg of ['cli', 'core', 'cow', 'images', 'jobs', 'native', 'raw', 'testkit'])
      expect(names).toContain(`blk-${pkg}-0.1.0.tgz`);
    expect(names.some((n) => n.startsWith('blk-faults'))).toBe(false); // private, test-only
    for (const pkg of ['cli', 'core', 'cow', 'images', 'jobs', 'native', 'raw', 'testkit']) {
      const manifest = fs.readFileSync(path.join(project, 'node_modules', '@blk', pkg, 'package.json'), 'utf8');
      expect(manifest).not.toContain('workspace:');
    }
    const native = path.join(project, 'node_modules', '@blk', 'native');
    for (const f of [
      'binding.gyp',
      'install.cjs',
      'native/addon.c',
      'native/lock.c',
      'native/io.c',
      'native/addon.h',
    ]) {
      expect(fs.existsSync(path.join(native, f)), f).toBe(true);
    }
    // ... and the install built the addon there.
    expect(fs.existsSync(path.join(native, 'build', 'Release', 'blk_native.node'))).toBe(true);
  });

  it("the project's blk creates, writes, maps (holes: the addon loaded) and reports an image", () => {
    const blk = [path.join(project, 'node_modules', '.bin', 'blk')];
    const image = makeImage(blk, project, 'local.img');
    expect(JSON.parse(ok(blk[0]!, ['map', '--output=json', image], project))).toEqual(holeyMap);
    const info = JSON.parse(ok(blk[0]!, ['info', '--output=json', image], project)) as Record<string, unknown>;
    expect(info.format).toBe('raw');
    expect(info['virtual-size']).toBe(1024 * KIB);
  });

  it("the library from ESM: images open with OS locks (a second writer is refused); @blk/cli throws @blk/images' BlockError", () => {
    const image = path.join(project, 'local.img');
    const script = `
      import { openImage, BlockError } from '@blk/images';
      import { convertImage } from '@blk/cli';
      const a = await openImage(${JSON.stringify(image)});
      const second = await openImage(${JSON.stringify(image)}).then(() => 'opened', (e) => e.kind);
      await a.close();
      // @blk/cli's library entry and the program share one @blk/core (the bin's bundled copy is not it).
      const failed = await convertImage('no-such.img', 'out.img', { outputFormat: 'raw' }).catch((e) => e);
      console.log(JSON.stringify({ second, convertImage: typeof convertImage, sameBlockError: failed instanceof BlockError }));`;
    const out = ok(process.execPath, ['--input-type=module', '-e', script], project);
    expect(JSON.parse(out)).toEqual({ second: 'locked', convertImage: 'function', sameBlockError: true });
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
    fs.writeFileSync(
      path.join(project, 'main.ts'),
      `
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
    `,
    );
    for (const [module, resolution] of [
      ['commonjs', 'node10'],
      ['node16', 'node16'],
    ] as const) {
      const outDir = path.join(project, `out-${module}`);
      ok(
        process.execPath,
        [
          TSC,
          '--module',
          module,
          '--moduleResolution',
          resolution,
          '--target',
          'es2022',
          '--strict',
          '--skipLibCheck',
          '--types',
          'node',
          '--typeRoots',
          path.join(REPO, 'node_modules', '@types'),
          '--outDir',
          outDir,
          'main.ts',
        ],
        project,
      );
      expect(fs.readFileSync(path.join(outDir, 'main.js'), 'utf8')).toMatch(/require\("@blk\/cli"\)/);
      fs.rmSync(path.join(project, 'copy.img'), { force: true });
      expect(
        ok(process.execPath, ['--no-experimental-require-module', path.join(outDir, 'main.js')], project).trim(),
      ).toBe('0,0,171,171 BlockError');
    }
  });

  it('a global install (npm install -g --prefix) puts a working blk on PATH, run from a scratch directory', () => {
    const scratch = fs.mkdtempSync(path.join(work, 'scratch-'));
    const env = { PATH: `${path.join(prefix, 'bin')}${path.delimiter}${process.env.PATH}` };
    const image = makeImage(['blk'], scratch, 'global.img', env);
    expect(JSON.parse(ok('blk', ['map', '--output=json', 'global.img'], scratch, { env }))).toEqual(holeyMap);
    expect(ok('blk', ['info', 'global.img'], scratch, { env })).toMatch(
      /^image: global\.img\nfile format: raw\nvirtual size: 1 MiB/,
    );
    expect(fs.existsSync(image)).toBe(true);
    // It is the installed copy that ran, not this repository's.
    expect(fs.realpathSync(ok('sh', ['-c', 'command -v blk'], scratch, { env }).trim())).toContain(prefix);
  });
});

describe('the @blk/cli tarball installed alone (no other @blk package, no registry)', () => {
  it('npm i -g puts a blk on PATH that creates, writes, maps (holes) and reports images from a scratch directory, with OS locks', () => {
    expect(fs.readdirSync(path.join(lonePrefix, 'lib', 'node_modules', '@blk'))).toEqual(['cli']);
    expect(fs.existsSync(path.join(lonePrefix, 'lib', 'node_modules', 'commander'))).toBe(false); // inside the bundle
    const scratch = fs.mkdtempSync(path.join(work, 'lone-scratch-'));
    const env = { PATH: `${path.join(lonePrefix, 'bin')}${path.delimiter}${process.env.PATH}` };
    expect(fs.realpathSync(ok('sh', ['-c', 'command -v blk'], scratch, { env }).trim())).toContain(lonePrefix);
    makeImage(['blk'], scratch, 'lone.img', env);
    // Holes are found with lseek(SEEK_DATA/SEEK_HOLE) by the addon only: without it the whole file maps as data.
    expect(JSON.parse(ok('blk', ['map', '--output=json', 'lone.img'], scratch, { env }))).toEqual(holeyMap);
    expect(ok('blk', ['info', 'lone.img'], scratch, { env })).toMatch(
      /^image: lone\.img\nfile format: raw\nvirtual size: 1 MiB/,
    );
    // A second writer is refused while a first one holds the image (an OFD lock, taken by the addon).
    // The first has the image open once its write is reported; it is stopped after the second's attempt.
    const script =
      'blk io -c "write 0 512" -c "sleep 30000" lone.img > first.out & first=$!; '
      + 'for i in $(seq 300); do grep -q wrote first.out && break; sleep 0.1; done; '
      + 'blk io -c "write 0 512" lone.img; echo "second: $?"; kill $first; wait';
    const second = run('sh', ['-c', script], scratch, { env });
    expect(fs.readFileSync(path.join(scratch, 'first.out'), 'utf8')).toMatch(/^wrote 512\/512 bytes at offset 0\n/);
    expect(second.stdout).toBe('second: 1\n');
    // (blk io prints qemu-io's lines for a file that does not open, a lock conflict in qemu-io's words.)
    expect(second.stderr).toMatch(
      /^qemu-io: can't open device lone\.img: Failed to get "write" lock\nIs another process using the image \[lone\.img\]\?\n/,
    );
  });

  it('without a C compiler the install still succeeds, says why, and blk runs without locks, warning once', () => {
    expect(loneProjectInstall).toMatch(/@blk\/cli: WARNING: could not build the native addon/);
    const blk = path.join(loneProject, 'node_modules', '.bin', 'blk');
    const create = run(blk, ['create', '-f', 'raw', 'nolock.img', '1M'], loneProject);
    expect(create.code).toBe(0);
    expect(create.stdout).toBe("Formatting 'nolock.img', fmt=raw size=1048576\n");
    expect(create.stderr.match(/BLK_NO_LOCK/g)).toHaveLength(1);
    expect(create.stderr).toContain('npm rebuild -g @blk/cli');
    const info = run(blk, ['info', '--output=json', 'nolock.img'], loneProject, { env: { BLK_LOCK: 'off' } });
    expect(info.stderr).toBe('');
    expect(JSON.parse(info.stdout)).toMatchObject({ format: 'raw', 'virtual-size': 1024 * KIB });
  });
});
