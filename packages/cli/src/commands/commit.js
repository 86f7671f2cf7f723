/**
 * blk commit: qemu-img commit / uml_moo -d. The job (and its crash-safety
 * protocol) is in ../jobs/commit.ts; this module maps the options and prints.
 */
import { rulesOf } from '../common.js';
import { warn } from '../errors.js';
import { hostJobVfs } from '../host-io.js';
import { commitImage } from '../jobs/commit.js';
import { commitIntoBase } from '../jobs/commit-base.js';
import { cacheArg, syncDirectory } from './convert.js';
import { progressListener } from '../progress.js';
export async function commit(file, opts) {
    const cache = cacheArg(opts.cache);
    const job = opts.base !== undefined
        ? (f, o) => commitIntoBase(f, opts.base, o)
        : commitImage;
    await job(file, {
        vfs: hostJobVfs(),
        cache,
        format: opts.format,
        keep: opts.keep,
        force: opts.force,
        backingProbe: opts.backingProbe,
        ...rulesOf(opts),
        backingFormat: opts.backingFormat,
        onWarning: warn,
        // The journal's name must survive a power loss as its content does (the job flushes the content).
        syncDirectory: cache === 'unsafe' ? undefined : syncDirectory,
        onProgress: progressListener(Boolean(opts.progress) && !opts.quiet),
    });
    if (!opts.quiet)
        process.stdout.write('Image committed.\n');
    return 0;
}
