/** `blk NAME` for a NAME that is no blk command: qemu-img's exit 1, naming the nearest thing blk has. */
import { beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt } from './helpers.js';

beforeAll(() => {
  ensureBuilt();
});

describe('unknown commands', () => {
  it('qemu-img commands blk lacks get the reason and the nearest blk command', () => {
    const r = blk(['bitmap', '--add', 'x.img', 'b0']);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toMatch(/^blk: 'bitmap' is not a blk command; .*the nearest is blk map/);
  });

  it('bench, dd and snapshot are blk commands now (qemu-img bench / dd / snapshot), and the nearest to their misspellings', () => {
    for (const name of ['bench', 'dd', 'snapshot']) {
      const r = blk([name, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: blk ${name} `));
    }
    expect(blk(['bnch']).stderr.split('\n')[0]).toBe("blk: 'bnch' is not a blk command; the nearest is 'blk bench'");
  });

  it('a misspelt command gets the closest spelling; anything else the list', () => {
    expect(blk(['chek', 'x.img'])).toMatchObject({
      code: 1,
      stderr: "blk: 'chek' is not a blk command; the nearest is 'blk check'\nTry 'blk --help' for more information\n",
    });
    expect(blk(['resiz']).stderr.split('\n')[0]).toBe("blk: 'resiz' is not a blk command; the nearest is 'blk resize'");
    expect(blk(['mesure']).stderr.split('\n')[0]).toBe(
      "blk: 'mesure' is not a blk command; the nearest is 'blk measure'",
    );
    const r = blk(['frobnicate']);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toMatch(
      /^blk: 'frobnicate' is not a blk command; the commands are create, info, .*resize, measure, amend/,
    );
  });

  it('escapes control bytes in a command name or option it echoes (no ESC sequence or forged line reaches the terminal)', () => {
    const r = blk(['chek\x1b[2J\nImage committed.']);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toContain('\x1b');
    expect(r.stderr.split('\n')[0]).toBe(
      "blk: 'chek\\x1b[2J\\nImage committed.' is not a blk command; the commands are "
        + r.stderr.split('\n')[0]!.split('the commands are ')[1],
    );
    const o = blk(['info', '--bogus\x1b]0;owned\x07', 'x.img']);
    expect(o.code).toBe(1);
    expect(o.stderr).not.toMatch(/[\x1b\x07]/);
    expect(o.stderr).toContain('--bogus\\x1b]0;owned\\x07');
  });
});
