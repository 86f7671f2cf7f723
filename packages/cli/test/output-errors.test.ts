/**
 * When blk's standard output cannot be written (a full disk, an I/O error),
 * it says so in one line and exits with its failure status: no stack trace,
 * and compare's status is 2 (an error), never 1 (the images differ).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BLK, rawFile, scratchDir } from './helpers.js';

const scratch = scratchDir('output-errors');

const hasDevFull = fs.existsSync('/dev/full');

describe('an output that cannot be written', () => {
  it.skipIf(!hasDevFull)(
    'stdout on a full device: one line naming the failure, exit 1 (compare: 2), no stack trace',
    () => {
      const img = path.join(scratch.dir, 'img.raw');
      rawFile(img, 1 << 20, [[0, 4096, 0x42]]);
      const full = fs.openSync('/dev/full', 'w');
      try {
        for (const [args, code] of [
          [['info', img], 1],
          [['map', '--output=json', img], 1],
          [['io', '-c', 'read -v 0 4096', img], 1],
          [['compare', img, img], 2],
          [['--help'], 1],
        ] as const) {
          const r = spawnSync(process.execPath, [BLK, ...args], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
          expect([args, r.stderr]).toEqual([
            args,
            'blk: cannot write the output: ENOSPC: no space left on device, write\n',
          ]);
          expect([args, r.status]).toEqual([args, code]);
        }
      } finally {
        fs.closeSync(full);
      }
    },
  );
});
