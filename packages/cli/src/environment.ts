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

/** What `s3://` URLs need from the environment: @blk/http's S3 options (a subset of HttpVfsOptions). */
export interface S3Environment {
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  region?: string;
  endpoint?: string;
}

/**
 * S3 settings from the usual AWS variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN, AWS_REGION (else AWS_DEFAULT_REGION), AWS_ENDPOINT_URL_S3 (else
 * AWS_ENDPOINT_URL). Empty values count as unset; without keys, requests go unsigned.
 */
export function s3OptionsFromEnvironment(env: Environment): S3Environment {
  const get = (...names: string[]) => {
    for (const n of names) {
      const v = env[n];
      if (v !== undefined && v !== '') return v;
    }
    return undefined;
  };
  const out: S3Environment = {};
  const accessKeyId = get('AWS_ACCESS_KEY_ID');
  const secretAccessKey = get('AWS_SECRET_ACCESS_KEY');
  const sessionToken = get('AWS_SESSION_TOKEN');
  const region = get('AWS_REGION', 'AWS_DEFAULT_REGION');
  const endpoint = get('AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL');
  if (accessKeyId !== undefined) out.accessKeyId = accessKeyId;
  if (secretAccessKey !== undefined) out.secretAccessKey = secretAccessKey;
  if (sessionToken !== undefined) out.sessionToken = sessionToken;
  if (region !== undefined) out.region = region;
  if (endpoint !== undefined) out.endpoint = endpoint;
  return out;
}
