/**
 * The environment variables that change how blk reaches the host, read here
 * and only here, and handed to the libraries as options (no library reads the
 * environment): BLK_LOCK, BLK_NATIVE_IO and BLK_NATIVE_ADDON.
 */
import type { HostVfsOptions, LockPolicy } from '@blk/images';

type Environment = Readonly<Record<string, string | undefined>>;

function isOff(value: string): boolean {
  const v = value.toLowerCase();
  return v === 'off' || v === '0' || v === 'false';
}

/**
 * hostVfs's options as the environment sets them:
 * - BLK_LOCK=off|0|false: no OS advisory locks; =require: fail without the addon; else lock.
 * - BLK_NATIVE_IO=off|0|false: Node's fs calls instead of the addon's pread/pwrite.
 * - BLK_NATIVE_ADDON=FILE: load that build of the native addon (tests simulate a missing one).
 */
export function hostOptionsFromEnvironment(env: Environment): HostVfsOptions {
  const options: HostVfsOptions = {};
  const lock = env.BLK_LOCK;
  if (lock !== undefined) {
    const policy: LockPolicy = isOff(lock) ? 'off' : lock.toLowerCase() === 'require' ? 'require' : 'on';
    options.lock = policy;
  }
  if (env.BLK_NATIVE_IO !== undefined && isOff(env.BLK_NATIVE_IO)) options.nativeIo = false;
  // An empty value names no file (as `require(env || default)` read it before).
  if (env.BLK_NATIVE_ADDON) options.addon = env.BLK_NATIVE_ADDON;
  return options;
}
