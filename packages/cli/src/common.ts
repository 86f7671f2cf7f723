/** Helpers shared by the commands: opening images with CLI options, files, signals. */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { isBlockError, type Image } from '@blk/core';
import { cliOpenOptions, type BackingRules, type CliOpenOptions } from './jobs/common.js';
import { warn } from './errors.js';
import { openImage } from './images.js';
import { ownerMayRead } from './owner-rule.js';
import { isRemoteUrl } from '@blk/http';

export { CHUNK, backingPolicy, type CliOpenOptions } from './jobs/common.js';

/** The backing-rule flags as commander hands them over (--backing-dir DIR..., --forbid-backing). */
export interface BackingRuleFlags {
  backingDir?: string[];
  forbidBacking?: boolean;
}

/**
 * The flags as the jobs' BackingRules. Without --backing-dir or
 * --forbid-backing, the default rule applies: an image may name only files
 * its owner can read (owner-rule.ts).
 */
export function rulesOf(opts: BackingRuleFlags): BackingRules {
  const explicit = opts.forbidBacking === true || (opts.backingDir?.length ?? 0) > 0;
  return {
    backingDirs: opts.backingDir,
    forbidBacking: opts.forbidBacking,
    approve: explicit ? undefined : ownerMayRead,
    allowOrigins: localImagesMayNameUrls,
  };
}

/**
 * blk's origin rule: a local image may name a URL (an overlay over a remote base, `blk create -b
 * http://...`; the owner rule refuses it for another user's image); a remote image names only files
 * below its own directory on its own origin (the core's default).
 */
export function localImagesMayNameUrls(imageOrigin: string): boolean {
  return imageOrigin === 'local';
}

/** Opens an image as the CLI's options say. */
export async function openCli(path: string, o: CliOpenOptions): Promise<Image> {
  return openImage(path, cliOpenOptions({ onWarning: warn, ...o }));
}

/** Bytes the file occupies on disk (st_blocks * 512), as qemu-img's actual-size. */
export function allocatedBytes(path: string): number | undefined {
  try {
    const st = fs.statSync(path, { bigint: true });
    return Number(st.blocks * 512n);
  } catch {
    return undefined;
  }
}

/** Whole seconds of a file's mtime (floored from nanoseconds), or undefined when it is absent. */
export function mtimeSec(path: string): number | undefined {
  try {
    return Number(fs.statSync(path, { bigint: true }).mtimeNs / 1_000_000_000n);
  } catch {
    return undefined;
  }
}

/**
 * A backing file named on the command line, as qemu-img resolves it: a
 * relative name is relative to the directory of the image that will refer
 * to it, not to the current directory.
 */
export function resolveBackingArg(imagePath: string, backing: string): string {
  if (nodePath.isAbsolute(backing) || isRemoteUrl(backing)) return backing;
  return nodePath.resolve(nodePath.dirname(nodePath.resolve(imagePath)), backing);
}

/**
 * Runs `cleanup` (synchronously) if the process is interrupted by SIGINT,
 * SIGTERM or SIGHUP, then exits with 128 + the signal number. Returns a
 * function that removes the handlers.
 */
export function onInterrupt(cleanup: () => void): () => void {
  const handlers = INTERRUPTS.map(([sig, num]) => {
    const handler = () => {
      try {
        cleanup();
      } finally {
        process.stderr.write(`blk: interrupted by ${sig}\n`);
        process.exit(128 + num);
      }
    };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) process.off(sig, handler);
  };
}

/**
 * For a job that writes under a temporary name (convert, dd): while it
 * exists, SIGINT, SIGTERM or SIGHUP remove it before exiting. Pass
 * `onTempFile` to the job; call `off` when the job has settled.
 */
export function removeTempOnInterrupt(controller?: AbortController): {
  onTempFile: (path: string | undefined) => void;
  off: () => void;
  signal: AbortSignal | undefined;
} {
  let tmp: string | undefined;
  const off = onInterrupt(() => {
    // The job stops between two of its steps (its `signal`), though the exit below comes first.
    controller?.abort(new Error('interrupted'));
    if (tmp === undefined) return;
    try {
      fs.unlinkSync(tmp);
    } catch {
      // Already gone.
    }
  });
  return {
    onTempFile: (path) => {
      tmp = path;
    },
    off,
    signal: controller?.signal,
  };
}

const INTERRUPTS: ReadonlyArray<[NodeJS.Signals, number]> = [
  ['SIGINT', 2],
  ['SIGTERM', 15],
  ['SIGHUP', 1],
];

/**
 * For a job that stops cleanly when aborted and leaves what a re-run
 * finishes (commit, rebase): SIGINT, SIGTERM or SIGHUP abort `controller`,
 * and the job stops between two of its runs; a second signal exits at once
 * (128 + its number). `interrupted()` names the first signal (undefined:
 * none came); `off` removes the handlers.
 */
export function abortOnInterrupt(controller: AbortController): {
  signal: AbortSignal;
  interrupted: () => { name: NodeJS.Signals; exitCode: number } | undefined;
  off: () => void;
} {
  let first: { name: NodeJS.Signals; exitCode: number } | undefined;
  const handlers = INTERRUPTS.map(([sig, num]) => {
    const handler = () => {
      if (first !== undefined) {
        process.stderr.write(`blk: interrupted by ${sig}\n`);
        process.exit(128 + num);
      }
      first = { name: sig, exitCode: 128 + num };
      controller.abort(new Error(`interrupted by ${sig}`));
    };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return {
    signal: controller.signal,
    interrupted: () => first,
    off: () => {
      for (const [sig, handler] of handlers) process.off(sig, handler);
    },
  };
}

/**
 * Runs `job` with SIGINT, SIGTERM and SIGHUP wired to its AbortSignal (see
 * abortOnInterrupt). Returns undefined when it finished, or the exit code
 * (128 + the signal's number, after `blk: interrupted by SIG...`) when a
 * signal stopped it; its other failures are thrown.
 */
export async function runInterruptible(job: (signal: AbortSignal) => Promise<unknown>): Promise<number | undefined> {
  const guard = abortOnInterrupt(new AbortController());
  try {
    await job(guard.signal);
    return undefined;
  } catch (err) {
    const sig = guard.interrupted();
    if (sig === undefined || !isBlockError(err, 'aborted')) throw err;
    process.stderr.write(`blk: interrupted by ${sig.name}\n`);
    return sig.exitCode;
  } finally {
    guard.off();
  }
}
