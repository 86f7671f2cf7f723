/**
 * blk under test: the library (through the @blk/images umbrella, loaded
 * lazily so that the raw-only checks do not depend on @blk/cow) and the
 * built CLI (packages/cli/dist/blk.js).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type RunOptions, type RunResult } from './peers.js';
import { SECTOR, type Write } from './files.js';

type Images = typeof import('@blk/images');
type Image = Awaited<ReturnType<Images['openImage']>>;

let images: Promise<Images> | undefined;

/** The @blk/images module (cow + raw registered). */
export function blk(): Promise<Images> {
  images ??= import('@blk/images');
  return images;
}

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(REPO, 'packages/cli/dist/blk.js');

function newestMtime(dir: string): number {
  let newest = 0;
  if (!existsSync(dir)) return 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

let cliChecked = false;

/**
 * Runs the built `blk` CLI. A missing build is an error (not a skip: the CLI
 * is part of blk, not a peer); a stale one is reported on stderr.
 */
export async function blkCli(args: string[], options: RunOptions = {}): Promise<RunResult> {
  if (!existsSync(CLI)) {
    throw new Error(
      `${CLI} does not exist: build the CLI first (pnpm -C packages/cli run build, or the root pnpm test)`,
    );
  }
  if (!cliChecked) {
    cliChecked = true;
    const built = statSync(CLI).mtimeMs;
    for (const pkg of ['cli', 'core', 'cow', 'raw', 'images']) {
      const src = newestMtime(join(REPO, 'packages', pkg, 'src'));
      const dist = pkg === 'cli' ? built : newestMtime(join(REPO, 'packages', pkg, 'dist'));
      if (src > dist)
        console.warn(
          `[interop] WARNING: packages/${pkg}/dist is older than its sources; the CLI tests may run stale code (run pnpm run build)`,
        );
    }
  }
  return run(process.execPath, [CLI, ...args], options);
}

/** Runs the CLI and throws with its output unless it exits 0. */
export async function blkCliOk(args: string[], options: RunOptions = {}): Promise<RunResult> {
  const r = await blkCli(args, options);
  if (r.code !== 0) {
    throw new Error(`blk ${args.join(' ')} exited ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

export type CowVariant = 'v3' | 'v2-uml' | 'v1' | 'v2-qemu-lp64' | 'v2-qemu-ilp32';

/** Creates a cow overlay of `variant` over the raw file `backing` with blk. */
export async function createOverlay(
  path: string,
  backing: string,
  variant: CowVariant,
  backingFormat?: string,
): Promise<void> {
  const { createImage } = await blk();
  await createImage(path, {
    format: 'cow',
    backing: backingFormat ? { path: backing, format: backingFormat } : backing,
    driverOptions: { variant },
  });
}

export interface OpenOpts {
  readOnly?: boolean;
  /** Name the top format (default: probe, as a user would). */
  format?: string;
  /** Backing formats: 'probe' for cow-over-cow chains. */
  backingFormat?: string;
  onMismatch?: 'refuse' | 'accept' | 'update';
}

export async function openBlk(path: string, o: OpenOpts = {}): Promise<Image> {
  const { openImage } = await blk();
  const backing: Record<string, unknown> = {};
  if (o.backingFormat) backing.format = o.backingFormat;
  if (o.onMismatch) backing.onMismatch = o.onMismatch;
  return openImage(path, {
    readOnly: o.readOnly ?? false,
    ...(o.format ? { format: o.format } : {}),
    backing,
  });
}

/** Writes through blk's library API and closes (flushes) the image. */
export async function blkWrite(path: string, writes: Write[], o: OpenOpts = {}): Promise<void> {
  const image = await openBlk(path, { ...o, readOnly: false });
  try {
    for (const w of writes) await image.write(w.offset, w.data);
  } finally {
    await image.close();
  }
}

/** The whole guest-visible content, read through blk's chain. */
export async function blkReadAll(path: string, o: OpenOpts = {}): Promise<Buffer> {
  const image = await openBlk(path, { ...o, readOnly: true });
  try {
    return Buffer.from(await image.read(0, image.size));
  } finally {
    await image.close();
  }
}

/** Sectors blk says the top layer itself holds (chain depth 0). */
export async function blkAllocatedSectors(path: string, o: OpenOpts = {}): Promise<Set<number>> {
  const image = await openBlk(path, { ...o, readOnly: true });
  const set = new Set<number>();
  try {
    for await (const run of image.map()) {
      if (run.depth !== 0) continue;
      if (run.start % SECTOR !== 0) throw new Error(`map run starts inside a sector: ${JSON.stringify(run)}`);
      const end = Math.ceil((run.start + run.length) / SECTOR);
      for (let s = run.start / SECTOR; s < end; s++) set.add(s);
    }
  } finally {
    await image.close();
  }
  return set;
}

export async function blkInfo(path: string, o: OpenOpts = {}): Promise<ReturnType<Image['info']>> {
  const image = await openBlk(path, { ...o, readOnly: true });
  try {
    return image.info();
  } finally {
    await image.close();
  }
}
