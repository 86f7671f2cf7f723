/**
 * The bench job (blk bench, qemu-img bench): COUNT requests of BUFFER_SIZE
 * bytes each, DEPTH of them in flight at once on the image, the first at
 * OFFSET and each next one STEP further (wrapping at the end of the image,
 * as qemu-img does). A write test can flush every FLUSH_INTERVAL requests,
 * after draining the queue (qemu-img's default) or not (`drainOnFlush:
 * false`).
 *
 * The scheduling is qemu-img's bench_cb, completion by completion, so that
 * the same options issue the same requests in the same order; the requests
 * go through the Image API (the format's driver, the backing chain, the
 * request tracker) on storage whose every call runs on the thread pool, so
 * that DEPTH requests really are in flight together.
 */
import type { Image } from '@blk/core';
import { cacheVfs, jobVfs, openOn, rulesIn, type JobOptions } from './common.js';

export interface BenchOptions extends JobOptions {
  /** The image's format (probed when absent). */
  format?: string;
  /** Write requests (-w) instead of reads. */
  write?: boolean;
  /** Number of requests (-c; qemu-img's default 75000). */
  count?: number;
  /** Requests in flight at once (-d; default 64). */
  depth?: number;
  /** Bytes per request (-s; default 4096). */
  bufferSize?: number;
  /** Distance between the offsets of consecutive requests (-S; default: bufferSize). */
  step?: number;
  /** Offset of the first request (-o; default 0). */
  offset?: number;
  /** Byte written by a write test (--pattern; default 0). */
  pattern?: number;
  /** Write tests: flush whenever the number of remaining requests is a multiple of this (--flush-interval). */
  flushInterval?: number;
  /** Drain the queue before each flush (default); false: flush with requests in flight (--no-drain). */
  drainOnFlush?: boolean;
  /** Called once the image is open, before the first request, with what will be sent. */
  onStart?: (plan: BenchPlan) => void;
}

export interface BenchPlan {
  write: boolean;
  count: number;
  depth: number;
  bufferSize: number;
  step: number;
  offset: number;
  flushInterval: number;
  imageSize: number;
}

export interface BenchResult extends BenchPlan {
  /** Wall time of the run, from the first request to the last completion. */
  seconds: number;
}

/** Checks what qemu-img checks before opening the image (its messages). */
export function benchPlanErrors(o: BenchOptions): string | undefined {
  const flushInterval = o.flushInterval ?? 0;
  if (!o.write && flushInterval) return '--flush-interval is only available in write tests';
  if (flushInterval && flushInterval < (o.depth ?? 64)) return "Flush interval can't be smaller than depth";
  return undefined;
}

/** Runs the benchmark on `file`. */
export async function benchImage(file: string, options: BenchOptions = {}): Promise<BenchResult> {
  const problem = benchPlanErrors(options);
  if (problem !== undefined) throw new RangeError(problem);
  const depth = options.depth ?? 64;
  // qemu-img accepts -d 0 and then waits forever for requests it never sends.
  if (!Number.isSafeInteger(depth) || depth < 1) throw new RangeError('Invalid queue depth specified');
  const bufferSize = options.bufferSize ?? 4096;
  const write = options.write ?? false;
  const vfs = cacheVfs(jobVfs(options), options);
  const image = await openOn(vfs, file, {
    format: options.format,
    readOnly: !write,
    backingProbe: options.backingProbe,
    ...rulesIn(options),
  });
  try {
    const plan: BenchPlan = {
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
      throw new Error(
        `Failed request: ${file}: request [${plan.offset}, ${plan.offset + bufferSize}) reaches past `
          + `the end of the image (${image.size} bytes)`,
      );
    }
    const buf = new Uint8Array(plan.count > 0 ? bufferSize : 0).fill(options.pattern ?? 0);
    const started = performance.now();
    await runRequests(image, plan, buf, options.drainOnFlush ?? true);
    const seconds = (performance.now() - started) / 1000;
    return { ...plan, seconds };
  } finally {
    await image.close();
  }
}

/** qemu-img's bench_cb loop: submit up to `depth`, and after each completion decide whether to flush or submit more. */
function runRequests(image: Image, plan: BenchPlan, buf: Uint8Array, drainOnFlush: boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let n = plan.count;
    let inFlight = 0;
    let inFlush = false;
    let offset = plan.offset;
    let failed = false;
    const undrainedFlushes: Array<Promise<void>> = [];
    const fail = (what: string) => (err: unknown) => {
      if (failed) return;
      failed = true;
      reject(new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`));
    };
    const finishIfDone = () => {
      if (n > 0 || inFlush || failed) return;
      Promise.all(undrainedFlushes).then(() => resolve(), fail('Failed flush request'));
    };
    const completed = () => {
      if (failed) return;
      if (inFlush) {
        // A flush with the queue drained has finished: start the next requests.
        inFlush = false;
      } else if (inFlight > 0) {
        const remaining = n - inFlight;
        n--;
        inFlight--;
        if (plan.flushInterval && remaining % plan.flushInterval === 0) {
          if (inFlight === 0 || !drainOnFlush) {
            if (drainOnFlush) {
              inFlush = true;
              image.flush().then(completed, fail('Failed request'));
            } else {
              undrainedFlushes.push(
                image.flush().catch((err: unknown) => {
                  fail('Failed flush request')(err);
                }),
              );
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
        if (plan.imageSize > 0) offset %= plan.imageSize;
        const request = plan.write ? image.write(at, buf) : image.readInto(at, buf, { sync: false });
        request.then(completed, fail('Failed request'));
      }
      finishIfDone();
    };
    completed();
  });
}
