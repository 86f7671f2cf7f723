import {
  BlockError,
  alignUp,
  invalidArgument,
  preallocate,
  readZeroFilled,
  supportedPreallocation,
  type BlockDriver,
  type BlockStatus,
  type DriverCapabilities,
  type DriverCreateOptions,
  type DriverImage,
  type DriverOpenOptions,
  type MeasureInput,
  type MeasureResult,
  type PreallocationMode,
  type ReadBelow,
  type ResizeOptions,
  type Storage,
  flushStorage,
  truncateTo,
  writeTo,
} from '@blk/core/portable';

/** What preallocation means for raw: the file is all data, so there is no metadata to preallocate (as QEMU). */
const RAW_PREALLOCATION: readonly PreallocationMode[] = ['off', 'falloc', 'full'];

/**
 * Grows `storage` from `from` to `to` bytes, reserving the new part as `mode`
 * asks. A preallocation that fails (ENOSPC) leaves the file at `from`: for
 * raw, its length is the disk's size.
 */
async function growFile(storage: Storage, from: number, to: number, mode: PreallocationMode): Promise<void> {
  if (mode === 'falloc' || mode === 'full') {
    try {
      await preallocate(storage, from, to - from, mode);
    } catch (err) {
      await truncateTo(storage, from).catch(() => undefined);
      throw err;
    }
  }
  // After preallocation too: a file system that reserved rounded-up blocks must still end at `to`.
  await truncateTo(storage, to);
}

/** QEMU's BDRV_SECTOR_SIZE: the unit raw images' sizes are counted in. */
export const RAW_SIZE_UNIT = 512;

/** `length` rounded up to whole 512-byte sectors. */
function wholeSectors(length: number): number {
  return Math.ceil(length / RAW_SIZE_UNIT) * RAW_SIZE_UNIT;
}

/**
 * Raw images: the file is the disk, byte for byte. Byte-granular I/O (sector
 * size 1), no backing file.
 *
 * Size: whole 512-byte sectors, as QEMU's block layer counts every image
 * (bdrv_getlength is total_sectors * 512): a 1000-byte file is a 1024-byte
 * disk whose last 24 bytes read as zeros, `create` of 1234 bytes makes a
 * 1536-byte file (as qemu-img's file driver rounds up), and a write past the
 * end of the file inside the last sector grows the file to the write's end
 * (as qemu-io's pwrite does), never beyond.
 *
 * Allocation: every byte is present (depth 0). Holes of the file are reported
 * as zero runs, when the storage can tell where they are (`Storage.extentAt`:
 * lseek SEEK_DATA/SEEK_HOLE through @blk/native on host files, chunks in
 * memory), as qemu-img does; otherwise every byte is data, and readers that
 * want holes back (convert) find all-zero runs by content. Holes are the
 * file system's word (convert then skips them unread), as with qemu-img.
 */
export const rawDriver: BlockDriver = {
  name: 'raw',
  description: 'raw disk image (the file is the disk)',
  probeBytes: 0,
  guestDataAtFileStart: true,
  // createImage's own options only: raw takes no driver options.
  createOptions: [
    { name: 'size', type: 'size', help: 'Virtual disk size' },
    {
      name: 'preallocation',
      type: 'enum',
      values: RAW_PREALLOCATION,
      default: 'off',
      valueName: 'str',
      help: 'Preallocation mode (allowed values: off, falloc, full)',
    },
  ],
  // 1: anything is a raw image, and every real format must outrank it.
  probe: () => 1,
  async open(storage: Storage, options: DriverOpenOptions): Promise<DriverImage> {
    refuseDriverOptions(options.driverOptions, storage.path);
    // The size probing found (read just before this open), else asked for.
    const size = options.probe?.size ?? (await storage.size());
    return new RawImage(storage, wholeSectors(size), options.readOnly);
  },
  async create(storage: Storage, options: DriverCreateOptions): Promise<void> {
    refuseDriverOptions(options.driverOptions, storage.path);
    if (options.backing) {
      throw new BlockError('not-supported', 'raw images cannot have a backing file', {
        path: storage.path,
        driver: 'raw',
      });
    }
    const mode = supportedPreallocation(options.preallocation, RAW_PREALLOCATION, {
      path: storage.path,
      driver: 'raw',
    });
    // Whole sectors, as qemu-img's file driver creates them (1234 bytes make 1536).
    await growFile(storage, 0, wholeSectors(options.size), mode);
  },
  /** As QEMU's raw_measure: the file is the disk, every sector of it counts, allocated or not. */
  async measure(input: MeasureInput): Promise<MeasureResult> {
    if (input.driverOptions && Object.keys(input.driverOptions).length > 0) {
      const key = Object.keys(input.driverOptions)[0]!;
      throw new BlockError('invalid-argument', `format raw does not support option '${key}'`, {
        driver: 'raw',
        field: key,
      });
    }
    supportedPreallocation(input.preallocation, RAW_PREALLOCATION, { driver: 'raw' });
    const required = alignUp(input.size, 512);
    return { required, fullyAllocated: required };
  },
};

