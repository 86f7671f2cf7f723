import { BlockError } from '../errors.js';
import type {
  CapabilityMode,
  DiscardSemantic,
  DriverCapabilities,
  DriverImage,
  ImageCapabilities,
  ImageLimits,
} from '../format/driver.js';

/** NBD's usual maximum request (qemu-nbd, nbdkit): what callers are told to split at, by default. */
export const DEFAULT_MAX_TRANSFER = 32 * 1024 * 1024;
/** Preferred request size when the driver names none: a page, or the alignment / cluster when larger. */
const DEFAULT_PREFERRED = 4096;

/**
 * The driver's request alignment: `requestAlignment`, else the deprecated
 * `sectorSize`. Throws `invalid-argument` unless it is a positive safe integer.
 */
export function requestAlignmentOf(driverImage: DriverImage, context: { path: string; format: string }): number {
  const value = driverImage.requestAlignment ?? driverImage.sectorSize;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new BlockError(
      'invalid-argument',
      `driver ${context.format} reported request alignment (sector size) ${String(value)}`,
      { path: context.path, driver: context.format },
    );
  }
  return value;
}

/** True when the opened driver image can be written at all (it has `write` and does not declare `write: false`). */
export function driverCanWrite(driverImage: DriverImage): boolean {
  return driverImage.write !== undefined && driverImage.capabilities?.write !== false;
}

/**
 * Refuses a writable open of an image whose driver cannot write, up front
 * (before any backing file is opened, not at the first write).
 */
export function refuseWritableOpen(driverImage: DriverImage, context: { path: string; readOnly: boolean }): void {
  if (context.readOnly || driverCanWrite(driverImage)) return;
  const format = driverImage.driver.name;
  throw new BlockError('not-supported', `format ${format} cannot be written: open the image read-only`, {
    path: context.path,
    driver: format,
    code: 'ENOTSUP',
  });
}

/**
 * Computes `Image.capabilities` once per open from what the driver declares,
 * as nbdkit does from a plugin's callbacks:
 * - no write, zeroes, discard or FUA without write (a read-only open, or a
 *   driver without `write`);
 * - flush unless the driver says it has nothing to flush;
 * - FUA native when declared, else emulated (write + flush) when there is a
 *   flush, else none;
 * - zeroes native when the driver has `writeZeroes` (or declares it), else
 *   emulated by the core's bounded buffer of zeros;
 * - discard as declared; else none without `discard`, 'backing' for an
 *   image with a backing reference (its sectors fall through), 'zero' without;
 * - multiConn: one `Image` shared by several handles serialises their
 *   requests in one driver, so a flush through any covers all: true with flush.
 * Limits: preferred transfer max(4096, alignment, cluster), max transfer
 * 32 MiB, discard alignment the cluster size (else the request alignment),
 * zero alignment the request alignment; declared values win, rounded up to
 * whole request-alignment units. The result is frozen.
 */
export function deriveCapabilities(
  driverImage: DriverImage,
  context: { path: string; format: string; readOnly: boolean },
): ImageCapabilities {
  const declared: DriverCapabilities = driverImage.capabilities ?? {};
  const align = requestAlignmentOf(driverImage, context);
  const write = !context.readOnly && driverCanWrite(driverImage);
  const flush = declared.flush !== false;
  const fua: CapabilityMode = !write ? 'none' : declared.fua === 'native' ? 'native' : flush ? 'emulated' : 'none';
  const writeZeroes: CapabilityMode = !write
    ? 'none'
    : (declared.writeZeroes ?? (driverImage.writeZeroes !== undefined ? 'native' : 'emulated'));
  let discard: DiscardSemantic = 'none';
  if (write && driverImage.discard !== undefined) {
    discard = declared.discard ?? (driverImage.backing !== undefined ? 'backing' : 'zero');
  }
  const given = declared.limits ?? {};
  const unit = (value: number | undefined, name: string, fallback: number): number => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new BlockError('invalid-argument', `driver ${context.format} declared ${name} ${value}`, {
        path: context.path,
        driver: context.format,
      });
    }
    return Math.ceil(value / align) * align;
  };
  const clusterSize = given.clusterSize === undefined ? undefined : unit(given.clusterSize, 'clusterSize', align);
  const preferredTransfer = unit(
    given.preferredTransfer,
    'preferredTransfer',
    Math.ceil(Math.max(DEFAULT_PREFERRED, clusterSize ?? 0) / align) * align,
  );
  const limits: ImageLimits = {
    requestAlignment: align,
    preferredTransfer,
    maxTransfer: Math.max(
      preferredTransfer,
      unit(given.maxTransfer, 'maxTransfer', Math.ceil(DEFAULT_MAX_TRANSFER / align) * align),
    ),
    discardAlignment: unit(given.discardAlignment, 'discardAlignment', clusterSize ?? align),
    zeroAlignment: unit(given.zeroAlignment, 'zeroAlignment', align),
    ...(clusterSize !== undefined ? { clusterSize } : {}),
    ...(given.serialAlignment !== undefined
      ? { serialAlignment: unit(given.serialAlignment, 'serialAlignment', align) }
      : {}),
  };
  return Object.freeze({
    write,
    flush,
    fua,
    writeZeroes,
    discard,
    blockStatus: declared.blockStatus ?? true,
    multiConn: flush,
    ...(write && declared.compress === true ? { compress: true } : {}),
    limits: Object.freeze(limits),
  });
}
