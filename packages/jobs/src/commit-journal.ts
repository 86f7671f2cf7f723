/**
 * The commit journal: blk's own record, kept beside the overlay while a
 * commit is under way, that it began committing this overlay into this
 * backing file.
 *
 * Why a file of our own. A commit marks the overlay through its driver's
 * commit marker (cow records backing mtime 0, so that nothing opens it while
 * its backing file changes), and a
 * re-run after an interruption must then skip the "backing file was modified"
 * check: the modification is the commit's own. But a header is data from
 * whoever made the image: anyone can write a mark into one. If the mark
 * alone let commit skip its check, a stranger's overlay could make `blk
 * commit` write into any file it names. The journal is written by blk before
 * the mark and names both files by their real paths and inode numbers, which
 * an image made elsewhere cannot know; only a journal that matches both files
 * lets a re-run resume. (Inodes, not device numbers: those can change across
 * the reboot that follows a crash.)
 *
 * Everything goes through the job's Vfs, so the crash tests cover it too.
 */
import {
  BlockError,
  isBlockError,
  type BackingFacts,
  type Image,
  type Storage,
  type Vfs,
  flushStorage,
  gatherBackingFacts,
  truncateTo,
  writeTo,
} from '@blk/core/portable';

/** Appended to the overlay's real path: `disk.cow.blk-commit`. */
export const JOURNAL_SUFFIX = '.blk-commit';

/** Journals are a few hundred bytes; a larger file is not one of ours. */
const MAX_JOURNAL_BYTES = 64 * 1024;

/** A file as the journal names it. */
export interface JournalFile {
  /** Canonical absolute path (every symlink resolved). */
  path: string;
  /** Inode number, when the Vfs knows file identities (hosts do). */
  ino?: string;
}

export interface CommitJournal {
  blkCommitJournal: 1;
  overlay: JournalFile;
  backing: JournalFile;
  /** The backing path as stored in the overlay. */
  stored: string;
  /** The backing file as the core saw it when the commit began (for diagnostics; never compared). */
  facts?: BackingFacts;
}

/** The overlay and backing file of a commit, as a journal names them. */
export interface CommitFiles {
  overlay: JournalFile;
  backing: JournalFile;
  stored: string;
}

async function describeFile(vfs: Vfs, path: string): Promise<JournalFile> {
  const real = await vfs.realpath(path).catch(() => vfs.resolve(vfs.cwd(), path));
  const st = await vfs.stat(real).catch(() => undefined);
  const file: JournalFile = { path: real };
  const ino = st?.id?.slice(st.id.lastIndexOf(':') + 1);
  if (ino !== undefined && ino !== '') file.ino = ino;
  return file;
}

/** The two files of a commit, named as a journal names them. */
export async function commitFiles(vfs: Vfs, overlay: string, backing: string, stored: string): Promise<CommitFiles> {
  return { overlay: await describeFile(vfs, overlay), backing: await describeFile(vfs, backing), stored };
}

/** Where the journal of `files.overlay` lives. */
export function journalPath(files: CommitFiles): string {
  return `${files.overlay.path}${JOURNAL_SUFFIX}`;
}

function sameFile(a: JournalFile, b: JournalFile): boolean {
  return a.path === b.path && a.ino === b.ino;
}

/** True when `journal` was written for exactly these files. */
export function journalMatches(journal: CommitJournal | undefined, files: CommitFiles): boolean {
  return (
    journal !== undefined
    && journal.stored === files.stored
    && sameFile(journal.overlay, files.overlay)
    && sameFile(journal.backing, files.backing)
  );
}

/**
 * Reads the journal beside the overlay; undefined when there is none or it is
 * not one of blk's. It sits where an image's maker can put files too: only a
 * regular file is read (a FIFO there would block the open forever; a
 * symlink would read someone else's file).
 */
export async function readJournal(vfs: Vfs, files: CommitFiles): Promise<CommitJournal | undefined> {
  const where = journalPath(files);
  const st = await vfs.lstat(where).catch(() => undefined);
  if (!st?.isFile) return undefined;
  let storage: Storage;
  try {
    storage = await vfs.open(where, { readOnly: true });
  } catch {
    return undefined;
  }
  try {
    const size = await storage.size();
    if (size > MAX_JOURNAL_BYTES) return undefined;
    const bytes = new Uint8Array(size);
    await storage.read(0, bytes);
    const parsed: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    return isJournal(parsed) ? parsed : undefined;
  } catch {
    return undefined; // torn, empty or not ours: proves nothing
  } finally {
    await storage.close().catch(() => undefined);
  }
}

function isFileRef(value: unknown): value is JournalFile {
  const v = value as Partial<JournalFile> | null;
  return (
    typeof v === 'object'
    && v !== null
    && typeof v.path === 'string'
    && (v.ino === undefined || typeof v.ino === 'string')
  );
}

function isJournal(value: unknown): value is CommitJournal {
  const v = value as Partial<CommitJournal> | null;
  return (
    typeof v === 'object'
    && v !== null
    && v.blkCommitJournal === 1
    && isFileRef(v.overlay)
    && isFileRef(v.backing)
    && typeof v.stored === 'string'
  );
}

/**
 * Writes and flushes a new journal: it must be durable before the overlay is
 * marked. Whatever is at its name goes first (a stale journal, or a symlink
 * an image's maker put there to have blk truncate another file), and the
 * journal is created exclusively, so nothing is followed.
 */
export async function writeJournal(vfs: Vfs, files: CommitFiles, facts: BackingFacts): Promise<void> {
  const journal: CommitJournal = { blkCommitJournal: 1, ...files, facts };
  const bytes = new TextEncoder().encode(`${JSON.stringify(journal)}\n`);
  await removeJournal(vfs, files);
  const where = journalPath(files);
  let storage: Storage;
  try {
    storage = await vfs.open(where, { create: true, exclusive: true });
  } catch (err) {
    // Still there after the removal: a directory (or a file blk may not remove) stands at the journal's name.
    if (!isBlockError(err) || err.code !== 'EEXIST') throw err;
    throw new BlockError(
      'invalid-argument',
      'stands where commit writes its journal and is not one blk can replace '
        + '(a directory?); move it away to commit',
      { path: where },
    );
  }
  try {
    await writeTo(storage, 0, bytes);
    await flushStorage(storage);
  } finally {
    await storage.close();
  }
}

/** Removes the journal once the commit is recorded in the overlay (absent already: fine). */
export async function removeJournal(vfs: Vfs, files: CommitFiles): Promise<void> {
  await vfs.remove(journalPath(files)).catch(() => undefined);
}

/**
 * Step 2 of a commit, shared by commit and commit -b: the journal (flushed,
 * its directory entry synced), then the top's commit mark. Every state that
 * has the mark has the journal, so a stop from here on can be finished.
 */
export async function journalThenMark(
  vfs: Vfs,
  files: CommitFiles,
  basePath: string,
  base: Image,
  top: Image,
  syncDirectory: ((dir: string) => void | Promise<void>) | undefined,
): Promise<void> {
  await writeJournal(vfs, files, await gatherBackingFacts(vfs, basePath, base));
  await syncDirectory?.(vfs.dirname(journalPath(files)));
  await top.markCommitInProgress();
  await top.flush();
}

/** Grows the file at `path` to `size` bytes and makes that durable (the base, closed meanwhile, of a commit into a smaller base). */
export async function growFile(vfs: Vfs, path: string, size: number): Promise<void> {
  const storage = await vfs.open(path, { readOnly: false });
  try {
    await truncateTo(storage, size);
    await flushStorage(storage);
  } finally {
    await storage.close();
  }
}
