/**
 * Signatures of disk-image formats that real tools write, for formats that
 * may have no registered driver. Probing consults this table so that a
 * qcow2, vmdk, VHD or other container is never guessed to be a raw disk:
 * read as raw, its metadata would show as disk contents, and a write would
 * land on its header.
 *
 * The checks follow QEMU's probe functions (block/qcow2.c, qcow.c, qed.c,
 * vmdk.c, vpc.c, vhdx.c, vdi.c, crypto/block-luks.c, parallels.c, dmg.c,
 * bochs.c, cloop.c), sometimes a little broader: a file that carries a
 * format's magic is that format's business even when the rest of its header
 * is odd, and refusing to guess is the safe answer. Two formats keep their
 * signature at the end of the file (a fixed VHD has only its footer there,
 * a DMG its `koly` trailer), so the checks see the file's last bytes too.
 *
 * Pure functions over bytes: no I/O, no exceptions, portable.
 */
/** Leading bytes the signature checks look at (QEMU's probe buffer is as large). */
export declare const SIGNATURE_HEAD_BYTES = 2048;
/** Trailing bytes the signature checks look at: one 512-byte footer or trailer. */
export declare const SIGNATURE_TAIL_BYTES = 512;
/** A format recognised by its signature. */
export interface ForeignFormat {
    /** The format's name as QEMU spells it (`qemu-img info`, `-f`): qcow2, vmdk, vpc, ... */
    readonly format: string;
    /** What the format is, in words. */
    readonly description: string;
    /** What was found where, e.g. "magic 'QFI' 0xfb at offset 0, version 3". */
    readonly evidence: string;
}
/** The names of every format this table recognises. */
export declare const FOREIGN_FORMATS: readonly string[];
/**
 * The file's last `SIGNATURE_TAIL_BYTES` bytes, or fewer when the file is
 * shorter: `tail` when the caller read it, else cut from `head` when `head`
 * reaches the end of the file, else empty (no tail to judge).
 */
export declare function signatureTail(head: Uint8Array, tail: Uint8Array | undefined, size: number): Uint8Array;
/**
 * The foreign format whose signature `head` (the file's first bytes) or
 * `tail` (its last bytes, see `signatureTail`) carries, or undefined.
 * `skip` names formats not to report (those a registered driver probes
 * itself).
 */
export declare function findForeignFormat(head: Uint8Array, tail: Uint8Array, skip?: (format: string) => boolean): ForeignFormat | undefined;
