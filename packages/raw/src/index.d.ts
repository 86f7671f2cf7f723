import { type BlockDriver } from '@blk/core';
/** QEMU's BDRV_SECTOR_SIZE: the unit raw images' sizes are counted in. */
export declare const RAW_SIZE_UNIT = 512;
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
export declare const rawDriver: BlockDriver;
export default rawDriver;
