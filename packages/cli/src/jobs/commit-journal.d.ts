/**
 * The commit journal: blk's own record, kept beside the overlay while a
 * commit is under way, that it began committing this overlay into this
 * backing file.
 *
 * Why a file of our own. A commit marks the overlay by recording backing
 * mtime 0 (so that nothing opens it while its backing file changes), and a
 * re-run after an interruption must then skip the "backing file was modified"
 * check: the modification is the commit's own. But a header is data from
 * whoever made the image: anyone can write mtime 0 into one. If the mark
 * alone let commit skip its check, a stranger's overlay could make `blk
 * commit` write into any file it names. The journal is written by blk before
 * the mark and names both files by their real paths and inode numbers, which
 * an image made elsewhere cannot know; only a journal that matches both files
 * lets a re-run resume. (Inodes, not device numbers: those can change across
 * the reboot that follows a crash.)
 *
 * Everything goes through the job's Vfs, so the crash tests cover it too.
 */
import { type Vfs } from '@blk/core';
/** Appended to the overlay's real path: `disk.cow.blk-commit`. */
export declare const JOURNAL_SUFFIX = ".blk-commit";
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
    /** The backing file's size and mtime when the commit began (for diagnostics). */
    size: number;
    mtimeSec: number;
}
/** The overlay and backing file of a commit, as a journal names them. */
export interface CommitFiles {
    overlay: JournalFile;
    backing: JournalFile;
    stored: string;
}
/** The two files of a commit, named as a journal names them. */
export declare function commitFiles(vfs: Vfs, overlay: string, backing: string, stored: string): Promise<CommitFiles>;
/** Where the journal of `files.overlay` lives. */
export declare function journalPath(files: CommitFiles): string;
/** True when `journal` was written for exactly these files. */
export declare function journalMatches(journal: CommitJournal | undefined, files: CommitFiles): boolean;
/**
 * Reads the journal beside the overlay; undefined when there is none or it is
 * not one of blk's. It sits where an image's maker can put files too: only a
 * regular file is read (a FIFO there would block the open forever; a
 * symlink would read someone else's file).
 */
export declare function readJournal(vfs: Vfs, files: CommitFiles): Promise<CommitJournal | undefined>;
/**
 * Writes and flushes a new journal: it must be durable before the overlay is
 * marked. Whatever is at its name goes first (a stale journal, or a symlink
 * an image's maker put there to have blk truncate another file), and the
 * journal is created exclusively, so nothing is followed.
 */
export declare function writeJournal(vfs: Vfs, files: CommitFiles, backing: {
    size: number;
    mtimeSec: number;
}): Promise<void>;
/** Removes the journal once the commit is recorded in the overlay (absent already: fine). */
export declare function removeJournal(vfs: Vfs, files: CommitFiles): Promise<void>;
