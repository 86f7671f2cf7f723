/**
 * Export descriptions (exports.ts): QEMU's key=value strings with `,,` escapes, `--export` specs, the JSON
 * exports file and the checks on export lists; and several exports in one handshake: LIST names them all
 * with their descriptions, INFO/GO pick one by name with its own size and flags, an unknown name is
 * NBD_REP_ERR_UNKNOWN, '' is an export like any other.
 */
import { describe, expect, it } from 'vitest';
import { DriverRegistry, type Image, MemoryVfs, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import {
  checkExports,
  decoder,
  ExportSpecError,
  INFO,
  NbdConnection,
  type NbdExport,
  OPT,
  parseExportSpec,
  parseExportsConfig,
  parseKeyval,
  REP,
  TFLAG,
  u32,
  view,
} from '../src/index.js';
import { pipe } from './pipe.js';
import { nameAndInfos, option, optReplies } from './option-wire.js';

describe('export descriptions', () => {
  it('parseKeyval splits on single commas, keeps ",," as a comma, and flags without "="', () => {
    expect(parseKeyval('a=1,b,c=x,,y,,,d=')).toEqual([
      ['a', '1'],
      ['b', undefined],
      ['c', 'x,y,'],
      ['d', ''],
    ]);
    expect(parseKeyval('')).toEqual([['', undefined]]);
    expect(parseKeyval('k=v=w')).toEqual([['k', 'v=w']]);
  });

  it('parseExportSpec: NAME=FILE with ro, format and description (commas doubled), errors for the rest', () => {
    expect(parseExportSpec('disk=/a,,b.img,ro,format=raw,description=My disk,, the big one')).toEqual({
      name: 'disk',
      file: '/a,b.img',
      readOnly: true,
      format: 'raw',
      description: 'My disk, the big one',
    });
    expect(parseExportSpec('=x.img')).toEqual({ name: '', file: 'x.img' });
    expect(parseExportSpec('n=x.img,ro=off')).toEqual({ name: 'n', file: 'x.img', readOnly: false });
    expect(() => parseExportSpec('x.img')).toThrow(/expected NAME=FILE/);
    expect(() => parseExportSpec('n=')).toThrow(/expected NAME=FILE/);
    expect(() => parseExportSpec('n=x,colour=red')).toThrow(/unknown option 'colour'/);
    expect(() => parseExportSpec('n=x,ro,ro')).toThrow(/given twice/);
    expect(() => parseExportSpec('n=x,ro=perhaps')).toThrow(/expected on or off/);
    expect(() => parseExportSpec('n=x,format=')).toThrow(/format needs a value/);
  });

  it('parseExportsConfig: the JSON file, file names resolved by the caller, strict about keys and types', () => {
    const resolve = (f: string) => `/base/${f}`;
    expect(
      parseExportsConfig(
        {
          exports: [
            { name: 'a', file: 'a.img', readOnly: true, description: 'A' },
            { name: '', file: 'b.cow' },
          ],
        },
        'cfg.json',
        resolve,
      ),
    ).toEqual([
      { name: 'a', file: '/base/a.img', readOnly: true, description: 'A' },
      { name: '', file: '/base/b.cow' },
    ]);
    const bad = (json: unknown, msg: RegExp) =>
      expect(() => parseExportsConfig(json, 'cfg.json', resolve)).toThrow(msg);
    bad([], /cfg.json: expected an object/);
    bad({ exports: {} }, /"exports" must be an array/);
    bad({ exports: [], extra: 1 }, /unknown key "extra"/);
    bad({ exports: [{ name: 'a' }] }, /exports\[0\]: "file" must be/);
    bad({ exports: [{ file: 'x' }] }, /"name" must be a string/);
    bad({ exports: [{ name: 'a', file: 'x', readonly: true }] }, /unknown key "readonly"/);
    bad({ exports: [{ name: 'a', file: 'x', readOnly: 'yes' }] }, /"readOnly" must be true or false/);
    bad({ exports: [{ name: 'a', file: 'x', format: 7 }] }, /"format" must be a non-empty string/);
  });

  it('checkExports: unique names, NBD strings (no NUL, at most 4096 bytes)', () => {
    expect(() => checkExports([{ name: 'a' }, { name: 'b' }, { name: '' }])).not.toThrow();
    expect(() => checkExports([{ name: 'a' }, { name: 'a' }])).toThrow(/given twice/);
    expect(() => checkExports([{ name: 'a\0b' }])).toThrow(/NUL/);
    expect(() => checkExports([{ name: 'é'.repeat(2048) }])).not.toThrow(); // 4096 bytes
    expect(() => checkExports([{ name: 'é'.repeat(2049) }])).toThrow(ExportSpecError);
    expect(() => checkExports([{ name: 'a', description: 'x'.repeat(4097) }])).toThrow(/description longer/);
  });
});

describe('several exports in one handshake', () => {
  const registry = new DriverRegistry([rawDriver]);
  async function image(size: number, fill: number, readOnly: boolean): Promise<Image> {
    const vfs = new MemoryVfs();
    vfs.put('/i.raw', new Uint8Array(size).fill(fill));
    return openImage('/i.raw', { registry, vfs, format: 'raw', readOnly });
  }

  it('LIST names every export with its description; INFO/GO choose by name; unknown names are ERR_UNKNOWN', async () => {
    const exports: NbdExport[] = [
      { name: '', description: 'the default', image: await image(4096, 1, false) },
      { name: 'ro', description: 'read-only one', image: await image(8192, 2, true) },
      { name: 'plain', image: await image(512, 3, false) },
    ];
    const [client, server] = pipe();
    const done = new NbdConnection(server, exports, { handshakeTimeoutMs: 0 }).run();
    await client.readExactly(18);
    await client.write(u32(3));
    await client.write(option(OPT.LIST));
    const list = await optReplies(client);
    expect(list.map((r) => r.type)).toEqual([REP.SERVER, REP.SERVER, REP.SERVER, REP.ACK]);
    const entries = list.slice(0, 3).map((r) => {
      const n = view(r.data).getUint32(0);
      return [decoder.decode(r.data.subarray(4, 4 + n)), decoder.decode(r.data.subarray(4 + n))];
    });
    expect(entries).toEqual([
      ['', 'the default'],
      ['ro', 'read-only one'],
      ['plain', ''],
    ]);
    const info = async (name: string) => {
      await client.write(option(OPT.INFO, nameAndInfos(name, [INFO.NAME, INFO.DESCRIPTION])));
      return optReplies(client);
    };
    for (const [name, size, ro] of [
      ['', 4096, false],
      ['ro', 8192, true],
      ['plain', 512, false],
    ] as const) {
      const r = await info(name);
      expect(r.at(-1)!.type).toBe(REP.ACK);
      const ex = r.find((x) => view(x.data).getUint16(0) === INFO.EXPORT)!;
      expect(Number(view(ex.data).getBigUint64(2))).toBe(size);
      expect((view(ex.data).getUint16(10) & TFLAG.READ_ONLY) !== 0).toBe(ro);
      const nm = r.find((x) => view(x.data).getUint16(0) === INFO.NAME)!;
      expect(decoder.decode(nm.data.subarray(2))).toBe(name);
    }
    const unknown = await info('nope');
    expect(unknown.map((r) => r.type)).toEqual([REP.ERR_UNKNOWN]);
    await client.write(option(OPT.GO, nameAndInfos('ro')));
    expect((await optReplies(client)).at(-1)!.type).toBe(REP.ACK);
    client.close();
    await done;
    for (const e of exports) await e.image.close();
  });
});
