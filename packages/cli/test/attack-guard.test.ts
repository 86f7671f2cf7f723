/**
 * Attacks on the probe guard through blk commands that change a probed raw
 * image's size or contents other than by a plain write: each must leave a
 * default-raw file raw (or be refused without changing a byte).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { blk, scratchDir } from './helpers.js';

const scratch = scratchDir('attack-guard');
const { p } = scratch;
const sha = (file: string) =>
  createHash('sha256')
    .update(fs.readFileSync(p(file)))
    .digest('hex');
const MiB = 1 << 20;

beforeAll(() => {
  // The start of a fixed VHD footer: cookie 'conectix', features, version 1.0.
  const footer = Buffer.alloc(16);
  footer.write('conectix', 0, 'latin1');
  footer.writeUInt32BE(0x00010000, 12);
  fs.writeFileSync(p('footer.bin'), footer);
});

describe('blk resize on a probed raw image', () => {
  it("refuses a grow that makes a footer the guest wrote the file's last sector, and changes no byte", () => {
    fs.writeFileSync(p('g.img'), Buffer.alloc(MiB));
    // 100 bytes into the last sector: not a footer yet, so blk io lets the guest write it.
    const at = MiB - 512 + 100;
    expect(blk(['io', '-c', `write -s ${p('footer.bin')} ${at} 16`, p('g.img')]).code).toBe(0);
    const before = sha('g.img');
    const r = blk(['resize', p('g.img'), String(MiB + 100)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('would make it probe as vpc');
    expect(fs.statSync(p('g.img')).size).toBe(MiB);
    expect(sha('g.img')).toBe(before);
    // Named raw, the user asked for exactly this file: allowed.
    expect(blk(['resize', '-f', 'raw', p('g.img'), String(MiB + 100)]).code).toBe(0);
  });
});
