import fc from 'fast-check';
import {
  MemoryVfs,
  createImage,
  openImage,
  type ChainStatus,
  type Image,
  type OpenImageOptions,
} from '@blk/core/portable';
import { rangeArb, seedArb, type ByteRange } from './arbitraries.js';
import { assertBytesEqual, isAllZero } from './compare.js';
import { assertProperty, fcParameters, registryOf, type FormatSource, type ProofOptions } from './options.js';
import { pattern } from './pattern.js';

/** One request applied to a layer while the chain is built. */
export type LayerOp =
  | { kind: 'write'; range: ByteRange; seed: number }
  | { kind: 'zero'; range: ByteRange; mayUnmap: boolean }
  | { kind: 'discard'; range: ByteRange };

/** `host` (or `registry`): where every format named in `formats` is found (see `FormatSource`). */
export interface ChainMapOptions extends ProofOptions, FormatSource {
  /** Formats from the base up, 2 or more layers (e.g. `['raw', 'cow', 'cow']`). */
  formats: readonly string[];
  /** Virtual size of every layer (default 64 KiB + 3 sectors). */
  size?: number;
  /** Longest request per layer sequence (default `maxOps` 12). */
  maxOps?: number;
}

/**
 * Proves that `Image.map()` over a chain describes the chain: for random
 * write / write-zeroes / discard sequences applied to each layer of a 2-3
 * layer chain (base first, each layer before the next is stacked on it),
 * the runs of `map()` over the top
 * - tile the image: contiguous, non-empty, covering [0, size) exactly;
 * - differ from their neighbours (the map merges equal runs);
 * - carry the depth of the shallowest layer holding them: every layer above
 *   reports the run unallocated (`Image.status` of that layer alone) and the
 *   layer at `depth` allocated; a run with no depth is held by no layer;
 * - read (through the top) as the layer at `depth` holds them (read from that
 *   layer directly), and as zeros where the run is `zero` or has no depth;
 * - agree with themselves: `allocated` is `depth !== undefined`, no-depth runs
 *   are `zero` and not `data`.
 */
export async function checkChainMap(options: ChainMapOptions): Promise<void> {
  const registry = registryOf(options, 'checkChainMap');
  const formats = options.formats;
  if (formats.length < 2) throw new Error('checkChainMap: at least two layers are needed');
  const size = options.size ?? 64 * 1024 + 3 * 512;
  const constraints = {
    size,
    maxLength: Math.min(size, 16 * 1024),
    alignments: options.alignments ?? [512, 4096, 65536],
  };
  const opArb: fc.Arbitrary<LayerOp> = fc.oneof(
    {
      arbitrary: fc.record({ kind: fc.constant('write' as const), range: rangeArb(constraints), seed: seedArb() }),
      weight: 4,
    },
    {
      arbitrary: fc.record({
        kind: fc.constant('zero' as const),
        range: rangeArb(constraints),
        mayUnmap: fc.boolean(),
      }),
      weight: 2,
    },
    { arbitrary: fc.record({ kind: fc.constant('discard' as const), range: rangeArb(constraints) }), weight: 2 },
  );
  const layersArb = fc.tuple(...formats.map(() => fc.array(opArb, { maxLength: options.maxOps ?? 12 })));
  const name = [...formats].reverse().join('>');

  const property = fc.asyncProperty(layersArb, async (perLayer) => {
    const vfs = new MemoryVfs();
    const paths = formats.map((format, i) => `/chain/layer${i}.${format}`);
    const openAt = (top: number, readOnly: boolean): Promise<Image> => {
      const opts: OpenImageOptions = {
        registry,
        vfs,
        readOnly,
        format: formats[top]!,
        backing: { format: (_ref, depth) => formats[top - depth] ?? 'raw' },
      };
      return openImage(paths[top]!, opts);
    };
    for (const [i, format] of formats.entries()) {
      const below = i === 0 ? undefined : formats[i - 1]!;
      await createImage(paths[i]!, {
        registry,
        vfs,
        format,
        size,
        ...(below === undefined
          ? {}
          : { backing: below === 'raw' ? paths[i - 1]! : { path: paths[i - 1]!, format: below } }),
      });
      const image = await openAt(i, false);
      try {
        for (const op of perLayer[i]!) await apply(image, op);
      } finally {
        await image.close();
      }
    }
    const top = await openAt(formats.length - 1, true);
    try {
      await checkMapAgainstLayers(top);
    } finally {
      await top.close();
    }
  });
  await assertProperty(`checkChainMap(${name})`, property, fcParameters(options));
}

async function apply(image: Image, op: LayerOp): Promise<void> {
  const { offset, length } = op.range;
  if (op.kind === 'write') await image.write(offset, pattern(length, op.seed));
  else if (op.kind === 'zero') await image.writeZeroes(offset, length, { mayUnmap: op.mayUnmap });
  else if (image.capabilities.discard !== 'none') {
    // A format that cannot discard is skipped (Image.discard refuses: capabilities.discard 'none').
    // Whole discard units only (discard is advisory: the core clips unaligned edges).
    const ss = image.capabilities.limits.discardAlignment;
    const start = Math.ceil(offset / ss) * ss;
    const end = offset + length === image.size ? image.size : Math.floor((offset + length) / ss) * ss;
    if (start < end) await image.discard(start, end - start);
  }
}

function fail(image: Image, message: string): never {
  throw new Error(`${image.path}: ${message}`);
}

/** The checks of `checkChainMap` on an open chain (exported for drivers with their own setups). */
export async function checkMapAgainstLayers(top: Image): Promise<void> {
  const layers = top.chain();
  let pos = 0;
  let previous: (ChainStatus & { start: number }) | undefined;
  for await (const run of top.map()) {
    const at = `map() run ${JSON.stringify(run)}`;
    if (run.start !== pos) fail(top, `${at} should start at ${pos}`);
    if (!(Number.isSafeInteger(run.length) && run.length > 0)) fail(top, `${at}: empty run`);
    if (run.allocated !== (run.depth !== undefined)) fail(top, `${at}: allocated must be depth !== undefined`);
    if (run.depth === undefined && (!run.zero || run.data))
      fail(top, `${at}: a run no layer holds is zero and not data`);
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
      fail(top, `${at} should have been merged with ${JSON.stringify(previous)}`);
    }
    const end = run.start + run.length;
    // Every layer above `depth` lets the whole run fall through; the layer at `depth` holds it all.
    const holder = run.depth ?? layers.length;
    for (let d = 0; d <= Math.min(holder, layers.length - 1); d++) {
      const layer = layers[d]!;
      const stop = Math.min(end, layer.size);
      for (let p = run.start; p < stop; ) {
        const st = await layer.status(p, stop - p);
        if (st.allocated !== (d === holder)) {
          fail(
            top,
            `${at}: layer ${d} (${layer.path}) reports [${p}, +${st.length}) ${st.allocated ? 'allocated' : 'unallocated'}`,
          );
        }
        p += st.length;
      }
    }
    const got = await top.read(run.start, run.length);
    if ((run.depth === undefined || run.zero) && !isAllZero(got)) fail(top, `${at}: reported as zeros, reads data`);
    if (run.depth !== undefined) {
      const own = await layers[run.depth]!.read(run.start, run.length);
      assertBytesEqual(got, own, `${at}: read through the top vs layer ${run.depth}`, run.start);
    }
    previous = run;
    pos = end;
  }
  if (pos !== top.size) fail(top, `map() covered [0, ${pos}) of ${top.size} bytes`);
}
