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
export const SIGNATURE_HEAD_BYTES = 2048;

/** Trailing bytes the signature checks look at: one 512-byte footer or trailer. */
export const SIGNATURE_TAIL_BYTES = 512;

/** A format recognised by its signature. */
export interface ForeignFormat {
  /** The format's name as QEMU spells it (`qemu-img info`, `-f`): qcow2, vmdk, vpc, ... */
  readonly format: string;
  /** What the format is, in words. */
  readonly description: string;
  /** What was found where, e.g. "magic 'QFI' 0xfb at offset 0, version 3". */
  readonly evidence: string;
}

interface Signature {
  readonly format: string;
  readonly description: string;
  /** The evidence found in `head` (or in `tail`, the file's last bytes), else undefined. */
  readonly test: (head: Uint8Array, tail: Uint8Array) => string | undefined;
}

const encoder = new TextEncoder();

function bytesAt(buf: Uint8Array, offset: number, expected: Uint8Array | string): boolean {
  const want = typeof expected === 'string' ? encoder.encode(expected) : expected;
  if (offset < 0 || buf.length < offset + want.length) return false;
  for (let i = 0; i < want.length; i++) if (buf[offset + i] !== want[i]) return false;
  return true;
}

function u32be(buf: Uint8Array, offset: number): number | undefined {
  if (buf.length < offset + 4) return undefined;
  return ((buf[offset]! << 24) >>> 0) + (buf[offset + 1]! << 16) + (buf[offset + 2]! << 8) + buf[offset + 3]!;
}

function u32le(buf: Uint8Array, offset: number): number | undefined {
  if (buf.length < offset + 4) return undefined;
  return ((buf[offset + 3]! << 24) >>> 0) + (buf[offset + 2]! << 16) + (buf[offset + 1]! << 8) + buf[offset]!;
}

function u16be(buf: Uint8Array, offset: number): number | undefined {
  if (buf.length < offset + 2) return undefined;
  return (buf[offset]! << 8) + buf[offset + 1]!;
}

/** A NUL-terminated string `text` at `offset` (as C's strcmp against a fixed field sees it). */
function cString(buf: Uint8Array, offset: number, text: string): boolean {
  return bytesAt(buf, offset, text) && buf[offset + text.length] === 0;
}

/**
 * A VMDK descriptor file (text): QEMU's vmdk_probe skips comment lines and
 * blank lines made of spaces, then wants `version=1`, `2` or `3` as the
 * first real line.
 */
function vmdkDescriptor(head: Uint8Array): boolean {
  let p = 0;
  const end = head.length;
  while (p < end) {
    const c = head[p];
    if (c === 0x23 /* # */) {
      while (p < end && head[p] !== 0x0a) p++;
      p++;
      continue;
    }
    if (c === 0x20 /* space */) {
      while (p < end && head[p] === 0x20) p++;
      if (p < end && head[p] === 0x0d) p++;
      if (p === end || head[p] !== 0x0a) return false;
      p++;
      continue;
    }
    return /^version=[123]\r?\n/.test(String.fromCharCode(...head.subarray(p, p + 11)));
  }
  return false;
}

const QCOW_MAGIC = new Uint8Array([0x51, 0x46, 0x49, 0xfb]);
const LUKS_MAGIC = new Uint8Array([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]);
const CLOOP_V2_MAGIC = '#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n';

