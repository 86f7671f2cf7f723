import {
  type MemoryVfs,
  createImage,
  openImage,
  type Image,
  type OpenImageOptions,
  type Vfs,
} from '@blk/core/portable';
import { registryOf, type FormatSource } from './options.js';
import { pattern, prng } from './pattern.js';

/**
 * What the proofs run against: a recipe for a fresh image (or backing chain)
 * per run, plus the guest-visible content that image starts with.
 *
 * `size` is known before `setup` because fast-check draws offsets and lengths
 * before a run starts.
 */
export interface TestSubject {
  /** Shown in failure messages. */
  readonly name: string;
  /** Virtual size in bytes of the image under test (the top of the chain). */
  readonly size: number;
  /** Builds a fresh image (or chain) for one run, in `context.vfs`. */
  setup(context: SubjectContext): Promise<SubjectInstance>;
}

export interface SubjectContext {
  /** A new, empty in-memory file space for this run. Create every file here. */
  vfs: MemoryVfs;
  /** A per-run 32-bit seed (drawn by fast-check, so a failure replays) for any content the setup invents. */
  seed: number;
}

export interface OpenContext {
  /**
   * The file space to open through: the run's `MemoryVfs`, or a wrapper
   * around it (`ScheduledVfs`) that delays and reorders every storage
   * operation. Always open through this one, or the races are not real.
   */
  vfs: Vfs;
  /** Open read-only (the proofs verify a read-only open at the end of a run). */
  readOnly: boolean;
}

export interface SubjectInstance {
  /** Guest-visible content at start (through the whole chain); its length must equal `size`. */
  initial: Uint8Array;
  /** Opens the image under test. Called again after every close. */
  open(context: OpenContext): Promise<Image>;
  /** Called once at the end of a run, after the image was closed. */
  dispose?(): Promise<void>;
}

/** One layer of a chain built by `chainSubject`. */
export interface ChainLayer {
  /** Registered format name. */
  format: string;
  /** Virtual size; default the size of the layer below. Required for the base layer. */
  size?: number;
  /** `driverOptions` for `createImage` (e.g. `{ variant: 'v2-qemu-lp64' }` for cow). */
  driverOptions?: Record<string, unknown>;
  /**
   * `driverOptions` for `openImage` when this layer is the top of what is
   * opened (the image under test, or this layer while it is filled). The core
   * passes none to backing files.
   */
  openDriverOptions?: Record<string, unknown>;
  /**
   * What this layer holds before the next layer is stacked on it (or, for
   * the top, before the run starts):
   * - `'random'`: every byte written with a random pattern;
   * - `'none'`: nothing written (an overlay then reads through);
   * - a number: that many random extents (random offsets, lengths and bytes).
   * Default: `'random'` for the base, 4 extents for middle layers, `'none'` for the top.
   */
  fill?: 'random' | 'none' | number;
}

/** `host` (or `registry`): where every format named in `layers` is found (see `FormatSource`). */
export interface ChainSubjectOptions extends FormatSource {
  /** Default: the formats from the top down, e.g. `cow>cow>raw`. */
  name?: string;
  /** Layers from the base (index 0) up; the last is the image under test. */
  layers: readonly ChainLayer[];
  /**
   * Options for opening the top image. By default each backing layer opens
   * with the format named in `layers` (through a `backing.format` function)
   * and the top with its own format.
   */
  openOptions?: Partial<Omit<OpenImageOptions, 'registry' | 'vfs' | 'readOnly'>>;
  /** Directory the layer files are created in (default `/images`). */
  dir?: string;
  /** Longest random extent written by a numeric `fill` (default 3 * 4096 + 17). */
  maxFillExtent?: number;
}

