/**
 * blk bench: qemu-img bench. The job is ../jobs/bench.ts; this module checks
 * the options with qemu-img's messages and prints its two lines:
 *   Sending 100 read requests, 4096 bytes each, 4 in parallel (starting at offset 0, step size 4096)
 *   Run completed in 0.012 seconds.
 * (qemu-img 7.2 prints them even with -q; so does blk.)
 */
import { rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError } from '../errors.js';
import { hostPoolVfs } from '../host-io.js';
import { benchImage, benchPlanErrors } from '../jobs/bench.js';
import { parseSizeResult, parseUnsigned } from '../size.js';
import { cacheArg } from './convert.js';

export interface BenchOpts extends BackingRuleFlags {
  count?: string;
  depth?: string;
  format?: string;
  flushInterval?: string;
  /** false with --no-drain. */
  drain: boolean;
  native?: boolean;
  aio?: string;
  offset?: string;
  pattern?: string;
  bufferSize?: string;
  stepSize?: string;
  cache?: string;
  write?: boolean;
  backingProbe?: boolean;
}

const INT_MAX = 2 ** 31 - 1;

/** qemu-img's cvtnum_full: a size with suffixes between 0 and `max`, else its messages. */
function sizeArg(text: string | undefined, what: string, max: number): number | undefined {
  if (text === undefined) return undefined;
  const r = parseSizeResult(text);
  if (!r.ok && r.error === 'invalid') {
    throw new UsageError(
      `Invalid ${what} specified. You may use k, M, G, T, P or E suffixes for `
        + 'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.',
    );
  }
  if (!r.ok || r.value > max) throw new UsageError(`Invalid ${what} specified. Must be between 0 and ${max}.`);
  return r.value;
}

function unsignedArg(text: string | undefined, message: string, max = INT_MAX): number | undefined {
  if (text === undefined) return undefined;
  const value = parseUnsigned(text, max);
  if (value === undefined) throw new UsageError(message);
  return value;
}

export async function bench(file: string, opts: BenchOpts): Promise<number> {
  const count = unsignedArg(opts.count, 'Invalid request count specified');
  const depth = unsignedArg(opts.depth, 'Invalid queue depth specified');
  // qemu-img takes -d 0 and then waits forever for requests it never sends.
  if (depth === 0) throw new UsageError('Invalid queue depth specified (at least 1 request must be in flight)');
  const flushInterval = unsignedArg(opts.flushInterval, 'Invalid flush interval specified');
  const pattern = unsignedArg(opts.pattern, 'Invalid pattern byte specified', 0xff);
  const bufferSize = sizeArg(opts.bufferSize, 'buffer size', INT_MAX);
  const step = sizeArg(opts.stepSize, 'step_size', INT_MAX);
  const offset = sizeArg(opts.offset, 'offset', Number.MAX_SAFE_INTEGER);
  if (opts.aio !== undefined && !['threads', 'native', 'io_uring'].includes(opts.aio)) {
    throw new UsageError(`Invalid aio option: ${opts.aio}`);
  }
  // blk's requests run on libuv's thread pool: qemu-img's aio=threads. It has no Linux AIO or io_uring.
  if (opts.native || (opts.aio !== undefined && opts.aio !== 'threads')) {
    const which = opts.native ? '-n (native AIO)' : `aio=${opts.aio}`;
    throw new UsageError(`${which} is not supported: blk's requests run on the thread pool (-i threads, the default)`);
  }
  const cache = cacheArg(opts.cache);
  const options = {
    vfs: hostPoolVfs(),
    cache,
    format: opts.format,
    write: Boolean(opts.write),
    count,
    depth,
    bufferSize,
    step,
    offset,
    pattern,
    flushInterval,
    drainOnFlush: opts.drain,
    backingProbe: opts.backingProbe,
    ...rulesOf(opts),
    onStart: (p: {
      write: boolean;
      count: number;
      bufferSize: number;
      depth: number;
      offset: number;
      step: number;
    }) => {
      process.stdout.write(
        `Sending ${p.count} ${p.write ? 'write' : 'read'} requests, ${p.bufferSize} bytes each, `
          + `${p.depth} in parallel (starting at offset ${p.offset}, step size ${p.step})\n`,
      );
      if (flushInterval) process.stdout.write(`Sending flush every ${flushInterval} requests\n`);
    },
  };
  const problem = benchPlanErrors(options);
  if (problem !== undefined) throw new UsageError(problem);
  const result = await benchImage(file, options);
  process.stdout.write(`Run completed in ${result.seconds.toFixed(3)} seconds.\n`);
  return 0;
}
