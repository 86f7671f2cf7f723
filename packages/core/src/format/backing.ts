/* How an image names its backing file, and what a new backing reference holds. */

export interface BackingSpec {
  /** Absolute path to store in the new image. */
  path: string;
  /**
   * Size of the backing image in bytes as the overlay records it: its virtual
   * size, or for a raw regular file its length (what UML compares; a raw disk
   * is that length rounded up to whole 512-byte sectors).
   */
  size: number;
  /** Whole seconds of the backing file's mtime. */
  mtimeSec: number;
  /** Format of the backing file, where the format can record it. */
  format?: string;
}

/** What an image says about its backing file. */
export interface BackingReference {
  /** The path exactly as stored in the image (may be relative). */
  path: string;
  /**
   * The stored bytes, present only when they are not valid UTF-8. `path` is
   * then a rendering for display (U+FFFD for the bad bytes) that names some
   * other file, so the core refuses to resolve, open or rewrite such a
   * reference (`not-supported`, field `backing_file`): UML would open the
   * bytes, and blk must never open or commit into a different file.
   */
  rawPath?: Uint8Array;
  /** Format recorded in the image, if the format records one. */
  format?: string;
  /**
   * Values the backing file must still have, checked at open as UML does.
   * Omitted for formats (or variants) that do not check.
   */
  expect?: { size?: number; mtimeSec?: number };
}
