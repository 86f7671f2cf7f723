/**
 * zstd-compressed qcow2 clusters (compression_type=zstd), decoded with the
 * pinned `fzstd` (pure JavaScript, no Node built-in) and bounded here.
 *
 * QEMU (qcow2_zstd_decompress) feeds the payload to ZSTD_decompressStream
 * until the output cluster is full, and fails when that happens in the middle
 * of a frame. The payload is read in whole sectors, so it usually carries the
 * first bytes of the next cluster's frame after its own: this module walks the
 * frame structure itself (header, block headers, checksum) to cut exactly one
 * frame, decodes it, and goes on to the next frame only while the cluster is
 * not full (QEMU's writer emits one frame per cluster). Before anything is
 * decoded it checks what the frame header claims (window size, content size,
 * no dictionary), and the decoded bytes are counted block by block, so a
 * hostile frame never makes more than one block (128 KiB) past the cluster.
 * The content checksum, when present, is skipped, not verified.
 */
import { Decompress } from 'fzstd';

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50..0x184D2A5F. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** zstd's Block_Maximum_Size. */
const BLOCK_MAX = 128 * 1024;
/** Largest window accepted: QEMU's clusters are at most 2 MiB, and its frames never need more. */
const WINDOW_MAX = 8 * 1024 * 1024;

/** Why a zstd payload was refused (the caller wraps it in a BlockError). */
export class ZstdPayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZstdPayloadError';
  }
}

interface FrameInfo {
  /** Bytes of the frame in the payload (header, blocks, checksum). */
  length: number;
  /** Declared content size, or -1 when the header has none. */
  contentSize: number;
  /** 0 for a skippable frame. */
  kind: 'data' | 'skip';
}

function le(p: Uint8Array, at: number, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + (p[at + i] ?? 0);
  return v;
}

/** The extent and declared size of the frame at `at` (checked against `p`'s end). */
export function zstdFrameAt(p: Uint8Array, at: number): FrameInfo {
  const avail = p.length - at;
  if (avail < 4) throw new ZstdPayloadError(`truncated zstd frame: ${avail} bytes left at payload offset ${at}`);
  const magic = le(p, at, 4);
  if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
    if (avail < 8) throw new ZstdPayloadError('truncated skippable zstd frame');
    const length = 8 + le(p, at + 4, 4);
    if (length > avail) throw new ZstdPayloadError('skippable zstd frame runs past the payload');
    return { length, contentSize: 0, kind: 'skip' };
  }
  if (magic !== ZSTD_MAGIC)
    throw new ZstdPayloadError(`no zstd frame at payload offset ${at} (magic 0x${magic.toString(16)})`);
  if (avail < 6) throw new ZstdPayloadError('truncated zstd frame header');
  const fhd = p[at + 4] ?? 0;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  if ((fhd & 0x08) !== 0) throw new ZstdPayloadError('zstd frame header reserved bit is set');
  const checksum = (fhd >> 2) & 1;
  const dictBytes = [0, 1, 2, 4][fhd & 3] ?? 0;
  let pos = at + 5;
  let window = 0;
  if (!singleSegment) {
    const wd = p[pos] ?? 0;
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
    pos += 1;
  }
  if (dictBytes > 0 && le(p, pos, dictBytes) !== 0)
    throw new ZstdPayloadError('zstd frame needs a dictionary (QEMU writes none)');
  pos += dictBytes;
  const fcsBytes = fcsFlag === 0 ? singleSegment : 2 ** fcsFlag;
  if (pos + fcsBytes > p.length) throw new ZstdPayloadError('truncated zstd frame header');
  let contentSize = -1;
  if (fcsBytes > 0) contentSize = le(p, pos, fcsBytes) + (fcsBytes === 2 ? 256 : 0);
  pos += fcsBytes;
  if (singleSegment) window = contentSize;
  if (window > WINDOW_MAX) throw new ZstdPayloadError(`zstd window of ${window} bytes is too large`);
  // Blocks: 3-byte little-endian headers (last flag, type, size).
  for (;;) {
    if (pos + 3 > p.length) throw new ZstdPayloadError('truncated zstd block header');
    const bh = le(p, pos, 3);
    pos += 3;
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) throw new ZstdPayloadError('reserved zstd block type');
    if (size > BLOCK_MAX) throw new ZstdPayloadError(`zstd block of ${size} bytes exceeds the block maximum`);
    pos += type === 1 ? 1 : size;
    if (pos > p.length) throw new ZstdPayloadError('truncated zstd block');
    if (last) break;
  }
  if (checksum) pos += 4;
  if (pos > p.length) throw new ZstdPayloadError('truncated zstd frame checksum');
  return { length: pos - at, contentSize, kind: 'data' };
}

/**
 * Decodes one qcow2 cluster from `payload` (which may end with bytes that are
 * not its own): exactly `clusterSize` bytes, or a ZstdPayloadError.
 */
export function zstdCluster(payload: Uint8Array, clusterSize: number): Uint8Array {
  const out = new Uint8Array(clusterSize);
  let filled = 0;
  let at = 0;
  while (filled < clusterSize) {
    if (at >= payload.length) throw new ZstdPayloadError(`zstd data ends after ${filled} of ${clusterSize} bytes`);
    const frame = zstdFrameAt(payload, at);
    const bytes = payload.subarray(at, at + frame.length);
    at += frame.length;
    if (frame.kind === 'skip') continue;
    if (frame.contentSize > clusterSize - filled) {
      throw new ZstdPayloadError(
        `zstd frame declares ${frame.contentSize} bytes, past the cluster (${clusterSize - filled} left)`,
      );
    }
    const start = filled;
    let finished = false;
    const dec = new Decompress((chunk, final) => {
      if (chunk.length > clusterSize - filled) {
        throw new ZstdPayloadError(`zstd data decompresses past the end of the ${clusterSize}-byte cluster`);
      }
      out.set(chunk, filled);
      filled += chunk.length;
      if (final) finished = true;
    });
    try {
      dec.push(bytes, true);
    } catch (cause) {
      if (cause instanceof ZstdPayloadError) throw cause;
      throw new ZstdPayloadError(`invalid zstd data: ${(cause as Error).message ?? String(cause)}`);
    }
    if (!finished) throw new ZstdPayloadError('zstd frame did not end');
    if (frame.contentSize >= 0 && filled - start !== frame.contentSize) {
      throw new ZstdPayloadError(
        `zstd frame declares ${frame.contentSize} bytes but decompresses to ${filled - start}`,
      );
    }
  }
  return out;
}
