/**
 * blk dd: qemu-img dd. Parses dd's `key=value` operands with qemu-img's
 * messages; the copy is @blk/jobs' ddImage (written under a temporary name,
 * removed if a signal interrupts it). Prints nothing on success, as qemu-img.
 */
import { removeTempOnInterrupt, rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError, warn } from '../errors.js';
import { hostJobVfs } from '../host-io.js';
import { registry } from '../images.js';
import { ddImage } from '../jobs/dd.js';
import { parseSizeResult } from '../size.js';

export interface DdOpts extends BackingRuleFlags {
  format?: string;
  outputFormat: string;
  backingProbe?: boolean;
  /** -U: read an input another process is writing. */
  forceShare?: boolean;
}

const INT_MAX = 2 ** 31 - 1;

/** qemu-img's cvtnum for an operand: a size with suffixes in [min, max], else its messages. */
function operandSize(name: string, text: string, min: number, max: number): number {
  const r = parseSizeResult(text);
  if (!r.ok && r.error === 'invalid') {
    throw new UsageError(
      `Invalid ${name} specified. You may use k, M, G, T, P or E suffixes for `
        + 'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.',
    );
  }
  if (!r.ok || r.value < min || r.value > max) {
    throw new UsageError(`Invalid ${name} specified. Must be between ${min} and ${max}.`);
  }
  return r.value;
}

export async function dd(operands: string[], opts: DdOpts): Promise<number> {
  let input: string | undefined;
  let output: string | undefined;
  let blockSize = 512;
  let count: number | undefined;
  let skip: number | undefined;
  for (const operand of operands) {
    const eq = operand.indexOf('=');
    const key = eq < 0 ? operand : operand.slice(0, eq);
    const value = operand.slice(eq + 1);
    if (eq < 0 || !['bs', 'count', 'skip', 'if', 'of'].includes(key)) {
      throw new UsageError(`unrecognized operand ${key}`);
    }
    if (key === 'if') input = value;
    else if (key === 'of') output = value;
    else if (key === 'bs') blockSize = operandSize('bs', value, 1, INT_MAX);
    else if (key === 'count') count = operandSize('count', value, 0, Number.MAX_SAFE_INTEGER);
    else skip = operandSize('skip', value, 0, Number.MAX_SAFE_INTEGER);
  }
  if (!input || !output) throw new UsageError('Must specify both input and output files');
  if (!registry.require(opts.outputFormat, output).create) {
    throw new UsageError(`format ${opts.outputFormat} cannot create images`);
  }
  // SIGINT, SIGTERM or SIGHUP: the job is aborted (it stops between chunks) and the temporary file
  // removed, then blk exits 128 + signal.
  const temp = removeTempOnInterrupt(new AbortController());
  try {
    await ddImage(input, output, {
      vfs: hostJobVfs(),
      format: opts.format,
      outputFormat: opts.outputFormat,
      blockSize,
      count,
      skip,
      backingProbe: opts.backingProbe,
      forceShare: opts.forceShare,
      ...rulesOf(opts),
      onTempFile: temp.onTempFile,
      signal: temp.signal,
      // qemu-img prints this as an error, yet copies nothing and exits 0; blk says it is a warning.
      onWarning: warn,
    });
  } finally {
    temp.off();
  }
  return 0;
}
