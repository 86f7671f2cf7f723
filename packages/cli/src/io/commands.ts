/**
 * qemu-io's command language over a blk Image: the command table and the
 * dispatch (qemu-io-cmds.c of QEMU 7.2: the same commands, options, output
 * lines and error messages), so that qemu-iotests recipes run unchanged.
 * Each command lives in the module of its kind.
 */
import type { CmdInfo } from './command.js';
import { abort, aioFlush, flush, quit, sigraise, sleep, truncate } from './control-commands.js';
import { close, open } from './file-commands.js';
import { reopen } from './reopen-command.js';
import { aioRead, read, readv } from './read-commands.js';
import type { IoSession } from './session.js';
import { alloc, info, length, mapCmd } from './status-commands.js';
import { aioWrite, discard, write, writev } from './write-commands.js';

export { IoSession, type Output } from './session.js';

const help: CmdInfo = {
  name: 'help',
  altname: '?',
  argmin: 0,
  argmax: 1,
  args: '[command]',
  noFile: true,
  oneline: 'help for one or all commands',
  async run(ctx, argv) {
    const line = (c: CmdInfo) => `${c.name} ${c.args !== undefined ? `${c.args} ` : ''}-- ${c.oneline}\n`;
    if (argv.length === 2) {
      const c = findCommand(argv[1]!);
      if (!c) {
        ctx.out(`command ${argv[1]} not found\n`);
        return false;
      }
      ctx.out(line(c));
      return true;
    }
    for (const c of COMMANDS) ctx.out(line(c));
    ctx.out("\nUse 'help commandname' for extended help.\n");
    return true;
  },
};

/** Sorted by name, as qemu-io keeps its command table. */
const COMMANDS: CmdInfo[] = [
  abort,
  aioFlush,
  aioRead,
  aioWrite,
  alloc,
  close,
  discard,
  flush,
  help,
  info,
  length,
  mapCmd,
  open,
  reopen,
  quit,
  read,
  readv,
  sigraise,
  sleep,
  truncate,
  write,
  writev,
].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

function findCommand(name: string): CmdInfo | undefined {
  return COMMANDS.find((c) => c.name === name || c.altname === name);
}

/** Runs one command line; false when it failed (qemu-io then exits 1). */
export async function runCommand(session: IoSession, line: string): Promise<boolean> {
  const argv = line.split(/[ \t\n\r]+/).filter((s) => s !== '');
  if (argv.length === 0) return true;
  const name = argv[0]!;
  const ct = findCommand(name);
  if (!ct) {
    session.io.err(`command "${name}" not found\n`);
    return false;
  }
  if (!ct.noFile && !session.isOpen) {
    session.io.err("no file open, try 'help open'\n");
    return false;
  }
  const n = argv.length - 1;
  if (n < ct.argmin || (ct.argmax !== -1 && n > ct.argmax)) {
    if (ct.argmax === -1) {
      session.io.err(`bad argument count ${n} to ${name}, expected at least ${ct.argmin} arguments\n`);
    } else if (ct.argmin === ct.argmax) {
      session.io.err(`bad argument count ${n} to ${name}, expected ${ct.argmin} arguments\n`);
    } else {
      session.io.err(`bad argument count ${n} to ${name}, expected between ${ct.argmin} and ${ct.argmax} arguments\n`);
    }
    return false;
  }
  if (ct.write && session.image.readOnly) {
    session.error('Block node is read-only');
    return false;
  }
  const ok = await ct.run(session, argv);
  // Output waits for its reader: a session of many commands never queues unbounded output.
  await session.outputDrained();
  return ok;
}
