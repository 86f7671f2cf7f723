/** The errno text qemu-io prints after `read failed: ` and friends, as strerror() would: core's one mapping. */
import { errnoOf } from '@blk/core';

/** errno text for a failed request: a BlockError's kind, else its (or a Node error's) errno code. */
export function strerror(err: unknown): string {
  return errnoOf(err).message;
}
