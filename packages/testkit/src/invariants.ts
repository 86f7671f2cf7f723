import type { ChainStatus, Image } from '@blk/core/portable';
import { anySet, assertBytesEqual, isAllZero } from './compare.js';

/** What the proofs know about the guest-visible image. */
export interface ImageModel {
  /** Guest-visible content, byte for byte. */
  content: Uint8Array;
  /** 1 for every byte written (to the top layer) since the run started. */
  written: Uint8Array;
}

export interface InvariantOptions {
  /** See `ProofOptions.writesAllocate`. */
  writesAllocate: boolean;
}

function fail(image: Image, message: string): never {
  throw new Error(`${image.path}: ${message}`);
}

/**
 * Checks one run of a chain status against the model:
 * - `0 < length <= requested` (0 only for an empty request);
 * - depth is undefined or in [0, chain length); `allocated` says which, and a run
 *   no layer holds is not `data`;
 * - a run no layer holds (depth undefined), or one flagged `zero`, reads as zeros;
 * - a run held below the top contains no byte written since the run started;
 * - `isAllocated` agrees: allocated in this layer exactly when depth is 0.
 */
export async function checkStatusAt(
  image: Image,
  model: ImageModel,
  offset: number,
  length: number,
  options: InvariantOptions,
): Promise<void> {
  const layers = image.chain().length;
  const own = await image.isAllocated(offset, length);
  if (!(own.length > 0 && own.length <= length)) {
    fail(image, `isAllocated(${offset}, ${length}) returned length ${own.length}`);
  }
  const st = await image.chainStatus(offset, length);
  checkRun(image, model, offset, st, length, layers, options);
  if ((st.depth === 0) !== own.allocated) {
    fail(
      image,
      `isAllocated(${offset}, ${length}) says allocated=${own.allocated} but chainStatus says depth ${st.depth}`,
    );
  }
  if (own.allocated && own.length !== st.length) {
    fail(image, `isAllocated(${offset}, ${length}) length ${own.length} differs from chainStatus length ${st.length}`);
  }
}

function checkRun(
  image: Image,
  model: ImageModel,
  offset: number,
  st: ChainStatus,
  requested: number,
  layers: number,
  options: InvariantOptions,
): void {
  const at = `chainStatus(${offset}, ${requested}) = ${JSON.stringify(st)}`;
  if (!(Number.isSafeInteger(st.length) && st.length > 0 && st.length <= requested)) {
    fail(image, `${at}: length must be in (0, ${requested}]`);
  }
  if (st.depth !== undefined && !(Number.isInteger(st.depth) && st.depth >= 0 && st.depth < layers)) {
    fail(image, `${at}: depth must be undefined or in [0, ${layers})`);
  }
  if (st.allocated !== (st.depth !== undefined))
    fail(image, `${at}: allocated must say whether some layer holds the run (depth)`);
  if (st.depth === undefined && st.data) fail(image, `${at}: a run no layer holds is not data`);
  const end = offset + st.length;
  if ((st.depth === undefined || st.zero) && !isAllZero(model.content.subarray(offset, end))) {
    fail(image, `${at}: the run is reported as reading zeros, but the model holds data in it`);
  }
  if (options.writesAllocate && st.depth !== 0 && anySet(model.written, offset, end)) {
    fail(image, `${at}: the run holds bytes written to the top image, but is reported at depth ${st.depth}`);
  }
}

/**
 * Walks `image.map()` over the whole image: runs are contiguous, non-empty,
 * cover [0, size) exactly, adjacent runs differ (the map merges equal ones),
 * and each run satisfies the `checkStatusAt` rules.
 */
export async function checkMap(image: Image, model: ImageModel, options: InvariantOptions): Promise<void> {
  const layers = image.chain().length;
  let pos = 0;
  let previous: (ChainStatus & { start: number }) | undefined;
  for await (const run of image.map()) {
    if (run.start !== pos) fail(image, `map(): run ${JSON.stringify(run)} should start at ${pos}`);
    checkRun(image, model, run.start, run, image.size - run.start, layers, options);
    if (
      previous
      && previous.depth === run.depth
      && previous.zero === run.zero
      && previous.data === run.data
      && previous.path === run.path
      && (previous.hostOffset === undefined
        ? run.hostOffset === undefined
        : run.hostOffset === previous.hostOffset + previous.length)
    ) {
      fail(image, `map(): runs ${JSON.stringify(previous)} and ${JSON.stringify(run)} should have been merged`);
    }
    previous = run;
    pos += run.length;
  }
  if (pos !== image.size) fail(image, `map() covered [0, ${pos}) of ${image.size} bytes`);
}

/** Reads the whole image (in 1 MiB pieces) and compares it with the model. */
export async function checkContent(image: Image, model: ImageModel, what: string): Promise<void> {
  const piece = 1 << 20;
  for (let offset = 0; offset < image.size; offset += piece) {
    const length = Math.min(piece, image.size - offset);
    const got = await image.read(offset, length);
    assertBytesEqual(got, model.content.subarray(offset, offset + length), `${image.path}: ${what}`, offset);
  }
}

/**
 * Checks `image.capabilities` for what any image must satisfy (nbdkit's rules):
 * frozen; no write zeroes, discard or FUA without write, nor on a read-only
 * open; emulated FUA needs a flush; multiConn needs a flush; limits are
 * positive integers, each a multiple of the request alignment.
 */
export function checkCapabilities(image: Image): void {
  const caps = image.capabilities;
  if (!Object.isFrozen(caps) || !Object.isFrozen(caps.limits)) fail(image, 'capabilities must be frozen');
  if (image.readOnly && caps.write) fail(image, 'a read-only open reports write: true');
  if (!caps.write && (caps.fua !== 'none' || caps.writeZeroes !== 'none' || caps.discard !== 'none')) {
    fail(image, `no write, but fua ${caps.fua}, writeZeroes ${caps.writeZeroes}, discard ${caps.discard}`);
  }
  if (caps.fua === 'emulated' && !caps.flush) fail(image, 'FUA emulated without flush');
  if (caps.multiConn && !caps.flush) fail(image, 'multiConn without flush');
  const { requestAlignment, ...rest } = caps.limits;
  if (!(Number.isSafeInteger(requestAlignment) && requestAlignment >= 1))
    fail(image, `requestAlignment ${requestAlignment}`);
  for (const [name, value] of Object.entries(rest)) {
    if (value === undefined) continue;
    if (!(Number.isSafeInteger(value) && value >= 1 && value % requestAlignment === 0)) {
      fail(image, `limits.${name} ${value} is not a positive multiple of the request alignment ${requestAlignment}`);
    }
  }
  if (image.sectorSize !== requestAlignment)
    fail(image, `sectorSize ${image.sectorSize} differs from requestAlignment ${requestAlignment}`);
}
