/**
 * process.stdout and process.stderr made only when a command uses them. Node
 * creates each on first access, and for a pipe that means a net.Socket and
 * the stream modules: about 2 ms of CPU per stream at every start (measured
 * with both piped: `node -e 'process.stdout;process.stderr'` 68 ms against
 * `node -e 0` 63 ms, medians of 31). `blk convert` prints nothing, and `blk
 * info` prints one text: neither needs a stream object.
 */
import { writeSync } from 'node:fs';

type StdName = 'stdout' | 'stderr';

const made: Record<StdName, boolean> = { stdout: false, stderr: false };

/**
 * Calls `attach` with process[name] once the program first uses it (at once if the property is not
 * Node's lazy getter, or was used already). The getter is put back as it was: Node's own keeps the stream.
 */
export function onFirstUse(name: StdName, attach: (stream: NodeJS.WriteStream) => void): void {
  const own = Object.getOwnPropertyDescriptor(process, name);
  const getter = own?.get;
  if (own === undefined || getter === undefined || !own.configurable) {
    made[name] = true;
    attach(process[name]);
    return;
  }
  Object.defineProperty(process, name, {
    configurable: true,
    enumerable: own.enumerable ?? false,
    get() {
      Object.defineProperty(process, name, own);
      const stream = getter.call(process) as NodeJS.WriteStream;
      made[name] = true;
      attach(stream);
      return stream;
    },
  });
}

/**
 * Writes `text` to standard output: while process.stdout has not been made, with write(2) on
 * descriptor 1 (no stream object); whatever that cannot write at once (a full non-blocking pipe, a
 * closed one, any error) goes to process.stdout, in order, whose error handling (a closed pipe ends
 * quietly; anything else is reported) is blk's as for every other output.
 */
export function writeStdout(text: string): void {
  if (made.stdout) {
    process.stdout.write(text);
    return;
  }
  const bytes = Buffer.from(text, 'utf8');
  let done = 0;
  try {
    while (done < bytes.length) {
      const n = writeSync(1, bytes, done, bytes.length - done);
      if (n <= 0) break;
      done += n;
    }
  } catch {
    // EAGAIN, EPIPE, ...: the stream takes the rest and reports as it does.
  }
  if (done < bytes.length) process.stdout.write(bytes.subarray(done));
}
