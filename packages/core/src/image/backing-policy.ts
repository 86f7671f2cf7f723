import { BlockError } from '../errors.js';
import type { BackingCheck, BackingFacts, BackingReference } from '../format/driver.js';
import { fileTypeName, type FileStat, type Vfs } from '../storage/storage.js';
import { normalizePosix } from '../posix-path.js';

/** Default and documented limit on backing-chain depth (the top image is depth 0). */
export const DEFAULT_MAX_CHAIN_DEPTH = 16;

/**
 * What to do with backing files named inside images. A backing path read from
 * an image is data from a possibly untrusted file, not an instruction: this
 * policy decides whether and where it may be followed.
 */
export interface BackingPolicy {
  /**
   * `open` (default): open the backing chain.
   * `forbid`: refuse to open an image that names a backing file.
   * `ignore`: do not open backing files; ranges the image does not hold read as zeros.
   */
  mode?: 'open' | 'forbid' | 'ignore';
  /**
   * Format of backing files. Default: the format the image records for its
   * backing file, else `raw`. `'probe'` guesses from content, which lets a
   * raw image's contents decide how the host reads files: only for trusted
   * images. A function chooses per level (depth 1 = the top image's backing);
   * returning undefined there means the default for that level.
   */
  format?: string | ((ref: BackingReference, depth: number) => string | undefined);
  /** Deepest chain accepted (number of backing levels below the top image). Default 16. */
  maxDepth?: number;
  /**
   * Confine backing files to these directories: the resolved path and its
   * real path (every symlink followed) must both lie inside one of them, so a
   * symlink inside an allowed directory cannot lead out of it.
   */
  allowedDirs?: string[];
  /**
   * What to do when the driver's checks of the backing file fail
   * (`DriverImage.checkBackingFacts`: what the overlay recorded of it, such
   * as UML cow's size and mtime, against the file found). `refuse` (the
   * default, as UML) fails with `backing-mismatch`; `accept` opens anyway;
   * `update` has the driver record the file's current facts
   * (`DriverImage.setBacking`; needs a writable top image).
   */
  onMismatch?: 'refuse' | 'accept' | 'update';
  /** Use this file as the top image's backing file instead of the stored path (uml_moo -b). */
  overridePath?: string;
  /**
   * The caller's own rule, asked before each backing file is opened (after
   * `allowedDirs`): given the image naming it and the resolved backing path,
   * return undefined to allow it or a reason to refuse (`backing-forbidden`).
   * The blk command uses it for its default: an image may name only files
   * its owner can read.
   */
  approve?: (overlay: string, backing: string) => string | undefined | Promise<string | undefined>;
  /**
   * May backing files be block devices? Default false: a device path read
   * from an image (perhaps a stranger's) is refused with `backing-forbidden`
   * before it is opened. Set it for your own images over a device (UML's
   * COW file on /dev/sdX). The top image, named by the caller, may always be
   * a block device (an `overridePath` device needs this too). FIFOs, sockets,
   * character devices and directories are refused whatever this says.
   */
  allowDevices?: boolean;
  /**
   * Which origins a backing file may come from besides the naming image's own. The origin of a
   * path is `scheme://host[:port]` for a URL (`https://cdn.example`, `s3://bucket`) and `local`
   * for any other path (a `file:` URL is local). By default (no entry):
   * - a local image names only local files (no URL: an image must not make the host send requests);
   * - a remote image names only files on its own origin, below its own directory (`base.raw`,
   *   `sub/base.raw`; not `/etc/passwd`, `../x`, `file:///x` or another host).
   * Listing an origin allows any file on it (listing the image's own origin lifts the directory
   * rule); `local` allows local files; `*` allows everything. A function decides per pair (the
   * naming image's origin, the backing file's), returning true to allow; the directory rule then
   * applies only when it returns false for a same-origin pair.
   */
  allowOrigins?: readonly string[] | ((imageOrigin: string, backingOrigin: string) => boolean);
}

