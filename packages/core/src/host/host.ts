/**
 * A host: the formats an application knows and the file system it opens them
 * on, bound together once, instead of a registry every library shares and
 * anybody may change. Two hosts never see each other's drivers; a host's
 * registry is a frozen copy of what it was given, so nothing changes the
 * formats it probes among after it is made.
 */
import { BlockError, retitle } from '../errors.js';
import type { BlockDriver, CacheMode } from '../format/driver.js';
import { DriverRegistry, type ProbeResult, type Recognition } from '../format/registry.js';
import type { BackingPolicy } from '../image/backing-policy.js';
import type { Image } from '../image/image.js';
import {
  createImage as coreCreateImage,
  openImage as coreOpenImage,
  type CreateImageOptions,
  type OpenImageOptions,
} from '../image/open.js';
import type { Storage, Vfs } from '../storage/storage.js';

export interface HostOptions {
  /**
   * The formats, in probe order (ties go to the first). An array, any
   * iterable, or a registry (copied: changing it later does not change the host).
   */
  drivers: Iterable<BlockDriver> | DriverRegistry;
  /** Where files live (NodeVfs, a LockingVfs, a MemoryVfs, an HTTP one). */
  vfs: Vfs;
  /** The backing policy of every open that names none (default: core's, see BackingPolicy). */
  backing?: BackingPolicy;
  /** The cache mode of every open that names none (default `writeback`). */
  cache?: CacheMode;
  /** Warnings from the Vfs for opens that pass no `onWarning` of their own. */
  onWarning?: (message: string) => void;
}

/** openImage's options on a host: its registry is the host's; `vfs` replaces the host's for this call. */
export type HostOpenOptions = Omit<OpenImageOptions, 'registry' | 'vfs'> & { vfs?: Vfs };
/** createImage's options on a host: its registry is the host's; `vfs` replaces the host's for this call. */
export type HostCreateOptions = Omit<CreateImageOptions, 'registry' | 'vfs'> & { vfs?: Vfs };

export interface Host {
  /** The formats this host probes among: a frozen registry (`register` throws). */
  readonly registry: DriverRegistry;
  /** Its drivers, in probe order. */
  readonly drivers: readonly BlockDriver[];
  readonly vfs: Vfs;
  /** Opens an image (see core's `openImage`) with this host's formats, file system and defaults. */
  openImage(path: string, options?: HostOpenOptions): Promise<Image>;
  /** Creates an image (see core's `createImage`) with this host's formats and file system. */
  createImage(path: string, options: HostCreateOptions): Promise<void>;
  /**
   * The driver that would open the file at `path` (opened read-only for the
   * probe and closed): `unsupported-format` for a file of a known format no
   * driver of this host reads, `unknown-format` when nothing recognises it.
   */
  probe(path: string, options?: { vfs?: Vfs }): Promise<ProbeResult>;
  /** What the file at `path` is (as `probe`), without throwing for a foreign format or none. */
  inspect(path: string, options?: { vfs?: Vfs }): Promise<Recognition | undefined>;
}

/** A host over `options.vfs` that knows `options.drivers` (see Host). */
export function createHost(options: HostOptions): Host {
  if (typeof options !== 'object' || options === null) {
    throw new BlockError('invalid-argument', 'createHost needs options ({ drivers, vfs })', { field: 'options' });
  }
  const { drivers, vfs } = options;
  if (drivers === undefined || drivers === null || (typeof drivers !== 'object' && typeof drivers !== 'function')) {
    throw new BlockError('invalid-argument', 'createHost: drivers must be a list of BlockDrivers', {
      field: 'drivers',
    });
  }
  if (typeof vfs !== 'object' || vfs === null || typeof vfs.open !== 'function') {
    throw new BlockError('invalid-argument', 'createHost: vfs must be a Vfs', { field: 'vfs' });
  }
  // A registry (duck-typed: one from the other module format of a dual package counts too) or a list.
  const list =
    typeof (drivers as Partial<DriverRegistry>).list === 'function'
      ? (drivers as DriverRegistry).list()
      : (drivers as Iterable<BlockDriver>);
  const registry = new DriverRegistry(list).freeze();
  return new HostImpl(registry, vfs, options);
}

class HostImpl implements Host {
  readonly drivers: readonly BlockDriver[];

  constructor(
    readonly registry: DriverRegistry,
    readonly vfs: Vfs,
    private readonly defaults: Pick<HostOptions, 'backing' | 'cache' | 'onWarning'>,
  ) {
    this.drivers = registry.list();
  }

  openImage(path: string, options: HostOpenOptions = {}): Promise<Image> {
    const full: OpenImageOptions = { ...options, registry: this.registry, vfs: options.vfs ?? this.vfs };
    if (full.backing === undefined && this.defaults.backing !== undefined) full.backing = this.defaults.backing;
    if (full.cache === undefined && this.defaults.cache !== undefined) full.cache = this.defaults.cache;
    if (full.onWarning === undefined && this.defaults.onWarning !== undefined) full.onWarning = this.defaults.onWarning;
    return coreOpenImage(path, full);
  }

  createImage(path: string, options: HostCreateOptions): Promise<void> {
    return coreCreateImage(path, { ...options, registry: this.registry, vfs: options.vfs ?? this.vfs });
  }

  async probe(path: string, options: { vfs?: Vfs } = {}): Promise<ProbeResult> {
    return this.withFile(path, options.vfs, async (storage, absolute) => {
      const bytes = await this.registry.readProbe(storage);
      return this.registry.identify(bytes, path, absolute);
    });
  }

  async inspect(path: string, options: { vfs?: Vfs } = {}): Promise<Recognition | undefined> {
    return this.withFile(path, options.vfs, async (storage) => this.registry.inspect(storage, path));
  }

  private async withFile<T>(
    path: string,
    vfs: Vfs | undefined,
    use: (storage: Storage, absolute: string) => Promise<T>,
  ): Promise<T> {
    const fs = vfs ?? this.vfs;
    const absolute = fs.resolve(fs.cwd(), path);
    const storage = await fs.open(absolute, { readOnly: true }).catch((err: unknown) => {
      throw retitle(err, path);
    });
    try {
      return await use(storage, absolute);
    } catch (err) {
      throw retitle(err, path);
    } finally {
      await storage.close().catch(() => undefined);
    }
  }
}
