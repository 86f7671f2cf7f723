/**
 * What lets `reopen` put back the very file it had (QEMU keeps its descriptor until the new open
 * succeeded): blk closes the image before opening it again, so when that fails and the file was
 * deleted or replaced meanwhile, opening it again by name would lose the image or open another
 * file. Each opened file therefore keeps a spare descriptor on its inode (no lock, no I/O through
 * it), and the restore opens `/proc/self/fd/N` (the same inode, with the flags the image asks for)
 * under the file's own name. Linux only; elsewhere the restore opens the name, as before.
 */
import * as fs from 'node:fs';
import { FilterStorage, ForwardingVfs, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core';

/** A descriptor kept on an open image's file. */
export interface HeldFile {
  fd: number;
}

/**
 * A descriptor on `path` (a host file), or undefined when there is no such path or /proc to reopen
 * it through. Non-blocking: a FIFO must not stall the open.
 */
export function holdFile(path: string): HeldFile | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const { O_RDONLY, O_NONBLOCK, O_NOCTTY } = fs.constants;
    return { fd: fs.openSync(path, O_RDONLY | O_NONBLOCK | O_NOCTTY) };
  } catch {
    return undefined;
  }
}

export function releaseFile(held: HeldFile | undefined): void {
  if (held) fs.closeSync(held.fd);
}

/** The storage of the held inode, named as the file it was opened as. */
class NamedStorage extends FilterStorage {
  constructor(
    next: Storage,
    private readonly name: string,
  ) {
    super(next);
  }
  override get path(): string {
    return this.name;
  }
}

/** Opens `path` (relative or absolute) through the held descriptor; every other path as it is. */
export class HeldFileVfs extends ForwardingVfs {
  constructor(
    inner: Vfs,
    private readonly path: string,
    private readonly held: HeldFile,
  ) {
    super(inner);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const cwd = this.inner.cwd();
    if (this.inner.resolve(cwd, path) !== this.inner.resolve(cwd, this.path)) return super.open(path, options);
    return new NamedStorage(await super.open(`/proc/self/fd/${this.held.fd}`, options), path);
  }
}
