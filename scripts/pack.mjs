#!/usr/bin/env node
/**
 * Packs every public workspace package with `pnpm pack` (which turns
 * `workspace:*` into the packages' versions) into one directory, to install
 * with plain npm anywhere:
 *
 *   node scripts/pack.mjs [DIR]            default DIR: .tmp/packages
 *   node scripts/pack.mjs --third-party DIR
 *       also packs the third-party packages they depend on (commander,
 *       fast-check, ...) from this checkout's node_modules, so that
 *       `npm install --offline DIR/*.tgz` needs no registry at all
 *
 * Then: npm install DIR/*.tgz (a project: all tarballs in one npm command,
 * since the @blk packages are not in the npm registry and npm finds each
 * one's @blk dependencies among them), or npm install -g DIR/blk-cli-*.tgz
 * alone (the blk command): the bin is self-contained (packages/cli/
 * tsup.bin.config.ts bundles @blk/* and commander into it), its library
 * entry's @blk packages are optional peer dependencies, and the CLI tarball
 * carries @blk/native's C sources and install script (added here, after
 * `pnpm pack`) to build the addon in its own build/Release at install.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const thirdParty = args.includes('--third-party');
const out = path.resolve(args.find((a) => !a.startsWith('--')) ?? path.join(root, '.tmp', 'packages'));

function run(cmd, cmdArgs, cwd) {
  const r = spawnSync(cmd, cmdArgs, { cwd, encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `${r.error.message}\n` : ''}`);
    throw new Error(`pack: \`${cmd} ${cmdArgs.join(' ')}\` failed in ${cwd}`);
  }
  return r.stdout;
}

/** The tarball npm/pnpm just wrote: the last line of their output that names a .tgz. */
function tarballFrom(stdout) {
  const line = stdout
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.trim().endsWith('.tgz'));
  if (!line) throw new Error(`pack: no tarball named in:\n${stdout}`);
  return path.resolve(out, path.basename(line.trim()));
}

/** The manifest inside a tarball (npm and pnpm put the package under package/). */
function manifestOf(tarball) {
  return JSON.parse(run('tar', ['-xzOf', tarball, 'package/package.json'], out));
}

/** Where `name` resolves from `dir`, as Node would find it (symlinks followed). */
function packageDir(name, dir) {
  for (let d = dir; ; d = path.dirname(d)) {
    const candidate = path.join(d, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return fs.realpathSync(candidate);
    if (path.dirname(d) === d) throw new Error(`pack: cannot find ${name} from ${dir}`);
  }
}

/**
 * Adds @blk/native's addon sources and install script (the files its manifest
 * ships, but dist/ and README.md) to the @blk/cli tarball, with an install
 * script to build them: the bundled bin loads the addon from the CLI
 * package's own build/Release. Rewrites the tarball in place.
 */
function vendorAddon(cliTarball, nativeDir) {
  const nativeManifest = JSON.parse(fs.readFileSync(path.join(nativeDir, 'package.json'), 'utf8'));
  const files = nativeManifest.files.filter((f) => f !== 'dist' && f !== 'README.md');
  const stage = fs.mkdtempSync(path.join(out, '.stage-'));
  try {
    run('tar', ['-xzf', cliTarball, '-C', stage], out);
    const pkg = path.join(stage, 'package');
    for (const f of files) fs.cpSync(path.join(nativeDir, f), path.join(pkg, f), { recursive: true });
    const manifest = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8'));
    if (manifest.scripts?.install)
      throw new Error('pack: @blk/cli has an install script of its own: vendorAddon would replace it');
    manifest.files = [...manifest.files, ...files];
    manifest.scripts = { ...manifest.scripts, install: nativeManifest.scripts.install };
    fs.writeFileSync(path.join(pkg, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    run('tar', ['-czf', cliTarball, '-C', stage, 'package'], out);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

fs.mkdirSync(out, { recursive: true });
const packed = [];
const workspace = new Set();
for (const entry of fs.readdirSync(path.join(root, 'packages')).sort()) {
  const dir = path.join(root, 'packages', entry);
  if (!fs.existsSync(path.join(dir, 'package.json'))) continue;
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  if (manifest.private) continue; // test-only packages (@blk/faults) are not shipped
  if (!fs.existsSync(path.join(dir, 'dist')))
    throw new Error(`pack: ${manifest.name} is not built: run pnpm run build first`);
  workspace.add(manifest.name);
  const tarball = tarballFrom(run('pnpm', ['pack', '--pack-destination', out], dir));
  const text = JSON.stringify(manifestOf(tarball));
  if (text.includes('workspace:'))
    throw new Error(`pack: ${path.basename(tarball)} still names a workspace: dependency`);
  if (manifest.name === '@blk/cli') vendorAddon(tarball, path.join(root, 'packages', 'native'));
  packed.push({ tarball, dir, manifest });
}

if (thirdParty) {
  // Every third-party runtime dependency, recursively, from where Node resolves it here.
  const seen = new Set();
  const queue = packed.map((p) => ({ deps: p.manifest.dependencies ?? {}, from: p.dir }));
  while (queue.length > 0) {
    const { deps, from } = queue.shift();
    for (const name of Object.keys(deps)) {
      if (workspace.has(name)) continue;
      const dir = packageDir(name, from);
      if (seen.has(dir)) continue;
      seen.add(dir);
      // The installed directory holds exactly the files of the published tarball: tar them up again
      // (npm pack would run the package's own scripts and check its devEngines).
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      const tarball = path.join(out, `${manifest.name.replace(/^@/, '').replace('/', '-')}-${manifest.version}.tgz`);
      // Its build scripts go: npm treats a tarball with a `prepare` script as source to rebuild
      // (aws4fetch's) and drops files of the built package when it may not run it.
      const stage = fs.mkdtempSync(path.join(out, '.stage-'));
      fs.cpSync(dir, stage, {
        recursive: true,
        filter: (src) => path.relative(dir, src).split(path.sep)[0] !== 'node_modules',
      });
      if (manifest.scripts) {
        for (const s of ['prepare', 'prepack', 'postpack', 'prepublish', 'prepublishOnly']) delete manifest.scripts[s];
        fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      }
      run('tar', ['-czf', tarball, '--transform', 's,^\\.,package,', '-C', stage, '.'], out);
      fs.rmSync(stage, { recursive: true, force: true });
      packed.push({ tarball, dir, manifest });
      queue.push({ deps: manifest.dependencies ?? {}, from: dir });
    }
  }
}

for (const p of packed) console.log(p.tarball);
