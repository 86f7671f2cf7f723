/* How an image names its backing file, what the core tells a driver about one, and what a driver checks. */

/**
 * What the core knows about a backing file, handed to the driver that
 * records or checks a reference to it (`DriverCreateOptions.backing`,
 * `DriverImage.setBacking`, `DriverImage.checkBackingFacts`). The core only
 * gathers these; it never decides which of them an image records or how
 * they compare (UML's cow records a size and an mtime, qcow2 nothing).
 * Every member is optional: a fact the core could not learn is absent, and
 * a driver skips what depends on it.
 */
export interface BackingFacts {
  /** Virtual size in bytes of the backing image, as it opens. */
  size?: number;
  /** The format the backing image opens as. */
  format?: string;
  /** Length in bytes of the backing file (stat). */
  fileSize?: number;
  /** Whole seconds of the backing file's mtime (stat). */
  mtimeSec?: number;
  /** True when the backing file is a regular file (stat; false for a block device). */
  isFile?: boolean;
}

export interface BackingSpec {
  /** Path to store in the image (createImage makes it absolute). */
  path: string;
  /** Format of the backing file, where the format can record it. */
  format?: string;
  /**
   * The backing file as it is now; the driver records what its format keeps
   * of it (absent: the driver records what it records for an unknown file).
   */
  facts?: BackingFacts;
}

/**
 * One comparison a driver makes between what an image recorded about its
 * backing file and the file as it is now (`DriverImage.checkBackingFacts`).
 * The core and jobs act on `matches` and `kind`, and print
 * `${what} ${found} differs from ${recorded} recorded in the overlay`; they
 * never interpret the values.
 */
export interface BackingCheck {
  /** What was compared, as messages name it (`size`, `mtime`). */
  what: string;
  /** The value the image recorded, as printed. */
  recorded: number | string;
  /** The value the file has now, as printed. */
  found: number | string;
  matches: boolean;
  /** The unit of the values, for messages (`bytes`); none for a value without one (an mtime). */
  unit?: string;
  /**
   * `identity`: a mismatch means this is not the file the image was made
   * over (a commit into it would corrupt it, whatever `force` says).
   * `modified`: the same file, changed since the image recorded it (a commit
   * may proceed when forced, or when the change is its own).
   */
  kind: 'identity' | 'modified';
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
   * What the image recorded about its backing file, for display (`info`).
   * Only the driver compares it (`DriverImage.checkBackingFacts`).
   * Omitted for formats (or variants) that record nothing.
   */
  expect?: { size?: number; mtimeSec?: number };
}
