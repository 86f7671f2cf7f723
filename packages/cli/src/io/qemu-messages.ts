/**
 * blk io stands in for qemu-io, whose users' scripts (and QEMU's iotests) read its error lines:
 * `qemu-io: MESSAGE`, and for a file that does not open `qemu-io: can't open device NAME: MESSAGE`
 * (`can't open: MESSAGE` when no name was given). Where blk's reason has a QEMU wording for the
 * same failure it is worded as QEMU words it; otherwise blk's own text follows the prefix.
 */
import { isBlockError } from '@blk/core';
import { describeError } from '../errors.js';
import { isJsonFilename, parseJsonFilename } from '../json-filename.js';
import { SIZE_HINT } from './block-options.js';
import { printable } from '../printable.js';

/** The program name qemu-io's error_report puts before every error line. */
export const QEMU_IO = 'qemu-io';

/** The reason alone, without the `FILE: ` blk's BlockError messages lead with. */
function reason(err: unknown): string {
  const line = describeError(err);
  const path = isBlockError(err) ? err.path : undefined;
  if (typeof path === 'string' && line.startsWith(`${printable(path)}: `))
    return line.slice(printable(path).length + 2);
  return line;
}

/** The file `name` opens: a json: name's `file.filename` (or `filename`), else `name` itself. */
function topPath(name: string): string {
  if (!isJsonFilename(name)) return name;
  try {
    const options = parseJsonFilename(name);
    const file = options.get('file.filename') ?? options.get('filename');
    return typeof file === 'string' ? file : name;
  } catch {
    return name;
  }
}

/**
 * Why `name` did not open, worded as QEMU's bdrv_open words it where blk's reason is the same:
 * a missing file, a missing backing file, an unknown format (of the image or its backing file).
 */
export function qemuOpenReason(err: unknown, name: string): string {
  const why = reason(err);
  if (!isBlockError(err)) return why;
  const path = err.path;
  const backing = /^backing file (.*) not found$/.exec(err.detail);
  if (err.kind === 'backing-missing' && backing) {
    return `Could not open backing file: Could not open '${printable(backing[1]!)}': No such file or directory`;
  }
  const unknown = /^unknown format '(.*)' \(known: /.exec(err.detail);
  if (unknown) {
    // The registry names no file; blk opened the backing file when its path is not the top's.
    const driver = `Unknown driver '${printable(unknown[1]!)}'`;
    return typeof path === 'string' && path !== name && path !== topPath(name)
      ? `Could not open backing file: ${driver}`
      : driver;
  }
  if (err.kind === 'locked' && typeof path === 'string') {
    // QEMU's raw_check_lock_bytes: a writer wants the "write" lock; a reader is refused the shared
    // one (another process writes). blk's lock says which of the two it was asked for.
    const lock = /will not open it for writing/.test(err.detail) ? '"write" lock' : 'shared "write" lock';
    return `Failed to get ${lock}\nIs another process using the image [${printable(path)}]?`;
  }
  if (err.kind === 'special-file' && typeof path === 'string') {
    // QEMU's file driver refuses a FIFO naming it (raw_open_common); blk refuses character devices,
    // sockets and directories too. The file is named: a json: name's inner file is not the name.
    // Only for the file itself: a FIFO named as a backing file is reported as blk words it (the
    // error's path is then the overlay's, which must not be called the FIFO).
    if (/FIFO/.test(err.detail) && !/^backing file /.test(err.detail))
      return `'file' driver requires '${printable(path)}' to be a regular file`;
    if (path !== name) return `${printable(path)}: ${why}`;
  }
  const header = qcow2HeaderReason(err.kind, err.field, err.detail);
  if (header !== undefined) return header;
  if (err.code === 'ENOENT' && typeof path === 'string') {
    return `Could not open '${printable(path)}': No such file or directory`;
  }
  return why;
}

/** qcow2 header fields whose `FIELD N is too large` is QEMU's qcow2_do_open/qcow2_validate_table text. */
const QCOW2_OFFSET_WORDS: Record<string, string> = {
  backing_file_offset: 'Invalid backing file offset',
  refcount_table_offset: 'Reference count table offset invalid',
  snapshots_offset: 'Snapshot table offset invalid',
  l1_table_offset: 'Active L1 table offset invalid',
};

/** QEMU's words for the qcow2 header checks blk words otherwise (iotest 080); undefined for the rest. */
function qcow2HeaderReason(kind: string, field: string | undefined, detail: string): string | undefined {
  if (kind !== 'invalid-header' || field === undefined) return undefined;
  const words = QCOW2_OFFSET_WORDS[field];
  if (words !== undefined && new RegExp(`^${field} [0-9]+ is too large$`).test(detail)) return words;
  if (field === 'nb_snapshots' && detail === 'Too many snapshots') return 'Snapshot table too large';
  if (field === 'header_extension' && detail.startsWith('Header extension too large')) {
    return 'Header extension too large';
  }
  return undefined;
}

/**
 * An escaped (printable) message with QEMU's own multi-line texts, which blk writes itself, put back
 * as lines: printable() shows every newline as `\n`, right for names, wrong for QEMU's size hint.
 */
export function withQemuLines(escaped: string): string {
  return escaped.replaceAll(printable(SIZE_HINT), SIZE_HINT);
}

/** qemu-io's line for a file that did not open. */
export function cantOpenLine(err: unknown, name: string): string {
  return `${QEMU_IO}: can't open device ${printable(name)}: ${withQemuLines(qemuOpenReason(err, name))}`;
}

/** qemu-io's line for any other failure. */
export function errorLine(err: unknown): string {
  return `${QEMU_IO}: ${withQemuLines(reason(err))}`;
}
