/**
 * packages/core/CONTRACT.md, the contract's reference page, cannot drift
 * from the code: its examples are regions of fixtures/contract-doc.ts, quoted
 * verbatim, which type-check as portable code (no Node types) and run here;
 * and every member of every contract type, and every error kind, is named in
 * the doc (a member added to the contract without a line in the reference
 * fails this test).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { MemoryFile, MemoryStorage, MemoryVfs, createHost, isBlockError } from '@blk/core';
import { CountingStorage, FilterVfs, NoWriteStorage, demoDriver } from './fixtures/contract-doc.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CORE = path.resolve(HERE, '..');
const FIXTURE = path.join(HERE, 'fixtures', 'contract-doc.ts');
const DOC = fs.readFileSync(path.join(CORE, 'CONTRACT.md'), 'utf8');

function region(name: string): string {
  const text = fs.readFileSync(FIXTURE, 'utf8');
  const m = new RegExp(`// #region ${name}\\n([\\s\\S]*?)// #endregion ${name}\\n`).exec(text);
  if (!m) throw new Error(`no region ${name} in ${FIXTURE}`);
  return m[1]!;
}

/** The text of the doc's sections whose heading names `name` in backticks (up to the next heading of any level). */
function sectionsNaming(name: string): string {
  const out: string[] = [];
  let take = false;
  for (const line of DOC.split('\n')) {
    if (line.startsWith('#')) take = line.includes(`\`${name}\``);
    if (take) out.push(line);
  }
  return out.join('\n');
}