/** Raw has no options: a key given for it is a typo or meant for another format, never silently ignored. */
function refuseDriverOptions(options: Record<string, unknown> | undefined, path: string): void {
  const key = options ? Object.keys(options)[0] : undefined;
  if (key !== undefined)
    throw invalidArgument(`driverOptions.${key}`, 'is not an option of format raw (it has none)', path);
}

/** The least preferred transfer raw declares (a page), whatever smaller block size the storage names. */
const PREFERRED_TRANSFER = 4096;

/** Largest buffer of zeros a discard writes at once where holes cannot be punched. */
const DISCARD_CHUNK = 1024 * 1024;

class RawImage implements DriverImage {
  readonly driver = rawDriver;
  /** Byte-granular: the file is the disk. */
  readonly requestAlignment = 1;
  /**
   * Zeroing and discard are fallocate(2) where the storage can zero ranges
   * (a hole reads zeros: discard 'zero', at any byte, the file system zeroing
   * partial blocks); elsewhere zeroes come from the core's buffer and discard
   * writes zeros (it still reads zeros). Allocation is reported only where the
   * storage knows its holes (`capabilities.extents`). Every request goes to
   * the storage as it is, so the storage's transfer sizes are the image's:
   * its preferred transfer (a file system's block size, at least 4 KiB) and
   * its maximum, when it has one.
   */
  readonly capabilities: DriverCapabilities;
  /**
   * The last stretch of the file the storage reported as data, [start, end): status inside it is
   * answered without asking again (an NBD server asks for every read it answers, a chain walk for
   * every run of the layer above: two lseeks each). Only data is remembered, never a hole: this
   * driver's writes only turn holes into data, and its discard, writeZeroes and resize forget it.
   * Should another process punch a hole meanwhile, the range is reported as data, which reads
   * true (its zeros are read from the file), just not as sparse.
   */
  private knownData: { start: number; end: number } | undefined;

  constructor(
    private readonly storage: Storage,
    public size: number,
    private readonly readOnly: boolean,
  ) {
    const { preferredTransfer, maxTransfer } = storage.capabilities.limits;
    this.capabilities = {
      writeZeroes: storage.capabilities.zeroRange ? 'native' : 'emulated',
      discard: 'zero',
      blockStatus: storage.capabilities.extents,
      limits: {
        discardAlignment: 1,
        preferredTransfer: Math.max(PREFERRED_TRANSFER, preferredTransfer ?? 0),
        ...(maxTransfer !== undefined ? { maxTransfer } : {}),
      },
    };
  }

  /**
   * @deprecated `requestAlignment` under its old name (`DriverImage.sectorSize`),
   * for code that still reads it from a driver image; the core reads `requestAlignment`.
   */
  get sectorSize(): number {
    return this.requestAlignment;
  }

  /** The file's own length (up to 511 bytes less than `size`): where probing finds its last bytes. */
  fileLength(): Promise<number> {
    return this.storage.size();
  }

  /** The file is the disk: truncate it (QEMU's raw resize), reserving the new part as asked. */
  async resize(size: number, options: ResizeOptions): Promise<void> {
    if (this.readOnly)
      throw new BlockError('read-only', 'image is open read-only', { path: this.storage.path, driver: 'raw' });
    const mode = supportedPreallocation(options.preallocation, RAW_PREALLOCATION, {
      path: this.storage.path,
      driver: 'raw',
    });
    const from = await this.storage.size();
    this.knownData = undefined;
    try {
      if (size > from) await growFile(this.storage, from, size, mode);
      else await truncateTo(this.storage, size);
    } finally {
      this.knownData = undefined;
    }
    await flushStorage(this.storage);
    // The file is as long as asked (as qemu-img resize leaves it); the disk is whole sectors.
    this.size = wholeSectors(size);
  }

