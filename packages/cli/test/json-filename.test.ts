/**
 * json-filename.ts on its own: QEMU's flattening (nested objects, lists, dotted keys), its dialect,
 * the limits a hostile name meets (nesting depth, a key given twice with different values), and
 * that a json: name read from inside an image (a backing file name) is never parsed as one: blk io
 * looks for a file of that name instead of opening what it describes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBlockError } from '@blk/core';
import { JsonNumber, parseJsonFilename } from '../src/json-filename.js';
import { blk, ensureBuilt, hasCommand, rawFile, tempDir } from './helpers.js';

const errorOf = (name: string): string => {
  try {
    parseJsonFilename(name);
  } catch (err) {
    expect(isBlockError(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`${name} parsed`);
};

describe('json: filenames', () => {
  it('flattens nested objects and lists to dotted keys, keeping JSON types', () => {
    const o = parseJsonFilename(
      `json:{'driver':'qcow2','file':{'driver':'file','filename':'a b.qcow2'},'x':[1,{'y':true}],'backing':null}`,
    );
    expect([...o.keys()]).toEqual(['driver', 'file.driver', 'file.filename', 'x.0', 'x.1.y', 'backing']);
    expect(o.get('file.filename')).toBe('a b.qcow2');
    expect(o.get('x.0')).toEqual(new JsonNumber('1'));
    expect(o.get('x.1.y')).toBe(true);
    expect(o.get('backing')).toBeNull();
    // The same option nested and dotted: fine when equal, refused when not.
    expect(parseJsonFilename('json:{"file":{"filename":"a"},"file.filename":"a"}').get('file.filename')).toBe('a');
    expect(errorOf('json:{"file":{"filename":"a"},"file.filename":"b"}')).toContain(
      "option 'file.filename' is given twice with different values",
    );
  });

  it('reads escapes, and refuses what QEMU refuses with its words', () => {
    expect(parseJsonFilename('json:{"a":"\\u0041\\n\\/\\\'"}').get('a')).toBe("A\n/'");
    expect(errorOf('json:{"a":"\\u0000"}')).toContain('JSON parse error');
    expect(errorOf('json:{"a":"x\ny"}')).toContain('invalid character in string');
    expect(errorOf('json:{"a":01}')).toContain('JSON parse error');
    expect(errorOf('json:')).toContain('premature EOI');
    expect(errorOf('json:"x"')).toBe('json:"x": Invalid JSON object given');
  });

  it('stops at 1024 levels of nesting (QEMU MAX_NESTING) without deep recursion', () => {
    const deep = (n: number) => `json:{"a":${'['.repeat(n)}${']'.repeat(n)}}`;
    expect(() => parseJsonFilename(deep(1022))).not.toThrow();
    expect(errorOf(deep(100_000))).toContain('too many nested data structures');
  });
});

describe.skipIf(!hasCommand('qemu-img'))('a json: backing file name inside an image', () => {
  let dir: string;
  beforeAll(() => {
    ensureBuilt();
    dir = tempDir('json-backing');
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('is a file name to blk io, not options: the file it describes is not opened', () => {
    const secret = path.join(dir, 'secret.raw');
    rawFile(secret, 65536, [[0, 65536, 0x5e]]);
    const top = path.join(dir, 'top.qcow2');
    const name = `json:{"driver":"raw","file":{"driver":"file","filename":"${secret}"}}`;
    const r = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', name, '-F', 'raw', top, '64k'], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const io = blk(['io', '-f', 'qcow2', '-c', 'read -P 0x5e 0 512', top]);
    expect(io.code).toBe(1);
    expect(io.stdout).not.toContain('read 512/512');
    expect(io.stderr).toContain("Could not open backing file: Could not open '");
  });

  it('is a file name to every other command too (json: operands are read only as the user typed them)', () => {
    const secret = path.join(dir, 'secret2.raw');
    rawFile(secret, 65536, [[0, 65536, 0x5e]]);
    const top = path.join(dir, 'top2.qcow2');
    const name = `json:{"driver":"raw","file":{"driver":"file","filename":"${secret}"}}`;
    const r = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', name, '-F', 'raw', top, '64k'], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const named = `json:{"driver":"qcow2","file":{"filename":"${top}"}}`;
    const runs = [
      ['map', top],
      ['convert', '-O', 'raw', top, path.join(dir, 'out.raw')],
      ['compare', named, secret],
      ['dd', `if=${named}`, `of=${path.join(dir, 'out2.raw')}`, 'bs=64k', 'count=1'],
      ['commit', '--image-opts', `driver=qcow2,file.filename=${top}`],
    ];
    for (const args of runs) {
      const b = blk(args);
      expect(b.code, args.join(' ')).not.toBe(0);
      // The name is a (missing) file relative to the image's directory, not the secret.
      expect(b.stderr, args.join(' ')).toContain(`backing file ${dir}/json:{`);
    }
    expect(fs.readFileSync(secret).every((x) => x === 0x5e)).toBe(true);
  });
});
