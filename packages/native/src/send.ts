/**
 * The send module of @blk/native: socket replies written by sendfile(2) on a libuv worker thread
 * (native/send.c), for @blk/nbd's zero-copy reads. Serving a page-cached image, this takes the
 * Node NBD floor server from ~0.4x to ~0.8-1.0x of nbdkit (bench/experiments/nbd-sendfile):
 * no copy of the file's bytes through the process, and no socket write on the main thread.
 * Without the addon (or one built before sendv existed), or with `enabled: false` (the blk
 * command's BLK_NATIVE_IO=off), there is nothing to offer and replies are written as before.
 */
import { loadAddon } from './addon.js';

/**
 * Sends a plan of (fd, position, length) triples to a socket from a worker thread: fd -1 is
 * bytes of `data`, -2 zeros, else a range of that file (zeros past its end). `done(errno, sent)`
 * runs on the main thread once all is sent (errno 0) or something stopped it; the returned
 * function cancels a job waiting for the socket (ECANCELED). The caller writes nothing else to
 * the socket meanwhile and keeps the files open until `done`.
 */
export interface SocketSender {
  sendv(sockFd: number, data: Uint8Array, plan: Float64Array, done: (errno: number, sent: number) => void): () => void;
}

export interface NativeSendOptions {
  /** false: offer nothing (the blk command passes BLK_NATIVE_IO=off as false). Default true. */
  enabled?: boolean;
  /** Another build of the addon to load (see `loadAddon`). */
  addon?: string;
}

/** The addon's sendv, or undefined (no addon, an addon without it, not Linux, or `enabled: false`). */
export function nativeSocketSender(options: NativeSendOptions = {}): SocketSender | undefined {
  if (options.enabled === false || process.platform !== 'linux') return undefined;
  const addon = loadAddon(options.addon);
  // An addon built from an older checkout (install script not re-run) lacks them.
  const sendv = addon?.sendv?.bind(addon);
  const cancel = addon?.cancel?.bind(addon);
  if (typeof sendv !== 'function' || typeof cancel !== 'function') return undefined;
  return {
    sendv(sockFd, data, plan, done) {
      const job = sendv(sockFd, data, plan, done);
      return () => cancel(job);
    },
  };
}
