/**
 * Booting the Debian User-Mode-Linux kernel (linux.uml) with the host's / as a
 * read-only hostfs root and a shell script as init, as in
 * /work/shared/peers/uml-roundtrip.sh. Every run is bounded by
 * `timeout -k 5 <seconds>`.
 *
 * The init script gets a rw hostfs mount of `<dir>/out` at `<dir>/mnt`
 * ($OUT inside the script) to hand data back to the host, and prints
 * `UMLINIT: ...` marker lines to the console, which the host collects.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PEERS, missingPeers, run, which } from './peers.js';

export interface UmlDisk {
  /** The COW file (or a raw disk when there is no backing). */
  file: string;
  /** Backing file given on the command line (`ubdN=cow,backing`). */
  backing?: string;
  /** Open read-only (`ubdNr=`). */
  readOnly?: boolean;
}

export interface UmlRun {
  /** Console log (kernel messages + the script's output). */
  log: string;
  /** `UMLINIT:` lines, without the prefix. */
  markers: string[];
  code: number | null;
  /** The init script started: UML itself works on this machine. */
  started: boolean;
  /** The init script reached its end. */
  finished: boolean;
  ms: number;
  /** Directory the script wrote into ($OUT inside UML). */
  outDir: string;
}

export const UML_TIMEOUT_SEC = Number(process.env.UML_TIMEOUT ?? 120);

/** Why UML cannot be used here, or undefined. */
export function umlUnavailable(): string | undefined {
  return missingPeers(PEERS.linuxUml, PEERS.timeout);
}

const DEV = 'abcdefghijklmnop';
/** Device node of disk `i` inside UML. */
export const ubd = (i: number) => `/dev/ubd${DEV[i]}`;

/**
 * Boots UML once with the given disks and init script body (POSIX sh,
 * runs as PID 1 with PATH set, /proc and /sys mounted and $OUT mounted).
 */
export async function bootUml(
  dir: string,
  disks: UmlDisk[],
  body: string,
  timeoutSec = UML_TIMEOUT_SEC,
): Promise<UmlRun> {
  const outDir = join(dir, 'out');
  const mnt = join(dir, 'mnt');
  for (const d of ['tmp', 'uml', 'out', 'mnt']) await mkdir(join(dir, d), { recursive: true });
  const init = join(dir, 'init.sh');
  await writeFile(
    init,
    `#!/bin/sh
# PID 1 inside UML; the root fs is the host's / (hostfs, read-only)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "UMLINIT: start $(uname -r)"
OUT=${mnt}
mount -t hostfs -o ${outDir} hostfs "$OUT" || echo "UMLINIT: OUT-MOUNT-FAILED"
${body}
sync
umount "$OUT"
echo "UMLINIT: done"
echo o > /proc/sysrq-trigger   # power off; UML exits
sleep 30
`,
  );
  await chmod(init, 0o755);
  const ubdArgs = disks.map((d, i) => `ubd${i}${d.readOnly ? 'r' : ''}=${d.file}${d.backing ? `,${d.backing}` : ''}`);
  const args = [
    '-k',
    '5',
    String(timeoutSec),
    which('linux.uml')!,
    'mem=64M',
    `uml_dir=${join(dir, 'uml')}`,
    'root=/dev/root',
    'rootfstype=hostfs',
    'rootflags=/',
    'ro',
    `init=${init}`,
    ...ubdArgs,
    'con=null',
    'con0=fd:0,fd:1',
  ];
  const r = await run('timeout', args, {
    env: { ...process.env, TMPDIR: join(dir, 'tmp') },
    timeoutMs: (timeoutSec + 15) * 1000,
  });
  const log = r.stdout + r.stderr;
  const markers = log
    .split('\n')
    .filter((l) => l.startsWith('UMLINIT: '))
    .map((l) => l.slice(9).trim());
  return {
    log,
    markers,
    code: r.code,
    ms: r.ms,
    outDir,
    started: markers.some((m) => m.startsWith('start')),
    finished: markers.includes('done'),
  };
}

/** The last lines of a UML log, for messages. */
export function logTail(run: UmlRun, lines = 25): string {
  return run.log.split('\n').slice(-lines).join('\n');
}