  /** Synchronous (see `DriverImage.read`) when the storage reads synchronously and the file is long enough. */
  /** The file is the disk: guest byte i is file byte i (past the file's end, zeros). */
  storageRange(offset: number, _length: number): { storage: Storage; position: number } {
    return { storage: this.storage, position: offset };
  }

  read(offset: number, into: Uint8Array, _below: ReadBelow): void | Promise<void> {
    const storage = this.storage;
    try {
      const caps = storage.capabilities;
      if (
        caps.syncRead
        && into.length <= (caps.limits.syncReadMax ?? Number.POSITIVE_INFINITY)
        && storage.readSync!(offset, into) === into.length
      )
        return undefined;
    } catch (err) {
      return Promise.reject(err);
    }
    // No synchronous read, or a short one: past the end of the file (a partial last sector, or a
    // file that shrank) reads as zeros, a short read inside it is an error.
    return readZeroFilled(this.storage, offset, into).then(noop);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await writeTo(this.storage, offset, data);
  }

  /** fallocate(2) where the storage offers it: a hole with mayUnmap, zeroed blocks otherwise (as QEMU's file-posix). */
  async writeZeroes(offset: number, length: number, { mayUnmap }: { mayUnmap: boolean }): Promise<boolean> {
    if (!this.storage.capabilities.zeroRange) return false;
    // Forgotten before and after: a status taken while the hole is being made must not be kept.
    this.knownData = undefined;
    const done = await this.storage.zeroRange!(offset, length, mayUnmap).finally(() => {
      this.knownData = undefined;
    });
    // Zeros written into the partial last sector, past the end of the file, extend it to their end
    // (as QEMU's fallocate(FALLOC_FL_ZERO_RANGE) does; a discard keeps the size).
    if (done && !mayUnmap && offset + length > (await this.storage.size()))
      await truncateTo(this.storage, offset + length);
    return done;
  }

  /**
   * Discard on a raw file (qemu-io's `discard`, QEMU's raw-posix): a hole,
   * which reads as zeros, like the "fall through" of a layer without a
   * backing file. Where the file system cannot punch holes, zeros are written.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.knownData = undefined;
    if (this.storage.capabilities.zeroRange) {
      const punched = await this.storage.zeroRange!(offset, length, true).finally(() => {
        this.knownData = undefined;
      });
      if (punched) return;
    }
    const zeros = new Uint8Array(Math.min(length, DISCARD_CHUNK));
    for (let done = 0; done < length; done += zeros.length) {
      const n = Math.min(zeros.length, length - done);
      await writeTo(this.storage, offset + done, n === zeros.length ? zeros : zeros.subarray(0, n));
    }
  }

  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const known = this.knownData;
    if (known !== undefined && offset >= known.start && offset < known.end) {
      return {
        allocated: true,
        length: Math.min(length, known.end - offset),
        data: true,
        zero: false,
        hostOffset: offset,
      };
    }
    // Asked up to the end of the disk (the same lseeks), so that the data stretch is remembered whole.
    const ask = Math.max(length, this.size - offset);
    const extent = this.storage.capabilities.extents ? await this.storage.extentAt!(offset, ask) : undefined;
    // A storage answer outside (0, ask] says nothing we could use: count the run as data.
    // As QEMU's file driver: every byte is allocated (a raw image has nothing below it), at
    // its own offset; a hole is not data and reads as zeros, stored bytes are data.
    if (extent === undefined || !(Number.isSafeInteger(extent.length) && extent.length > 0 && extent.length <= ask)) {
      return { allocated: true, length, data: true, hostOffset: offset };
    }
    const run = Math.min(length, extent.length);
    if (!extent.data) return { allocated: true, length: run, data: false, zero: true, hostOffset: offset };
    this.knownData = { start: offset, end: offset + extent.length };
    return { allocated: true, length: run, data: true, zero: false, hostOffset: offset };
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await flushStorage(this.storage);
  }

  async close(): Promise<void> {
    await this.storage.close();
  }

  info(): Record<string, unknown> {
    return {};
  }
}

export default rawDriver;

function noop(): void {}