/** Every signature, in the order they are tried (head signatures first, then the trailers). */
const SIGNATURES: readonly Signature[] = [
  {
    format: 'qcow2',
    description: 'QEMU copy-on-write v2/v3',
    test: (h) => {
      const version = u32be(h, 4);
      return bytesAt(h, 0, QCOW_MAGIC) && version !== undefined && version >= 2
        ? `magic 'QFI' 0xfb at offset 0, version ${version}`
        : undefined;
    },
  },
  {
    format: 'qcow',
    description: 'QEMU copy-on-write v1',
    // Version 1, and also 0 or a file too short to hold a version: the magic alone says "QEMU's".
    test: (h) => {
      const version = u32be(h, 4);
      return bytesAt(h, 0, QCOW_MAGIC) && (version === undefined || version < 2)
        ? `magic 'QFI' 0xfb at offset 0, version ${version ?? '(missing)'}`
        : undefined;
    },
  },
  {
    format: 'qed',
    description: 'QEMU enhanced disk',
    test: (h) => (bytesAt(h, 0, 'QED\0') ? "magic 'QED\\0' at offset 0" : undefined),
  },
  {
    format: 'vmdk',
    description: 'VMware virtual disk',
    test: (h) => {
      if (bytesAt(h, 0, 'KDMV')) return "sparse extent magic 'KDMV' at offset 0";
      if (bytesAt(h, 0, 'COWD')) return "VMDK3 extent magic 'COWD' at offset 0";
      return vmdkDescriptor(h) ? "descriptor file ('version=' as its first line)" : undefined;
    },
  },
  {
    format: 'vpc',
    description: 'Virtual PC / VHD',
    test: (h) => (bytesAt(h, 0, 'conectix') ? "cookie 'conectix' at offset 0" : undefined),
  },
  {
    format: 'vhdx',
    description: 'Hyper-V VHDX',
    test: (h) => (bytesAt(h, 0, 'vhdxfile') ? "signature 'vhdxfile' at offset 0" : undefined),
  },
  {
    format: 'vdi',
    description: 'VirtualBox disk image',
    test: (h) => (u32le(h, 0x40) === 0xbeda107f ? 'signature 0xbeda107f at offset 64' : undefined),
  },
  {
    format: 'luks',
    description: 'LUKS encrypted volume',
    test: (h) =>
      bytesAt(h, 0, LUKS_MAGIC)
        ? `magic 'LUKS' 0xba 0xbe at offset 0, version ${u16be(h, 6) ?? '(missing)'}`
        : undefined,
  },
  {
    format: 'parallels',
    description: 'Parallels disk image',
    test: (h) => {
      const magic = bytesAt(h, 0, 'WithoutFreeSpace')
        ? 'WithoutFreeSpace'
        : bytesAt(h, 0, 'WithouFreSpacExt')
          ? 'WithouFreSpacExt'
          : undefined;
      return magic ? `magic '${magic}' at offset 0` : undefined;
    },
  },
  {
    format: 'bochs',
    description: 'Bochs disk image',
    test: (h) => (cString(h, 0, 'Bochs Virtual HD Image') ? "magic 'Bochs Virtual HD Image' at offset 0" : undefined),
  },
  {
    format: 'cloop',
    description: 'compressed loop image',
    test: (h) => (bytesAt(h, 0, CLOOP_V2_MAGIC) ? 'cloop v2.0 header script at offset 0' : undefined),
  },
  {
    // A fixed VHD is the raw disk followed by this footer; dynamic ones also copy it to offset 0.
    format: 'vpc',
    description: 'Virtual PC / VHD',
    test: (_h, t) =>
      t.length === SIGNATURE_TAIL_BYTES && bytesAt(t, 0, 'conectix') && u32be(t, 12) === 0x00010000
        ? "footer cookie 'conectix' in the last 512 bytes"
        : undefined,
  },
  {
    // Apple disk images end with a 512-byte 'koly' trailer, version 4.
    format: 'dmg',
    description: 'Apple disk image',
    test: (_h, t) =>
      t.length === SIGNATURE_TAIL_BYTES && bytesAt(t, 0, 'koly') && u32be(t, 4) === 4 && u32be(t, 8) === 512
        ? "'koly' trailer in the last 512 bytes"
        : undefined,
  },
];

/** The names of every format this table recognises. */
export const FOREIGN_FORMATS: readonly string[] = [...new Set(SIGNATURES.map((s) => s.format))];

/**
 * The file's last `SIGNATURE_TAIL_BYTES` bytes, or fewer when the file is
 * shorter: `tail` when the caller read it, else cut from `head` when `head`
 * reaches the end of the file, else empty (no tail to judge).
 */
export function signatureTail(head: Uint8Array, tail: Uint8Array | undefined, size: number): Uint8Array {
  const want = Math.max(0, Math.min(SIGNATURE_TAIL_BYTES, size));
  if (tail !== undefined && tail.length === want) return tail;
  if (Number.isSafeInteger(size) && size >= 0 && size <= head.length) return head.subarray(size - want, size);
  return new Uint8Array(0);
}

/**
 * The foreign format whose signature `head` (the file's first bytes) or
 * `tail` (its last bytes, see `signatureTail`) carries, or undefined.
 * `skip` names formats not to report (those a registered driver probes
 * itself).
 */
export function findForeignFormat(
  head: Uint8Array,
  tail: Uint8Array,
  skip: (format: string) => boolean = () => false,
): ForeignFormat | undefined {
  for (const signature of SIGNATURES) {
    if (skip(signature.format)) continue;
    const evidence = signature.test(head, tail);
    if (evidence !== undefined) return { format: signature.format, description: signature.description, evidence };
  }
  return undefined;
}
