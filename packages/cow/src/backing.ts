/**
 * What a COW overlay records about its backing file, and how it compares
 * (the driver's side of the core's backing hooks). UML's variants record the
 * backing file's size and mtime and refuse to open when either differs;
 * QEMU's cow records the mtime (never checked) and no size.
 */
import type { BackingCheck, BackingFacts } from '@blk/core/portable';
import type { CowHeader } from './codec.js';
import { VARIANTS } from './variants.js';

/**
 * The mtime recorded while a commit into the backing file runs (the commit
 * mark): UML then refuses to open the overlay, which is right while its
 * backing file changes under it.
 */
export const COMMIT_MARK_MTIME = 0;

/** Stored mtime: the whole seconds modulo 2^32, as UML's htobe32 truncation does. */
export function mtime32(seconds: number): number {
  const m = Math.floor(seconds) % 2 ** 32;
  return m < 0 ? m + 2 ** 32 : m;
}

/** True when the variant records and checks its backing file's size and mtime (UML's). */
export function checksBacking(variant: CowHeader['variant']): boolean {
  return VARIANTS[variant].family === 'uml';
}

/**
 * The backing size an overlay records and checks (UML's): the backing
 * image's virtual size, except for a raw regular file, whose length in
 * bytes it is (UML stats the file). The two differ for a raw file whose
 * length is not a multiple of 512, which is a disk of whole sectors.
 * Undefined when the facts do not say.
 */
export function recordedBackingSize(facts: BackingFacts | undefined): number | undefined {
  if (!facts) return undefined;
  if (facts.format === 'raw' && facts.isFile === true && facts.fileSize !== undefined) return facts.fileSize;
  return facts.size;
}

/** The mtime field for a header naming a backing file with these facts (0 when unknown). */
export function recordedMtime(facts: BackingFacts | undefined): number {
  return facts?.mtimeSec !== undefined ? mtime32(facts.mtimeSec) : 0;
}

/** UML's open-time comparison, one check per fact the facts carry; [] for variants that check nothing. */
export function compareBackingFacts(
  header: Pick<CowHeader, 'variant' | 'size' | 'mtime' | 'backingFile'>,
  facts: BackingFacts,
): BackingCheck[] {
  if (!checksBacking(header.variant) || header.backingFile === '') return [];
  const checks: BackingCheck[] = [];
  const size = recordedBackingSize(facts);
  if (size !== undefined) {
    checks.push({
      what: 'size',
      recorded: header.size,
      found: size,
      matches: size === header.size,
      unit: 'bytes',
      kind: 'identity',
    });
  }
  if (facts.mtimeSec !== undefined) {
    // Headers hold 32 bits of mtime; compare the way UML does, modulo 2^32.
    checks.push({
      what: 'mtime',
      recorded: header.mtime,
      found: facts.mtimeSec,
      matches: header.mtime === mtime32(facts.mtimeSec),
      kind: 'modified',
    });
  }
  return checks;
}
