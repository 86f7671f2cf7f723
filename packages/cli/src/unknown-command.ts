/**
 * What `blk NAME` says when NAME is no blk command: qemu-img's "Command not
 * found" habit (exit 1), but naming the nearest thing blk has. qemu-img's
 * commands that blk lacks get the reason and the nearest command; other
 * names get the closest spelling.
 */
import { printable } from './printable.js';

/** qemu-img (and qemu-io) commands blk does not have: why, and the nearest thing blk does. */
const QEMU_ONLY: Record<string, string> = {
  bitmap:
    'cow and raw images have no persistent dirty bitmaps; the nearest is blk map, which shows what an overlay '
    + 'holds (what changed since its base)',
};

/** Edit distance (insertions, deletions, substitutions). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** The message for `name`, which is none of `commands`. */
export function unknownCommandMessage(name: string, commands: readonly string[]): string {
  const head = `'${printable(name)}' is not a blk command`;
  const known = QEMU_ONLY[name];
  if (known !== undefined) return `${head}; ${known}`;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const command of commands) {
    const d = command.startsWith(name) || name.startsWith(command) ? 0 : distance(name, command);
    if (d < bestDistance) {
      best = command;
      bestDistance = d;
    }
  }
  // One typo in three letters at most: anything further is no guess.
  if (best !== undefined && bestDistance <= Math.max(1, Math.floor(name.length / 3))) {
    return `${head}; the nearest is 'blk ${best}'`;
  }
  return `${head}; the commands are ${commands.join(', ')}`;
}