/**
 * A subject made of a base image and zero or more overlays, each created with
 * `createImage` (so every overlay records the layer below as its backing
 * file), filled as `layers[i].fill` says, and opened top-down with each layer's
 * format. `initial` is computed independently of the code under test: the
 * fill patterns applied in order, each layer's view cut or zero-extended to
 * its size (reads past a shorter backing file read zeros).
 *
 * A one-layer chain is a single image: `chainSubject({ host, layers: [{ format: 'raw', size: 65536 }] })`.
 */
export function chainSubject(options: ChainSubjectOptions): TestSubject {
  const registry = registryOf(options, 'chainSubject');
  const layers = options.layers;
  if (layers.length === 0) throw new Error('chainSubject: at least one layer is needed');
  const sizes: number[] = [];
  for (const [i, layer] of layers.entries()) {
    const size = layer.size ?? sizes[i - 1];
    if (size === undefined) throw new Error('chainSubject: the base layer needs a size');
    if (!Number.isSafeInteger(size) || size <= 0) throw new Error(`chainSubject: layer ${i} has size ${size}`);
    sizes.push(size);
  }
  const dir = (options.dir ?? '/images').replace(/\/+$/, '');
  const paths = layers.map((layer, i) => `${dir}/layer${i}.${layer.format}`);
  const name =
    options.name
    ?? [...layers]
      .reverse()
      .map((l) => l.format)
      .join('>');
  const maxExtent = options.maxFillExtent ?? 3 * 4096 + 17;

  /** Open options for layer `top` (its backing layers open with their listed formats). */
  const openOptionsFor = (top: number, vfs: Vfs, readOnly: boolean): OpenImageOptions => {
    const opts: OpenImageOptions = {
      registry,
      vfs,
      readOnly,
      format: layers[top]!.format,
      backing: { format: (_ref, depth) => layers[top - depth]?.format ?? 'raw' },
    };
    const driverOptions = layers[top]!.openDriverOptions;
    if (driverOptions) opts.driverOptions = driverOptions;
    return opts;
  };

  return {
    name,
    size: sizes[sizes.length - 1]!,
    async setup({ vfs, seed }) {
      const random = prng(seed ^ 0x5eed);
      let content = new Uint8Array(0);
      for (const [i, layer] of layers.entries()) {
        const size = sizes[i]!;
        if (i === 0) {
          await createImage(paths[0]!, {
            registry,
            vfs,
            format: layer.format,
            size,
            ...(layer.driverOptions ? { driverOptions: layer.driverOptions } : {}),
          });
        } else {
          const below = layers[i - 1]!.format;
          await createImage(paths[i]!, {
            registry,
            vfs,
            format: layer.format,
            size,
            backing: below === 'raw' ? paths[i - 1]! : { path: paths[i - 1]!, format: below },
            ...(layer.driverOptions ? { driverOptions: layer.driverOptions } : {}),
          });
        }
        const next = new Uint8Array(size);
        next.set(content.subarray(0, Math.min(size, content.length)));
        content = next;
        const fill = layer.fill ?? (i === 0 ? 'random' : i === layers.length - 1 ? 'none' : 4);
        const extents: Array<[number, Uint8Array]> = [];
        if (fill === 'random') {
          extents.push([0, pattern(size, random())]);
        } else if (typeof fill === 'number') {
          for (let k = 0; k < fill; k++) {
            const offset = random() % size;
            const length = 1 + (random() % Math.min(maxExtent, size - offset));
            extents.push([offset, pattern(length, random())]);
          }
        }
        if (extents.length > 0) {
          const image = await openImage(paths[i]!, openOptionsFor(i, vfs, false));
          try {
            for (const [offset, data] of extents) {
              await image.write(offset, data);
              content.set(data, offset);
            }
          } finally {
            await image.close();
          }
        }
      }
      const top = layers.length - 1;
      const openOptions = options.openOptions;
      return {
        initial: content,
        open: ({ vfs: through, readOnly }) =>
          openImage(paths[top]!, {
            ...openOptionsFor(top, through, readOnly),
            ...openOptions,
          }),
      };
    },
  };
}
