import {
  BlockError, readZeroFilled,
  type BlockDriver, type BlockStatus, type DriverCreateOptions, type DriverImage, type DriverOpenOptions,
  type ReadBelow, type ReadBelowSync, type Storage,
} from '@blk/core';

/**
 * Raw images: the file is the disk, byte for byte. Byte-granular (sector size
 * 1), any length, no backing file.
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
  // 1: anything is a raw image, and every real format must outrank it.
  probe: () => 1,
  async open(storage: Storage, options: DriverOpenOptions): Promise<DriverImage> {
    return new RawImage(storage, await storage.size(), options.readOnly);
  },
  async create(storage: Storage, options: DriverCreateOptions): Promise<void> {
    if (options.backing) {
      throw new BlockError('not-supported', 'raw images cannot have a backing file', { path: storage.path, driver: 'raw' });
    }
    await storage.truncate(options.size);
  },
};

class RawImage implements DriverImage {
  readonly driver = rawDriver;
  readonly sectorSize = 1;

  constructor(private readonly storage: Storage, readonly size: number, private readonly readOnly: boolean) {}

  async read(offset: number, into: Uint8Array, _below: ReadBelow): Promise<void> {
    // The file may have shrunk under us: what is missing reads as zeros.
    await readZeroFilled(this.storage, offset, into);
  }

  readSync(offset: number, into: Uint8Array, _below: ReadBelowSync): boolean {
    const storage = this.storage;
    if (storage.readSync === undefined) return false;
    // A short read (the file shrank): `read` zero-fills or reports it.
    return storage.readSync(offset, into) === into.length;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.storage.write(offset, data);
  }

  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const extent = this.storage.extentAt ? await this.storage.extentAt(offset, length) : undefined;
    // A storage answer outside (0, length] says nothing we could use: count the run as data.
    if (extent === undefined || !(Number.isSafeInteger(extent.length) && extent.length > 0 && extent.length <= length)) {
      return { allocated: true, length, hostOffset: offset };
    }
    return { allocated: true, length: extent.length, zero: !extent.data, hostOffset: offset };
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.storage.flush();
  }

  async close(): Promise<void> {
    await this.storage.close();
  }

  info(): Record<string, unknown> {
    return {};
  }
}

export default rawDriver;