/** Throws `backing-forbidden` when the policy's `approve` rule refuses `backing` for `overlay`. */
export async function checkApproval(policy: BackingPolicy, overlay: string, backing: string): Promise<void> {
  if (!policy.approve) return;
  const reason = await policy.approve(overlay, backing);
  if (reason !== undefined)
    throw new BlockError('backing-forbidden', `backing file ${backing}: ${reason}`, { path: overlay });
}

/**
 * The stored path of `ref` when it is exactly what the image holds; throws
 * `not-supported` when the stored bytes are not valid UTF-8 (see
 * BackingReference.rawPath): opening or rewriting the decoded string would
 * name a different file than the one UML opens.
 */
export function exactBackingPath(ref: BackingReference, imagePath: string): string {
  if (ref.rawPath !== undefined) {
    const shown = Array.from(ref.rawPath, (b) =>
      b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`,
    ).join('');
    throw new BlockError(
      'not-supported',
      `backing file path "${shown}" is not valid UTF-8; blk keeps paths as text and would name a different file, `
        + 'so it neither opens nor rewrites it (use backing.overridePath, uml_moo -b, or rebase -u onto a UTF-8 name)',
      { path: imagePath, field: 'backing_file' },
    );
  }
  return ref.path;
}

/**
 * Resolves a stored backing path: absolute paths stay; relative ones are
 * resolved against the directory of the image that names them, never the
 * process's working directory.
 */
export function resolveBackingPath(vfs: Vfs, imagePath: string, stored: string): string {
  if (stored.length === 0) {
    throw new BlockError('invalid-header', 'backing file path is empty', { path: imagePath, field: 'backing_file' });
  }
  if (stored.includes('\0')) {
    throw new BlockError('invalid-header', 'backing file path contains a NUL byte', {
      path: imagePath,
      field: 'backing_file',
    });
  }
  return vfs.resolveBacking ? vfs.resolveBacking(imagePath, stored) : vfs.resolve(vfs.dirname(imagePath), stored);
}

const URL_SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

/** `scheme://host[:port]` of a URL (lower-case scheme), `local` for any other path or a `file:` URL. */
export function originOf(path: string): string {
  const m = URL_SCHEME.exec(path);
  if (!m || m[1]!.toLowerCase() === 'file') return 'local';
  try {
    const url = new URL(path);
    return `${url.protocol}//${url.host}`;
  } catch {
    return `${m[1]!.toLowerCase()}://?`;
  }
}

function originAllowed(policy: BackingPolicy, from: string, to: string): boolean {
  const allow = policy.allowOrigins;
  if (allow === undefined) return false;
  if (typeof allow === 'function') return allow(from, to) === true;
  return allow.includes('*') || allow.includes(to);
}

/**
 * Throws `backing-forbidden` when `backing` is on an origin `image` may not name (BackingPolicy.allowOrigins):
 * a URL named by a local image, a local file or another host named by a remote one, or a file outside a
 * remote image's directory.
 */
export function checkOrigin(policy: BackingPolicy, image: string, backing: string): void {
  const from = originOf(image);
  const to = originOf(backing);
  if (from === 'local' && to === 'local') return;
  if (originAllowed(policy, from, to)) return;
  const how = `(allow with backing.allowOrigins: ['${to}'])`;
  if (from === to) {
    const dir = image.slice(0, image.lastIndexOf('/') + 1);
    let href = backing;
    try {
      href = new URL(backing).href;
    } catch {
      // kept as given: compared as text
    }
    if (dir.length > 0 && href.startsWith(new URL(dir).href)) return;
    throw new BlockError(
      'backing-forbidden',
      `backing file ${href} lies outside the directory ${dir} of the remote image naming it ${how}`,
      { path: image },
    );
  }
  if (from === 'local') {
    throw new BlockError(
      'backing-forbidden',
      `a local image cannot name a URL as its backing file (${backing}) ${how}`,
      {
        path: image,
      },
    );
  }
  if (to === 'local') {
    throw new BlockError('backing-forbidden', `a remote image (${from}) cannot name a local file (${backing}) ${how}`, {
      path: image,
    });
  }
  throw new BlockError(
    'backing-forbidden',
    `backing file ${backing} is on another origin than the image (${from}) ${how}`,
    {
      path: image,
    },
  );
}

/**
 * Throws `backing-forbidden` unless `path` may be opened for `imagePath`: its origin (checkOrigin), and
 * for local files, `allowedDirs` (the path and its real path inside an allowed directory).
 */
export async function checkConfinement(
  vfs: Vfs,
  policy: BackingPolicy,
  imagePath: string,
  path: string,
): Promise<void> {
  checkOrigin(policy, imagePath, path);
  const dirs = policy.allowedDirs;
  if (!dirs) return;
  const allowed = await Promise.all(
    dirs.map(async (dir) => {
      const abs = vfs.resolve(vfs.cwd(), dir);
      let real = abs;
      try {
        real = await vfs.realpath(abs);
      } catch {
        // A missing allowed directory allows nothing extra; keep its literal form.
      }
      return [abs, real];
    }),
  );
  const inside = (candidate: string) =>
    allowed.some(([abs, real]) => within(abs!, candidate) || within(real!, candidate));
  if (!inside(path)) {
    throw new BlockError(
      'backing-forbidden',
      `backing file ${path} lies outside the allowed directories (${dirs.join(', ')})`,
      { path: imagePath },
    );
  }
  let real: string;
  try {
    real = await vfs.realpath(path);
  } catch {
    return; // Missing: reported as backing-missing by the caller.
  }
  if (!inside(real)) {
    throw new BlockError(
      'backing-forbidden',
      `backing file ${path} is a symlink leading out of the allowed directories (to ${real})`,
      { path: imagePath },
    );
  }
}

function within(dir: string, path: string): boolean {
  const d = normalizePosix(dir);
  const p = normalizePosix(path);
  return d === '/' || p === d || p.startsWith(`${d}/`);
}

/**
 * Refuses a backing file by what kind of node it is, before it is opened: a
 * FIFO, socket, character device or directory is no image (and opening a
 * FIFO would block), and a block device is refused unless the policy allows devices.
 */
export function checkBackingNode(policy: BackingPolicy, overlayPath: string, backingPath: string, st: FileStat): void {
  const type = st.type;
  if (type === 'fifo' || type === 'socket' || type === 'char-device' || type === 'directory') {
    throw new BlockError('special-file', `backing file ${backingPath} is ${fileTypeName(type)}, not an image file`, {
      path: overlayPath,
    });
  }
  if (type === 'block-device' && policy.allowDevices !== true) {
    throw new BlockError(
      'backing-forbidden',
      `backing file ${backingPath} is a block device; an image may name one only when devices are allowed `
        + `(backing.allowDevices; blk --backing-devices), for images you trust`,
      { path: overlayPath },
    );
  }
}

/**
 * What the core knows about the backing file at `path` for a driver to
 * record or check (see BackingFacts): the opened image's virtual size and
 * format, and the file's length, mtime and kind from stat. A failing stat
 * throws, unless `lenient` (diagnostics), which leaves those facts out.
 */
export async function gatherBackingFacts(
  vfs: Vfs,
  path: string,
  image?: { readonly size: number; readonly format: string },
  options: { lenient?: boolean } = {},
): Promise<BackingFacts> {
  const facts: BackingFacts = {};
  if (image) {
    facts.size = image.size;
    facts.format = image.format;
  }
  // A stat that fails is an error, not a fact left out: a driver would record (or compare) a
  // missing mtime as 0 and the overlay would later look modified. Only diagnostics (`lenient`) go on without.
  const st = options.lenient ? await vfs.stat(path).catch(() => undefined) : await vfs.stat(path);
  if (st) {
    facts.fileSize = st.size;
    facts.mtimeSec = st.mtimeSec;
    facts.isFile = st.isFile;
  }
  return facts;
}

/** `size 5000 differs from 4096 recorded in the overlay`: one failed BackingCheck, in words. */
export function backingMismatchText(check: BackingCheck, recordedIn = 'the overlay'): string {
  return `${check.what} ${check.found} differs from ${check.recorded} recorded in ${recordedIn}`;
}
