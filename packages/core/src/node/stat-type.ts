import * as fs from 'node:fs';
import { BlockError } from '../errors.js';
import { fileTypeName, type FileType } from '../storage/storage.js';

/** A node's type from fs.Stats. */
export function typeOfStats(st: fs.Stats | fs.BigIntStats): FileType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isCharacterDevice()) return 'char-device';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** The type of what `path` names now, or undefined when it cannot be stat'ed. */
export function nodeTypeOf(path: string): FileType | undefined {
  try {
    return typeOfStats(fs.statSync(path));
  } catch {
    return undefined;
  }
}

/** The `special-file` error for a path that is no image file. */
export function specialFile(
  path: string,
  type: FileType | undefined,
  devicesAllowed: boolean,
  cause?: unknown,
): BlockError {
  const what = fileTypeName(type);
  const wanted = devicesAllowed ? 'a regular file or a block device' : 'a regular file';
  return new BlockError('special-file', `is ${what.startsWith('not') ? 'something else' : what}, not ${wanted}`, {
    path,
    cause,
  });
}
