/**
 * The addon loads wherever a user may run blk's library from, not only from
 * a script file: `node -e` (CommonJS and ESM), a script piped into node, and
 * the interactive REPL. Node sets globalThis.__filename to '[eval]' or
 * '[stdin]' there, which once misled the loader: images opened without OS
 * locks and raw holes went unreported. Each case imports the BUILT packages
 * (as an application would) and checks that a second writer is refused
 * (`locked`) and that a raw file's hole is mapped as zeros.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BUILT = path.join(REPO, 'packages', 'native', 'dist', 'index.js');
const KIB = 1024;

/**
 * One line (the REPL reads line by line): open the image, try a second
 * writable open, map it, print one RESULT line. `load` imports @blk/images.
 * The REPL gets it behind a top-level await, as it exits at the end of its
 * input without waiting for pending work.
 */
const probe = (load: string, image: string) =>
  [
    `${load}.then(async (blk) => {`,
    `const a = await blk.openImage(${JSON.stringify(image)}, { format: 'raw' });`,
    `let second = 'opened';`,
    `try { const b = await blk.openImage(${JSON.stringify(image)}, { format: 'raw' }); await b.close(); } catch (e) { second = e.kind; }`,
    `const runs = []; for await (const r of a.map()) runs.push([r.start, r.length, r.zero]);`,
    `await a.close();`,
    `console.log('RESULT ' + JSON.stringify({ second, runs }));`,
    `}).catch((e) => console.log('RESULT ' + JSON.stringify({ error: String(e) })));`,
  ].join(' ');

const esm = "import('@blk/images')";
const cjs = "Promise.resolve(require('@blk/images'))";

let dir: string;
let image: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-native-eval-'));
  image = path.join(dir, 'disk.raw');
  const fd = fs.openSync(image, 'w');
  fs.ftruncateSync(fd, 1024 * KIB);
  fs.writeSync(fd, Buffer.alloc(64 * KIB, 0xab), 0, 64 * KIB, 512 * KIB);
  fs.closeSync(fd);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(args: string[], input = ''): { result: unknown; stderr: string } {
  const env = { ...process.env };
  delete env.BLK_NATIVE_ADDON;
  delete env.BLK_LOCK;
  delete env.BLK_NATIVE_IO;
  delete env.NODE_OPTIONS; // vitest's loader hooks must not reach the child
  const r = spawnSync(process.execPath, args, { cwd: REPO, input, encoding: 'utf8', env, timeout: 60_000 });
  if (r.error) throw r.error;
  const line = r.stdout.split('\n').find((l) => l.includes('RESULT '));
  if (!line) throw new Error(`no result (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return { result: JSON.parse(line.slice(line.indexOf('RESULT ') + 7)), stderr: r.stderr };
}

const expected = {
  second: 'locked',
  runs: [
    [0, 512 * KIB, true],
    [512 * KIB, 64 * KIB, false],
    [576 * KIB, 448 * KIB, true],
  ],
};

describe('@blk/native loads outside script files', () => {
  beforeAll(() => {
    if (!fs.existsSync(BUILT)) throw new Error(`${BUILT} is missing: run pnpm run build first`);
  });

  const cases: Array<[string, () => { result: unknown; stderr: string }]> = [
    ['node -e, import()', () => run(['-e', probe(esm, image)])],
    ['node -e, require()', () => run(['-e', probe(cjs, image)])],
    ['node --input-type=module -e', () => run(['--input-type=module', '-e', probe(esm, image)])],
    ['a script piped into node, import()', () => run([], probe(esm, image))],
    ['a script piped into node, require()', () => run([], probe(cjs, image))],
    ['the REPL (node -i fed through stdin), import()', () => run(['-i'], `await ${probe(esm, image)}\n`)],
    ['the REPL (node -i fed through stdin), require()', () => run(['-i'], `await ${probe(cjs, image)}\n`)],
  ];
  for (const [name, go] of cases) {
    it(`${name}: a second writer is refused and the raw file's holes are mapped`, () => {
      const { result, stderr } = go();
      expect(result).toEqual(expected);
      expect(stderr).not.toMatch(/BLK_NO_LOCK|WITHOUT OS advisory locks/);
    });
  }
});

describe('the BLK_NO_LOCK warning advises what can help', () => {
  const warningWith = (addon: string) => {
    const env = { ...process.env };
    delete env.BLK_NATIVE_ADDON;
    delete env.BLK_LOCK;
    delete env.NODE_OPTIONS;
    // The addon file is an option of the library (the blk command passes BLK_NATIVE_ADDON as it).
    const script = `import(${JSON.stringify(BUILT)}).then((m) => m.lockFd(0, 'shared', 'stdin', { addon: ${JSON.stringify(addon)} }))`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', env, timeout: 60_000 });
    return r.stderr;
  };

  it('a missing addon file: rebuild it', () => {
    const stderr = warningWith(path.join(dir, 'nowhere', 'blk_native.node'));
    expect(stderr).toMatch(/WITHOUT OS advisory locks \(the @blk\/native addon did not load: Cannot find module/);
    expect(stderr).toMatch(/npm rebuild @blk\/native/);
  });

  it('a failure a rebuild cannot fix: no rebuild advice, a bug report instead', () => {
    const broken = path.join(dir, 'broken-loader.cjs');
    fs.writeFileSync(broken, "throw new TypeError('not a build problem');\n");
    const stderr = warningWith(broken);
    expect(stderr).toMatch(/WITHOUT OS advisory locks \(the @blk\/native addon did not load: not a build problem\)/);
    expect(stderr).not.toMatch(/npm rebuild/);
    expect(stderr).toMatch(/Rebuilding will not help/);
  });
});
