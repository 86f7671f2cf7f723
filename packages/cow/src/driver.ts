/** The `cow` BlockDriver: probe, open, create. */
import { BlockError, type BlockDriver, type DriverOpenOptions, type ProbeHint, type Storage } from '@blk/core/portable';
import { parseHeader } from './codec.js';
import { CowImage } from './cow-image.js';
import { AMEND_HELP } from './amend.js';
import { createCow, measureCow } from './create.js';
import { detectVariant } from './detect.js';
import { CREATE_OPTIONS, parseOpenOptions } from './options.js';
import { validateHeader } from './validate.js';
import { MAX_HEADER_SIZE, VARIANTS, type CowVariant } from './variants.js';

export const cowDriver: BlockDriver = {
  name: 'cow',
  description: 'User-Mode-Linux copy-on-write overlay (v1, v2, v3; QEMU cow)',
  probeBytes: MAX_HEADER_SIZE,
  // The magic decides: a file with the COW magic is a COW file even when this driver cannot read it
  // (version 9, a truncated or inconsistent header). Opening it then reports the driver's typed error;
  // guessing raw instead would show the header as disk contents and let writes land on it.
  probe(head: Uint8Array, hint: ProbeHint): number {
    try {
      const found = detectVariant(head, hint.size);
      return found.ok || found.reason !== 'not-cow' ? 100 : 0;
    } catch {
      return 0;
    }
  },
  async open(storage: Storage, options: DriverOpenOptions): Promise<CowImage> {
    const path = storage.path;
    const opts = parseOpenOptions(options.driverOptions, path);
    const bytes = await readHead(storage, options);
    const fileSize = options.probe?.size ?? (await storage.size());
    const variant = chooseVariant(bytes, fileSize, path, opts.variant);
    const header = parseHeader(bytes, variant, { path });
    const layout = validateHeader(header, fileSize, path);
    return new CowImage({
      driver: cowDriver,
      storage,
      header,
      headerBytes: bytes.slice(0, VARIANTS[variant].headerSize),
      layout,
      readOnly: options.readOnly,
      cache: options.cache,
      bitmapCacheBytes: opts.bitmapCacheBytes,
    });
  },
  create: createCow,
  measure: measureCow,
  createOptions: CREATE_OPTIONS,
  amendOptions: AMEND_HELP,
};

/**
 * The file's first MAX_HEADER_SIZE bytes (fewer in a shorter file): the ones
 * probing read when they cover that much (no second read of the header, one
 * round trip less over HTTP), else read now.
 */
async function readHead(storage: Storage, options: DriverOpenOptions): Promise<Uint8Array> {
  const probe = options.probe;
  if (probe && probe.head.length >= Math.min(probe.size, MAX_HEADER_SIZE)) {
    return probe.head.subarray(0, Math.min(probe.head.length, MAX_HEADER_SIZE));
  }
  const fileSize = probe?.size ?? (await storage.size());
  const head = new Uint8Array(Math.min(fileSize, MAX_HEADER_SIZE));
  const got = await storage.read(0, head);
  return head.subarray(0, got);
}

/** The variant to read `bytes` as: the caller's, if it names one that fits the version; else detected (§3). */
function chooseVariant(bytes: Uint8Array, fileSize: number, path: string, named: CowVariant | undefined): CowVariant {
  const found = detectVariant(bytes, fileSize);
  const where = { path, driver: 'cow' };
  if (!found.ok) {
    switch (found.reason) {
      case 'not-cow':
        throw new BlockError('bad-magic', `not a COW file: ${found.message}`, { ...where, field: 'magic' });
      case 'unsupported-version':
        throw new BlockError('unsupported-version', found.message, { ...where, field: 'version' });
      case 'truncated':
        if (named === undefined || found.version === undefined) {
          throw new BlockError('truncated', `file is shorter than its header: ${found.message}`, {
            ...where,
            field: 'header',
          });
        }
        break;
      case 'unknown-layout':
        if (named === undefined) {
          throw new BlockError(
            'invalid-header',
            `${found.message}; if you know the layout, name it with driverOptions.variant`,
            { ...where, field: 'sectorsize' },
          );
        }
        break;
    }
  }
  if (named === undefined) return (found as { variant: CowVariant }).variant;
  const version = found.version!;
  if (VARIANTS[named].version !== version) {
    throw new BlockError(
      'invalid-argument',
      `variant ${named} is a version-${VARIANTS[named].version} layout, but the file is version ${version}`,
      { ...where, field: 'variant' },
    );
  }
  // parseHeader reports a file too short for the named layout as `truncated`.
  return named;
}
