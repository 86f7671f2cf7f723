import { cacheVfs, jobVfs, openOn, rulesIn } from './common.js';
/** Checks what qemu-img checks before opening the image (its messages). */
export function benchPlanErrors(o) {
    const flushInterval = o.flushInterval ?? 0;
    if (!o.write && flushInterval)
        return '--flush-interval is only available in write tests';
    if (flushInterval && flushInterval < (o.depth ?? 64))
        return 'Flush interval can\'t be smaller than depth';
    return undefined;
}
/** Runs the benchmark on `file`. */
export async function benchImage(file, options = {}) {
    const problem = benchPlanErrors(options);
    if (problem !== undefined)
        throw new RangeError(problem);
    const depth = options.depth ?? 64;
    // qemu-img accepts -d 0 and then waits forever for requests it never sends.
    if (!Number.isSafeInteger(depth) || depth < 1)
        throw new RangeError('Invalid queue depth specified');
    const bufferSize = options.bufferSize ?? 4096;
    const write = options.write ?? false;
    const vfs = cacheVfs(jobVfs(options), options);
    const image = await openOn(vfs, file, {
        format: options.format, readOnly: !write, backingProbe: options.backingProbe, ...rulesIn(options),
    });
    try {
        const plan = {
            write,
            count: options.count ?? 75000,
            depth,
            bufferSize,
            step: options.step || bufferSize,
            offset: options.offset ?? 0,
            flushInterval: options.flushInterval ?? 0,
            imageSize: image.size,
        };
        options.onStart?.(plan);
        // Every request of the run reads into (or writes from) the same buffer: its contents are never
        // looked at, and DEPTH buffers of up to 2 GiB each (qemu-img's) would be a huge allocation.
        if (plan.count > 0 && plan.offset + bufferSize > image.size) {
            throw new Error(`Failed request: ${file}: request [${plan.offset}, ${plan.offset + bufferSize}) reaches past `
                + `the end of the image (${image.size} bytes)`);
        }
        const buf = new Uint8Array(plan.count > 0 ? bufferSize : 0).fill(options.pattern ?? 0);
        const started = performance.now();
        await runRequests(image, plan, buf, options.drainOnFlush ?? true);
        const seconds = (performance.now() - started) / 1000;
        return { ...plan, seconds };
    }
    finally {
        await image.close();
    }
}
/** qemu-img's bench_cb loop: submit up to `depth`, and after each completion decide whether to flush or submit more. */
function runRequests(image, plan, buf, drainOnFlush) {
    return new Promise((resolve, reject) => {
        let n = plan.count;
        let inFlight = 0;
        let inFlush = false;
        let offset = plan.offset;
        let failed = false;
        const undrainedFlushes = [];
        const fail = (what) => (err) => {
            if (failed)
                return;
            failed = true;
            reject(new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`));
        };
        const finishIfDone = () => {
            if (n > 0 || inFlush || failed)
                return;
            Promise.all(undrainedFlushes).then(() => resolve(), fail('Failed flush request'));
        };
        const completed = () => {
            if (failed)
                return;
            if (inFlush) {
                // A flush with the queue drained has finished: start the next requests.
                inFlush = false;
            }
            else if (inFlight > 0) {
                const remaining = n - inFlight;
                n--;
                inFlight--;
                if (plan.flushInterval && remaining % plan.flushInterval === 0) {
                    if (inFlight === 0 || !drainOnFlush) {
                        if (drainOnFlush) {
                            inFlush = true;
                            image.flush().then(completed, fail('Failed request'));
                        }
                        else {
                            undrainedFlushes.push(image.flush().catch((err) => { fail('Failed flush request')(err); }));
                        }
                    }
                    if (drainOnFlush) {
                        finishIfDone();
                        return;
                    }
                }
            }
            while (n > inFlight && inFlight < plan.depth) {
                const at = offset;
                inFlight++;
                offset += plan.step;
                if (plan.imageSize > 0)
                    offset %= plan.imageSize;
                const request = plan.write ? image.write(at, buf) : image.readInto(at, buf, { sync: false });
                request.then(completed, fail('Failed request'));
            }
            finishIfDone();
        };
        completed();
    });
}
