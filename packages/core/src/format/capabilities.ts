/**
 * What an opened image can do and the sizes its requests should have
 * (nbdkit's can_* callbacks and block size, QEMU's BlockLimits), computed
 * once per open: the driver declares what it knows (`DriverImage.capabilities`),
 * the core derives the rest (see `deriveCapabilities` in image/capabilities.ts).
 */

/** How a request flag (FUA) or operation (write zeroes) is carried out. */
export type CapabilityMode = 'none' | 'emulated' | 'native';

/**
 * What a discarded range reads as afterwards (nbdkit's can_trim, QEMU's
 * discard semantics): `none` = this image cannot discard (`Image.discard`
 * refuses with `not-supported`); `zero` = zeros (a raw file's punched hole);
 * `backing` = whatever the layer below holds there (an overlay's sectors
 * fall through again); `any` = unspecified contents (the caller must not rely
 * on them).
 */
export type DiscardSemantic = 'none' | 'zero' | 'any' | 'backing';

export interface ImageLimits {
  /**
   * The driver's I/O unit: every offset and length the core hands the driver
   * is a multiple of it (was `sectorSize`'s first meaning). Unaligned caller
   * requests are read-modify-written by the core. 1 for byte-granular formats.
   */
  readonly requestAlignment: number;
  /** Requests of (a multiple of) this size are the efficient ones (NBD's preferred block size). */
  readonly preferredTransfer: number;
  /** Largest request a caller should issue at once (NBD's maximum; `Image` itself splits nothing and accepts more). */
  readonly maxTransfer: number;
  /** `Image.discard` clips a range to this alignment (discard is advisory; a misaligned edge is kept, never refused). */
  readonly discardAlignment: number;
  /** `Image.writeZeroes` zeroes whole units of this size without a buffer; edges are written as data. */
  readonly zeroAlignment: number;
  /** Allocation unit of the format (cow: 512, qcow2: its cluster size); undefined where there is none (raw). */
  readonly clusterSize?: number;
  /**
   * Writes (and write-zeroes, discards) are serialised against each other, and against reads, in
   * units of this size: a request waits for every earlier one touching the same units, so a driver
   * never sees two writes into one unit at once (qcow2: its cluster size, so two writes into one
   * unallocated cluster do not both allocate it). Undefined: the request alignment.
   */
  readonly serialAlignment?: number;
}

export interface ImageCapabilities {
  /** `write`, `writeZeroes` and `discard` may be called (false for read-only opens and formats that cannot write). */
  readonly write: boolean;
  /** `flush` makes writes durable (false: the driver has nothing it could make durable). */
  readonly flush: boolean;
  /**
   * `{ fua: true }` on a write: `native` = the driver makes that one write
   * durable itself; `emulated` = the core flushes after it; `none` = refused
   * (`not-supported`), no flush to emulate it with, or no write at all.
   */
  readonly fua: CapabilityMode;
  /**
   * `writeZeroes`: `native` = the driver zeroes without a data buffer (it may
   * still decline a range, see `DriverImage.writeZeroes`); `emulated` = the
   * core writes a bounded buffer of zeros (refused with `noFallback`);
   * `none` = no write at all.
   */
  readonly writeZeroes: CapabilityMode;
  /** What a discarded range reads as (see `DiscardSemantic`). */
  readonly discard: DiscardSemantic;
  /** The format reports allocation (`status`/`map` tell holes from data; false: every run is data). */
  readonly blockStatus: boolean;
  /**
   * A flush through one handle covers writes made through another: true when
   * the handles share one `Image` (its requests meet in one driver) and it can flush.
   */
  readonly multiConn: boolean;
  /**
   * `write(..., { compress: true })` stores whole clusters compressed (qemu-io's `write -c`); present
   * (true) only when the driver declares it on a writable open.
   */
  readonly compress?: boolean;
  readonly limits: ImageLimits;
}

/**
 * What a driver declares about an opened image (`DriverImage.capabilities`):
 * any member left out is derived by the core. The request alignment is the
 * driver's `requestAlignment`, not part of this record.
 */
export interface DriverCapabilities {
  /** False when this image can never be written (a read-only format): writable opens are refused up front. */
  readonly write?: boolean;
  /** False when `flush` has nothing to make durable. */
  readonly flush?: boolean;
  /** 'native' when `write(offset, data, { fua: true })` makes the write durable itself. */
  readonly fua?: 'none' | 'native';
  /** Default: 'native' when the driver has `writeZeroes`, 'emulated' otherwise. */
  readonly writeZeroes?: 'emulated' | 'native';
  /**
   * Default: 'none' without `discard`; else what falling through reads:
   * 'backing' for an image with a backing reference, 'zero' without one.
   */
  readonly discard?: DiscardSemantic;
  /** Default true. */
  readonly blockStatus?: boolean;
  /** True when `write` takes `flags.compress` (whole clusters, stored compressed). Default false. */
  readonly compress?: boolean;
  readonly limits?: Partial<Omit<ImageLimits, 'requestAlignment'>>;
}

/** Flags of `Image.write` (and `DriverImage.write`). */
export interface WriteFlags {
  /** Force unit access: the write is durable when it resolves (NBD_CMD_FLAG_FUA, qemu-io's `write -f`). */
  fua?: boolean;
  /**
   * Store the data compressed (qemu-io's `write -c`, QEMU's BDRV_REQ_WRITE_COMPRESSED): the range
   * must start on a cluster and end on one or at the end of the image; refused (`not-supported`)
   * where the image cannot (`capabilities.compress`).
   */
  compress?: boolean;
}

/** Flags of `Image.writeZeroes`. */
export interface WriteZeroesFlags extends Pick<WriteFlags, 'fua'> {
  /** The range may be left deallocated, as long as it reads as zeros (qemu-io's `write -z -u`). */
  mayUnmap?: boolean;
  /**
   * Fail with `not-supported` (code ENOTSUP), writing nothing, rather than
   * write a buffer of zeros (NBD_CMD_FLAG_FAST_ZERO, QEMU's BDRV_REQ_NO_FALLBACK).
   */
  noFallback?: boolean;
}
