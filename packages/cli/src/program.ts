/**
 * The `blk` program: its commands and options as commander takes them
 * (src/blk.ts runs it). Each command's module (and the image formats) is
 * imported when that command runs.
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { ExitError, setCommandContext } from './errors.js';
import { unknownCommandMessage } from './unknown-command.js';
import { printable } from './printable.js';
import { allowBackingDevices } from './backing-devices.js';
import { IMAGE_OPERANDS, applyImageOperands, hasNamedOptions } from './image-operands.js';

/** Exit code of a usage error or a failure, per command (qemu-img's conventions). */
export const FAILURE_CODE: Record<string, number> = { compare: 2 };

/** The package's version, put in by the bin's build (tsup.bin.config.ts): no package.json is read at start. */
declare const __BLK_VERSION__: string | undefined;

function packageVersion(): string {
  if (typeof __BLK_VERSION__ === 'string') return __BLK_VERSION__;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const SOURCE_CACHE_HELP =
  "cache mode of the images only read, as qemu-img's -T (checked; blk reads through the host's page cache in every mode)";

const CACHE_HELP =
  'cache mode of the written image: writeback (default: flush at the end), unsafe (never flush); '
  + 'none, writethrough and directsync act as writeback';

/**
 * A repeatable option's values. Commander hands back what the previous call returned: the first call
 * copies the default (never changed, it may be shared), later ones append, so 20000 `-c` commands cost
 * 20000 appends rather than 20000 copies of a growing array.
 */
const collected = new WeakSet<string[]>();
const collect = (value: string, previous: string[]): string[] => {
  if (collected.has(previous)) {
    previous.push(value);
    return previous;
  }
  const values = [...previous, value];
  collected.add(values);
  return values;
};

const outputOption = () => new Option('--output <format>', 'output format').choices(['human', 'json']).default('human');
const formatOption = () => new Option('-f, --format <fmt>', 'image format (probed from the content when omitted)');
const forceShareOption = () =>
  new Option(
    '-U, --force-share',
    'read the image even while another process writes it (takes no conflicting lock; warns, as what is read may be inconsistent)',
  );
/** The image's direct backing file's format: cow records none, and a cow under a cow must be named. */
const imageBackingFormatOption = (flags = '-F, --backing-format <fmt>') =>
  new Option(flags, "format of the image's backing file (default: the format the image records, else raw)");
const backingProbeOption = () =>
  new Option(
    '--backing-probe',
    "guess backing files' formats from their content (trusted images only; default: the format the image records, else raw)",
  );
const backingDevicesOption = () =>
  new Option(
    '--backing-devices',
    'let images name block devices as backing files (your own images only, e.g. a UML COW file over /dev/sdX)',
  );

// What the user allows of backing files named inside images (see "Images from strangers" in the README).
const backingDirOption = () =>
  new Option(
    '--backing-dir <dir>',
    'open backing files named inside images only if they '
      + 'lie in DIR, also after following symlinks (repeatable; for images you did not make)',
  )
    .argParser(collect)
    .default([] as string[], 'anywhere');
const forbidBackingOption = () => new Option('--forbid-backing', 'refuse images that name a backing file');

/** Wraps a lazily imported command so that its result becomes the exit code. */
function run<A extends unknown[]>(load: () => Promise<(...args: A) => Promise<number>>) {
  return async (...args: A) => {
    const fn = await load();
    process.exitCode = await fn(...args);
  };
}

let current = '';

/** The command being run, once commander has chosen it ('' before). */
export const currentCommand = (): string => current;

/** The commands of `blk`, as the program registers them. */
export const COMMAND_NAMES: readonly string[] = [
  'create',
  'info',
  'snapshot',
  'serve',
  'map',
  'convert',
  'commit',
  'rebase',
  'compare',
  'check',
  'resize',
  'measure',
  'amend',
  'bench',
  'dd',
  'io',
];

/**
 * The program, with every command, or with just `only` (the command being run: its own options,
 * help and errors are all it needs). Commander's work for each command's options is about a third
 * of what a short command such as `blk info` costs above Node's own start; without `only`
 * (`blk --help`, an unknown command, an option before the command) every command is there.
 */
export function buildProgram(only?: string): Command {
  const wanted = (name: string) => only === undefined || only === name;
  const program = new Command();
  program
    .name('blk')
    .usage('[-V] [-h] COMMAND [options]')
    .description(
      'Create, inspect, convert and modify disk images of every registered format\n'
        + "(qemu-img's commands and options; `blk io` is qemu-io).",
    )
    .version(`blk version ${packageVersion()}`, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'print this help and exit')
    .exitOverride()
    .configureOutput({
      // Commander quotes what the user typed (an option, a command name): escape
      // control bytes in every line, keeping commander's own line breaks.
      outputError: (str, write) =>
        write(
          `blk: ${str
            .replace(/^error: /, '')
            .split('\n')
            .map(printable)
            .join('\n')}`,
        ),
    })
    .showSuggestionAfterError(true)
    .hook('preSubcommand', (_cmd, sub) => {
      current = sub.name();
    })
    .hook('preAction', async (_cmd, action) => {
      if (action.opts().backingDevices === true) allowBackingDevices();
      setCommandContext(action.name(), action.opts(), action.args);
      // json: names and --image-opts strings become the paths and options they name.
      if (hasNamedOptions(action)) await applyImageOperands(action);
    })
    .on('command:*', (operands: string[]) => {
      // qemu-img's "Command not found" (exit 1), naming the nearest thing blk has.
      const name = operands[0] ?? '';
      process.stderr.write(
        `blk: ${unknownCommandMessage(
          name,
          program.commands.map((c) => c.name()),
        )}\nTry 'blk --help' for more information\n`,
      );
      throw new ExitError(1);
    })
    .addHelpText(
      'after',
      `
Sizes and offsets take qemu's suffixes: 512, 64k, 10M, 1.5G, 2T, 1P, 1E
(k/K = KiB, powers of 1024; plain numbers are bytes).

Environment:
  BLK_DEBUG=1         show stack traces with errors
  BLK_LOCK=off        open images without OS advisory locks (=require: fail without the addon)
  BLK_NATIVE_IO=off   use Node's fs calls instead of the @blk/native addon's pread/pwrite
                      (slower; raw images then report no holes)

Run 'blk COMMAND --help' for a command's options.`,
    );

  if (wanted('create')) {
    program
      .command('create')
      .description('create a new image (an empty disk, or an overlay on a backing file)')
      .usage('[-q] [-f FMT] [-b BACKING [-F BACKING_FMT]] [-o OPTIONS] FILE [SIZE]')
      .addOption(new Option('-f, --format <fmt>', 'format of the new image').default('raw'))
      .option('-b, --backing <file>', "backing file (relative names are relative to FILE's directory)")
      .option('-F, --backing-format <fmt>', 'format of the backing file (default raw)')
      .option(
        '-o, --options <list>',
        'format options, comma-separated key=value (repeatable): '
          + 'version=3|2|1 or variant=NAME for cow, preallocation=off|metadata|falloc|full; -o help lists them',
        collect,
        [],
      )
      .option('-q, --quiet', 'print nothing on success')
      .argument('[file]', 'image to create (an existing file is replaced, as qemu-img does)')
      .argument('[size]', "virtual size (default: the backing file's size)")
      .action(run(async () => (await import('./commands/create.js')).create));
  }

  if (wanted('info')) {
    program
      .command('info')
      .description("show an image's format, sizes, backing file and format-specific facts")
      .usage('[-f FMT] [-F BACKING_FMT] [--output=human|json] [--backing-chain] [-U] FILE')
      .addOption(formatOption())
      .addOption(imageBackingFormatOption())
      .addOption(outputOption())
      .option('--backing-chain', 'show every image of the backing chain')
      .addOption(backingProbeOption())
      .addOption(backingDevicesOption())
      .addOption(forceShareOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .argument('<file>')
      .action(run(async () => (await import('./commands/info.js')).info));
  }

  if (wanted('snapshot')) {
    program
      .command('snapshot')
      .description(
        'list, create, apply (revert to) or delete the internal snapshots of an image (qcow2), as qemu-img snapshot',
      )
      .usage('[-l | -c NAME | -a NAME|ID | -d NAME] [-f FMT] [-q] [-U] FILE')
      .addOption(formatOption())
      .option('-l, --list', 'list the snapshots (the default)')
      .option('-c, --create <name>', 'create a snapshot of the current state, under the next free numeric ID')
      .option('-a, --apply <name>', 'revert the image to a snapshot (by ID, then by name), its size too')
      .option('-d, --delete <name>', 'delete a snapshot (by name; snapshot.id=ID names one by ID)')
      .option('-q, --quiet', 'print nothing on success')
      .addOption(forceShareOption())
      .argument('<file>')
      .action(run(async () => (await import('./commands/snapshot.js')).snapshot));
  }

  if (wanted('serve')) {
    program
      .command('serve')
      .description('qemu-nbd: serve images as NBD exports (until the last client leaves, or -t: until SIGINT/SIGTERM)')
      .usage(
        '[-f FMT] [-r] [-x NAME] [-D DESC] (-k SOCKET | [-b ADDR] [-p PORT]) [-t] [-e SHARED] [--fork] [--pid-file FILE]\n'
          + '       [--object tls-creds-x509|tls-creds-psk,id=ID,dir=DIR,endpoint=server[,verify-peer=on|off] --tls-creds ID\n'
          + '        [--object authz-simple,id=AUTH,identity=NAME --tls-authz AUTH]]\n'
          + '       [-v|-q] [FILE] [--export NAME=FILE[,ro][,format=FMT][,description=TEXT]]... [--exports-file JSON]',
      )
      .addOption(formatOption())
      .option('-r, --read-only', 'export read-only (every export)')
      .option('-x, --export-name <name>', "export name of FILE (default '')")
      .option('-D, --description <text>', 'export description of FILE')
      .option(
        '--export <spec>',
        'one more export: NAME=FILE[,ro][,format=FMT][,description=TEXT] (repeatable; ",," is a comma in a value)',
        collect,
        [],
      )
      .option(
        '--exports-file <file>',
        'exports from a JSON file: {"exports": [{"name", "file", "format", "readOnly", "description"}]}',
      )
      .option('-k, --socket <path>', 'listen on this Unix socket')
      .option('-b, --bind <addr>', 'TCP address to listen on (default 0.0.0.0)')
      .option('-p, --port <port>', 'TCP port to listen on (default 10809)')
      .option('-t, --persistent', "don't exit when the last client disconnects")
      .option('-e, --shared <n>', 'serve up to n clients at once (default 1)')
      .option('--fork', 'run in the background; return once clients can connect')
      .option('--pid-file <file>', 'write the process id to FILE once clients can connect')
      .option(
        '--handshake-limit <seconds>',
        'drop clients that have not finished the handshake in time (default 10, 0: none)',
      )
      .option(
        '--object <definition>',
        'tls-creds-x509 / tls-creds-psk (endpoint=server) or authz-simple / authz-listfile, as qemu-nbd (repeatable)',
        collect,
        [],
      )
      .option('--tls-creds <id>', 'require TLS with the credentials of --object ID')
      .option('--tls-authz <id>', 'admit only TLS clients the authz object ID allows')
      .option(
        '--tls-certificates <dir>',
        'require TLS with X.509 files in DIR (ca-cert.pem, server-cert.pem, server-key.pem)',
      )
      .option('--tls-verify-peer', 'with --tls-certificates: require a client certificate from the CA')
      .option('--tls-psk <file>', 'require TLS with the PSK keys of FILE (psktool format)')
      .option('-v, --verbose', 'log connections to stderr')
      .option('-q, --quiet', 'log nothing, not even failed connections')
      .addOption(forceShareOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .argument('[file]')
      .action(run(async () => (await import('./commands/serve.js')).serve));
  }

  if (wanted('map')) {
    program
      .command('map')
      .description("show where the image's data lives, across the backing chain")
      .usage('[-f FMT] [-F BACKING_FMT] [--output=human|json] [-s OFFSET] [-l LENGTH] [-U] FILE')
      .addOption(formatOption())
      .addOption(imageBackingFormatOption())
      .addOption(outputOption())
      .option('-s, --start-offset <offset>', 'first byte to map')
      .option('-l, --max-length <length>', 'number of bytes to map')
      .addOption(backingProbeOption())
      .addOption(backingDevicesOption())
      .addOption(forceShareOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .argument('<file>')
      .action(run(async () => (await import('./commands/map.js')).map));
  }

  if (wanted('convert')) {
    program
      .command('convert')
      .description('copy an image into a new one of any format; all-zero runs stay holes')
      .usage(
        '[-f FMT] [--source-backing-format FMT] [-O OUTPUT_FMT] [-o OPTIONS] [-B BACKING [-F BACKING_FMT]] [-c] [-t CACHE] [-T SRC_CACHE] [-p] [-q] [-S SIZE] '
          + '[-n [--target-is-zero]] [-m N] [-W] [-U] [-l SNAPSHOT] SRC DST',
      )
      .addOption(formatOption())
      .addOption(imageBackingFormatOption('--source-backing-format <fmt>'))
      .addOption(new Option('-O, --output-format <fmt>', 'format of the output image (default raw; with -n: probed)'))
      .option('-o, --options <list>', 'options for the output format (as for create)', collect, [])
      .option('-l, --snapshot <name>', 'copy the source as it was at this internal snapshot (qcow2; ID or name)')
      .option(
        '-B, --backing <file>',
        'make the output an overlay on this file; only data that differs from it is written',
      )
      .option('-F, --backing-format <fmt>', 'format of the -B backing file (default raw)')
      .option('-c, --compress', 'store the output compressed (qcow2: each cluster holding data)')
      .option(
        '-S, --sparse-size <size>',
        'runs of zeros at least this long (aligned) become holes; 0 = write everything',
        '4k',
      )
      .option('-t, --cache <mode>', CACHE_HELP)
      .option('-T, --source-cache <mode>', SOURCE_CACHE_HELP)
      .option('-n, --no-create', 'DST exists: write into it in place (it must be at least as large as SRC)')
      .option('--target-is-zero', 'with -n: DST reads as zeros already, so zeros are not written')
      .option('-m, --parallel <n>', 'chunks in flight, 1 to 16 (default 4)')
      .option('-W, --out-of-order', 'let chunks be written out of order (default: front to back)')
      .option('-p, --progress', 'show progress (on a terminal)')
      .option('-q, --quiet', 'print nothing on success')
      .addOption(backingProbeOption())
      .addOption(backingDevicesOption())
      .addOption(forceShareOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .argument('<src>')
      .argument('<dst>', 'written under a temporary name and renamed into place when complete')
      .action(run(async () => (await import('./commands/convert.js')).convert));
  }

  if (wanted('commit')) {
    program
      .command('commit')
      .description("write an overlay's data into its backing file, then empty the overlay")
      .usage('[-f FMT] [-F BACKING_FMT] [-b BASE] [-d] [-t CACHE] [-p] [-q] FILE')
      .addOption(formatOption())
      .addOption(imageBackingFormatOption())
      .option('-b, --base <file>', 'commit every layer above BASE, a file further down the chain, into it (implies -d)')
      .option('-d, --keep', "keep the overlay's data (do not empty it)")
      .option('-t, --cache <mode>', CACHE_HELP)
      .option('--force', 'commit even if the backing file was modified after the overlay was made')
      .option('-p, --progress', 'show progress (on a terminal)')
      .option('-q, --quiet', 'print nothing on success')
      .addOption(backingProbeOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .addOption(backingDevicesOption())
      .argument('<file>')
      .action(run(async () => (await import('./commands/commit.js')).commit));
  }

  if (wanted('rebase')) {
    program
      .command('rebase')
      .description('change the backing file of an image')
      .usage(
        '[-f FMT] [-F BACKING_FMT] [--old-backing-format FMT] [-u] [-t CACHE] [-T SRC_CACHE] [-p] [-q] -b NEW FILE',
      )
      .addOption(formatOption())
      .requiredOption('-b, --backing <file>', "the new backing file (relative names are relative to FILE's directory)")
      .option('-F, --backing-format <fmt>', 'format of the new backing file (default raw)')
      .option(
        '--old-backing-format <fmt>',
        "format of the image's current backing file (default: the format the image records, else raw)",
      )
      .option('-u, --unsafe', 'only rewrite the reference in the header; copy no data')
      .option('-t, --cache <mode>', CACHE_HELP)
      .option('-T, --source-cache <mode>', SOURCE_CACHE_HELP)
      .option('-p, --progress', 'show progress (on a terminal)')
      .option('-q, --quiet', 'print nothing on success')
      .addOption(backingProbeOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .addOption(backingDevicesOption())
      .argument('<file>')
      .action(run(async () => (await import('./commands/rebase.js')).rebase));
  }

  if (wanted('compare')) {
    program
      .command('compare')
      .description('compare the guest-visible contents of two images (exit 0 same, 1 different, 2 error)')
      .usage(
        '[-f FMT] [-F FMT] [--backing-format FMT] [--second-backing-format FMT] [-s] [-T SRC_CACHE] [-p] [-q] [-U] A B',
      )
      .addOption(new Option('-f, --format <fmt>', 'format of A (probed when omitted)'))
      .addOption(new Option('-F, --second-format <fmt>', 'format of B (probed when omitted)'))
      .addOption(
        new Option('--backing-format <fmt>', "format of A's backing file (default: the format A records, else raw)"),
      )
      .addOption(
        new Option(
          '--second-backing-format <fmt>',
          "format of B's backing file (default: the format B records, else raw)",
        ),
      )
      .option('-s, --strict', 'also fail when sizes or allocation differ')
      .option('-T, --source-cache <mode>', SOURCE_CACHE_HELP)
      .option('-p, --progress', 'show progress (on a terminal)')
      .option('-q, --quiet', 'print nothing; the exit code tells')
      .addOption(backingProbeOption())
      .addOption(backingDevicesOption())
      .addOption(forceShareOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .argument('<a>')
      .argument('<b>')
      .action(run(async () => (await import('./commands/compare.js')).compare));
  }

  if (wanted('check')) {
    program
      .command('check')
      .description('check an image for consistency (exit 0 ok, 1 not completed, 2 corrupt, 3 leaks, 63 unsupported)')
      .usage('[-f FMT] [-F BACKING_FMT] [--output=human|json] [-r leaks|all] [-T SRC_CACHE] [-q] [-U] FILE')
      .addOption(formatOption())
      .addOption(imageBackingFormatOption())
      .addOption(outputOption())
      .option(
        '-r, --repair <what>',
        'repair what the check finds: leaks (wasted space only) or all (also corruptions); '
          + 'the image is then checked again',
      )
      .option('-T, --source-cache <mode>', SOURCE_CACHE_HELP)
      .option('-p, --progress', 'show progress (on a terminal)')
      .option('-q, --quiet', 'print nothing; the exit code tells')
      .addOption(backingProbeOption())
      .addOption(backingDevicesOption())
      .addOption(forceShareOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .argument('<file>')
      .action(run(async () => (await import('./commands/check.js')).check));
  }

  if (wanted('resize')) {
    program
      .command('resize')
      .description('change the virtual size of an image (shrinking needs --shrink)')
      .usage('[-f FMT] [-F BACKING_FMT] [--shrink] [--preallocation=MODE] [-q] FILE [+|-]SIZE')
      .addOption(formatOption())
      .addOption(imageBackingFormatOption())
      .option('--shrink', 'allow the image to shrink (the data past the new end is deleted)')
      .option(
        '--preallocation <mode>',
        'reserve the new space: off (default), metadata, falloc, full (what the format supports)',
      )
      .option('-q, --quiet', 'print nothing on success')
      .addOption(backingProbeOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .addOption(backingDevicesOption())
      .argument('<file>')
      .argument('<size>', 'new size, or +SIZE / -SIZE to grow or shrink by that much (a leading - needs no --)')
      .addHelpText(
        'after',
        `
  raw: the file is truncated or extended. cow: in place while the bitmap still fits
  before the data area (the error names the sizes possible); v1/v2-uml/v3 overlays
  record their backing file's size, so the backing file must have the new size first.`,
      )
      .action(run(async () => (await import('./commands/resize.js')).resize));
  }

  if (wanted('measure')) {
    program
      .command('measure')
      .description('how much host space a new image of a format needs, empty or as a copy of FILE')
      .usage('[--output=human|json] [-O FMT] [-o OPTIONS] (--size SIZE | [-f FMT] [-F BACKING_FMT] [-U] FILE)')
      .addOption(formatOption())
      .addOption(imageBackingFormatOption())
      .addOption(new Option('-O, --output-format <fmt>', 'format of the image to measure').default('raw'))
      .option('-o, --options <list>', 'options of that format (as for create)', collect, [])
      .option('--size <size>', 'virtual size of an empty image to measure')
      .addOption(outputOption())
      .addOption(backingProbeOption())
      .addOption(backingDevicesOption())
      .addOption(forceShareOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .argument('[file]', 'image whose copy to measure (its data, across its backing chain)')
      .action(run(async () => (await import('./commands/measure.js')).measure));
  }

  if (wanted('amend')) {
    program
      .command('amend')
      .description('change format options of an existing image in place')
      .usage('[-f FMT] [-F BACKING_FMT] [-q] -o OPTIONS FILE')
      .addOption(formatOption())
      .addOption(imageBackingFormatOption())
      .option(
        '-o, --options <list>',
        'options to change, comma-separated key=value (repeatable); -o help lists them',
        collect,
        [],
      )
      .option('-q, --quiet', 'print nothing on success')
      .addOption(backingProbeOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .addOption(backingDevicesOption())
      .argument('<file>')
      .addHelpText(
        'after',
        `
  cow: size= grows the image (as resize); the backing file (use rebase) and the
  version, variant and alignment (use convert) cannot change in place.
  raw: nothing to amend.`,
      )
      .action(run(async () => (await import('./commands/amend.js')).amend));
  }

  if (wanted('bench')) {
    program
      .command('bench')
      .description('time COUNT read (or -w write) requests, DEPTH of them in flight (qemu-img bench)')
      .usage(
        '[-c COUNT] [-d DEPTH] [-f FMT] [--flush-interval=N [--no-drain]] [-i threads] [-o OFFSET] '
          + '[--pattern=N] [-q] [-s BUFFER_SIZE] [-S STEP_SIZE] [-t CACHE] [-w] [-U] FILE',
      )
      .option('-c, --count <n>', 'number of requests (default 75000)')
      .option('-d, --depth <n>', 'requests in flight at once (default 64)')
      .addOption(formatOption())
      .option('--flush-interval <n>', 'write tests: flush whenever the number of requests left is a multiple of N')
      .option('--no-drain', 'flush without waiting for the requests in flight first')
      .option('-n, --native', "native AIO (not supported: blk's requests run on the thread pool)")
      .option('-i, --aio <mode>', 'threads (what blk does); native and io_uring are not supported')
      .option('-o, --offset <offset>', 'offset of the first request (default 0)')
      .option('--pattern <byte>', 'byte that write requests write (default 0)')
      .option('-q, --quiet', 'accepted (qemu-img 7.2 prints its lines anyway; so does blk)')
      .option('-s, --buffer-size <size>', 'bytes per request (default 4k)')
      .option(
        '-S, --step-size <size>',
        'distance between the offsets of consecutive requests (default: the buffer size); '
          + 'offsets wrap at the end of the image',
      )
      .option('-t, --cache <mode>', CACHE_HELP)
      .option('-w, --write', 'write requests instead of reads')
      .addOption(backingProbeOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .addOption(forceShareOption())
      .argument('<file>')
      .action(run(async () => (await import('./commands/bench.js')).bench));
  }

  if (wanted('dd')) {
    program
      .command('dd')
      .description('copy a range of an image into a new image (qemu-img dd)')
      .usage('[-f FMT] [-O OUTPUT_FMT] [bs=BLOCK_SIZE] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT')
      .addOption(formatOption())
      .addOption(new Option('-O, --output-format <fmt>', 'format of the output image').default('raw'))
      .addOption(backingProbeOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .addOption(forceShareOption())
      .argument('[operands...]', 'bs= (default 512), count=, skip= (in blocks of bs), if=, of=')
      .addHelpText(
        'after',
        `
  As qemu-img: count= counts from the input's start and skip= is taken from that
  range, so the output is min(input size, count*bs) - skip*bs bytes. The output is
  written under a temporary name and renamed into place when complete.`,
      )
      .action(run(async () => (await import('./commands/dd.js')).dd));
  }

  if (wanted('io')) {
    program
      .command('io')
      .description('qemu-io: run read/write/alloc/map/... commands on an image (from -c, else from stdin)')
      .usage('[-f FMT] [-F BACKING_FMT] [-r] [-s] [-t CACHE] [-i AIO] [-d DISCARD] [-U] [-c CMD]... [FILE]')
      .addOption(formatOption())
      .addOption(imageBackingFormatOption())
      .option('-r, --read-only', 'open the image read-only')
      .option('-c, --cmd <command>', 'command to run (repeatable; `-c help` lists them)', collect, [])
      .option('-s, --snapshot', 'writes go to a temporary overlay, deleted on exit; FILE is not changed')
      .option(
        '-t, --cache <mode>',
        'writethrough|directsync: flush after every write; writeback|none (default): '
          + 'flush on close; unsafe: never flush',
      )
      .option('-n, --nocache', 'same as -t none')
      .option('-i, --aio <mode>', "threads|native|io_uring: accepted, blk's I/O is the same for all")
      .option('-k, --native-aio', 'same as -i native')
      .option('-d, --discard <mode>', 'unmap (default): discard and write -z -u deallocate; ignore: they do not')
      .option('-m, --misalign', 'accepted: blk has no O_DIRECT alignment to defeat')
      .addOption(
        new Option(
          '-U, --force-share',
          "with -r: share the image with a writer (qemu-io's force-share, the forceShare open option)",
        ),
      )
      .option('-C, --copy-on-read', 'not supported (refused)')
      .option('-T, --trace <options>', 'not supported (refused)')
      .option('--object <definition>', 'not supported (refused)', collect, [])
      .option('--image-opts', 'not supported (refused)')
      .addOption(backingProbeOption())
      .addOption(backingDirOption())
      .addOption(forbidBackingOption())
      .addOption(backingDevicesOption())
      .argument('[file]', 'image to open (none: open one with the open command)')
      .action(run(async () => (await import('./commands/io.js')).io));
  }

  // qemu-img's --image-opts, on every command whose image operands may be json: names too.
  for (const cmd of program.commands) {
    if (IMAGE_OPERANDS[cmd.name()]) {
      cmd.option(
        '--image-opts',
        "read the image operands as option strings: driver=FMT,file.filename=PATH (qemu-img's)",
      );
    }
  }
  return program;
}
