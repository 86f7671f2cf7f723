/**
 * blk rebase: qemu-img rebase. The job (safe mode's copy, -u's header-only
 * rewrite, and what an interruption leaves) is in ../jobs/rebase.ts.
 */
import { rulesOf } from '../common.js';
import { rebaseImage } from '../jobs/rebase.js';
import { progressListener } from '../progress.js';
export async function rebase(file, opts) {
    await rebaseImage(file, {
        oldBackingFormat: opts.oldBackingFormat,
        format: opts.format,
        backing: opts.backing,
        backingFormat: opts.backingFormat,
        unsafe: opts.unsafe,
        backingProbe: opts.backingProbe,
        ...rulesOf(opts),
        onProgress: progressListener(Boolean(opts.progress) && !opts.quiet),
    });
    return 0;
}
