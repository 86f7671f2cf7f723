#!/usr/bin/env node
/**
 * `pnpm -s blk ARGS...` in this repository: the built blk command, run where
 * the user typed it. pnpm runs scripts from the repository root, so relative
 * paths would otherwise resolve there; INIT_CWD is the directory pnpm was
 * started in. (Installed, `blk` runs in its caller's directory by itself.)
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../packages/cli/dist/blk.js', import.meta.url));
if (!fs.existsSync(cli)) {
  process.stderr.write('blk: not built yet: run `pnpm run build` in the blk repository first\n');
  process.exit(2);
}
if (process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);
delete process.env.INIT_CWD; // blk's own children (none today) start where blk runs
process.argv[1] = cli; // commander takes the program's path from argv[1]
await import(cli);