/** The types and the members of the contract, read from core's portable entry with the compiler. */
function contract(): { checker: ts.TypeChecker; exports: Map<string, ts.Symbol> } {
  const program = ts.createProgram([path.join(CORE, 'src', 'portable.ts')], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(path.join(CORE, 'src', 'portable.ts'))!;
  const module = checker.getSymbolAtLocation(source)!;
  const exports = new Map(checker.getExportsOfModule(module).map((s) => [s.name, s] as const));
  return { checker, exports };
}

describe('CONTRACT.md', () => {
  it('quotes the driver skeleton and the filter examples verbatim from the fixture', () => {
    for (const name of ['driver', 'filter']) {
      expect(DOC.includes(`\`\`\`ts\n${region(name)}\`\`\``), `region ${name} quoted as a ts block`).toBe(true);
    }
  });

  it('the fixture type-checks as portable code (strict, no Node types, ES2022 + WebWorker)', () => {
    const program = ts.createProgram([FIXTURE], {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2022.d.ts', 'lib.webworker.d.ts'],
      types: [],
      strict: true,
      noUncheckedIndexedAccess: true,
      noImplicitOverride: true,
      verbatimModuleSyntax: true,
      isolatedModules: true,
      skipLibCheck: true,
      noEmit: true,
      paths: { '@blk/core/portable': [path.join(CORE, 'src', 'portable.ts')] },
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(problems).toEqual([]);
  }, 120_000);

  it('names every member of every contract type in that type’s section, and every error kind', () => {
    const { checker, exports } = contract();
    const types = [
      'BlockDriver',
      'ProbeHint',
      'ProbedBytes',
      'DriverOpenOptions',
      'OpenFileOptions',
      'DriverImage',
      'BlockStatus',
      'ChainStatus',
      'DriverCapabilities',
      'ImageCapabilities',
      'ImageLimits',
      'WriteFlags',
      'WriteZeroesFlags',
      'Storage',
      'StorageCapabilities',
      'StorageLimits',
      'StorageExtent',
      'Vfs',
      'VfsOpenOptions',
      'FileStat',
      'MetadataCacheOptions',
      'BackingSpec',
      'BackingFacts',
      'BackingReference',
      'BackingCheck',
      'CommitMarker',
      'OptionSpec',
      'DriverCreateOptions',
      'MeasureInput',
      'MeasureResult',
      'ResizeOptions',
      'RepairRequest',
      'DriverCheckResult',
      'HostOptions',
      'Host',
      'OpenImageOptions',
      'CreateImageOptions',
      'BackingPolicy',
      'Errno',
    ];
    const missing: string[] = [];
    for (const name of types) {
      const symbol = exports.get(name);
      expect(symbol, `${name} is exported by @blk/core/portable`).toBeDefined();
      const section = sectionsNaming(name);
      if (section === '') {
        missing.push(`${name}: no section`);
        continue;
      }
      const type = checker.getDeclaredTypeOfSymbol(symbol!);
      for (const member of checker.getPropertiesOfType(type)) {
        if (!new RegExp(`\`${member.name}\\b`).test(section)) missing.push(`${name}.${member.name}`);
      }
    }
    const kinds = checker.getDeclaredTypeOfSymbol(exports.get('BlockErrorKind')!);
    for (const literal of (kinds as ts.UnionType).types) {
      const kind = (literal as ts.StringLiteralType).value;
      if (!DOC.includes(`\`${kind}\``)) missing.push(`BlockErrorKind ${kind}`);
    }
    expect(missing).toEqual([]);
  }, 120_000);
});

describe('the driver skeleton, run', () => {
  it('creates, probes, opens and does byte-granular I/O; the core derives the capabilities the doc lists', async () => {
    const host = createHost({ drivers: [demoDriver], vfs: new MemoryVfs() });
    await host.createImage('/d.demo', { format: 'demo', size: 10_000 });
    const image = await host.openImage('/d.demo'); // probed
    expect(image.format).toBe('demo');
    expect(image.size).toBe(10_000);
    expect(image.capabilities).toEqual({
      write: true,
      flush: true,
      fua: 'emulated',
      writeZeroes: 'emulated',
      discard: 'none',
      blockStatus: false,
      multiConn: true,
      limits: {
        requestAlignment: 512,
        preferredTransfer: 4096,
        maxTransfer: 32 * 1024 * 1024,
        discardAlignment: 512,
        zeroAlignment: 512,
      },
    });
    await image.write(1000, new Uint8Array([1, 2, 3]), { fua: true }); // read-modify-write, then a flush
    expect([...(await image.read(999, 5))]).toEqual([0, 1, 2, 3, 0]);
    await image.writeZeroes(0, 10_000); // a bounded buffer of zeros
    expect((await image.read(0, 10_000)).every((b) => b === 0)).toBe(true);
    await expect(image.writeZeroes(0, 512, { noFallback: true })).rejects.toMatchObject({ kind: 'not-supported' });
    await expect(image.discard(0, 512)).rejects.toMatchObject({ kind: 'not-supported' });
    expect(await image.status(0, 10_000)).toEqual({ allocated: true, length: 10_000, hostOffset: 512 });
    await image.close();
    await expect(
      host.createImage('/p.demo', { format: 'demo', size: 512, preallocation: 'full' }),
    ).rejects.toMatchObject({ kind: 'not-supported' });
  });

  it('reads synchronously over a storage with syncRead (the fast path), and through a promise otherwise', async () => {
    const host = createHost({ drivers: [demoDriver], vfs: new MemoryVfs() });
    await host.createImage('/d.demo', { format: 'demo', size: 4096 });
    const image = await host.openImage('/d.demo', { format: 'demo', readOnly: true });
    const into = new Uint8Array(512);
    let settled = false;
    const done = image.readInto(512, into).then(() => {
      settled = true;
    });
    await Promise.resolve(); // one turn: an already-resolved promise settles, a real wait would not
    expect(settled).toBe(true);
    await done;
    await image.close();
  });
});

describe('the filter examples, run', () => {
  it('CountingStorage counts reads on both paths and keeps every capability of the storage below', async () => {
    const below = new MemoryStorage(new MemoryFile(new Uint8Array(4096).fill(7)), '/f', false);
    const counting = new CountingStorage(below);
    expect(counting.capabilities).toEqual(below.capabilities);
    await counting.read(0, new Uint8Array(16));
    counting.readSync(0, new Uint8Array(16));
    expect(counting.reads).toBe(2);
    expect(await counting.extentAt(0, 4096)).toEqual(await below.extentAt(0, 4096));
  });

  it('a host over a FilterVfs of NoWriteStorage refuses writable opens up front and reads as before', async () => {
    const vfs = new MemoryVfs();
    await createHost({ drivers: [demoDriver], vfs }).createImage('/d.demo', { format: 'demo', size: 4096 });
    const host = createHost({ drivers: [demoDriver], vfs: new FilterVfs(vfs, (s) => new NoWriteStorage(s)) });
    const err = await host.openImage('/d.demo').catch((e: unknown) => e);
    expect(isBlockError(err, 'read-only')).toBe(true);
    const image = await host.openImage('/d.demo', { readOnly: true });
    expect(image.capabilities.write).toBe(false);
    expect((await image.read(0, 4096)).every((b) => b === 0)).toBe(true);
    await image.close();
    const storage = new NoWriteStorage(new MemoryStorage(new MemoryFile(), '/x', false));
    expect(storage.capabilities).toMatchObject({ write: false, flush: false, allocate: false, zeroRange: false });
    await expect(storage.write(0)).rejects.toMatchObject({ kind: 'read-only', code: 'EROFS' });
  });
});
