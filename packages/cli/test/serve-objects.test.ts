/**
 * blk serve's QEMU objects (serve-objects.ts), without a server: `--object` parsing (implied type,
 * qom-type=, `,,` escapes, unknown types and properties refused), authz-listfile rules (QEMU's JSON,
 * fnmatch globs with \ quoting and [...] classes, first match wins, default policy).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { authorizerOf, globToRegExp, parseAuthzList, parseObject } from '../src/commands/serve-objects.js';
import { tempDir } from './helpers.js';

describe('blk serve --object', () => {
  it('parses TYPE,id=ID,key=value with doubled commas; qom-type= works too; unknown types/properties are refused', () => {
    const o = parseObject('authz-simple,id=a0,identity=CN=x,,O=Example\\,, Org');
    expect(o).toEqual({ type: 'authz-simple', id: 'a0', props: new Map([['identity', 'CN=x,O=Example\\, Org']]) });
    expect(parseObject('qom-type=tls-creds-psk,id=t,dir=/d,endpoint=server').type).toBe('tls-creds-psk');
    expect(() => parseObject('secret,id=s,data=x')).toThrow(/unknown object type 'secret'/);
    expect(() => parseObject('tls-creds-x509,dir=/d')).toThrow(/needs id=ID/);
    expect(() => parseObject('tls-creds-x509,id=t,id=u')).toThrow(/'id' given twice/);
    expect(() => parseObject('tls-creds-x509,id=t,colour=red')).toThrow(/unknown property 'colour'/);
  });

  it('globs are fnmatch: * ? [a-z] [!x], backslash quotes, everything else literal (regex characters too)', () => {
    const m = (g: string, s: string) => globToRegExp(g).test(s);
    expect(m('CN=laptop.*', 'CN=laptop.example.com')).toBe(true);
    expect(m('CN=laptop.*', 'CN=laptopXexample')).toBe(false); // the dot is literal
    expect(m('a?c', 'abc')).toBe(true);
    expect(m('[a-c]x', 'bx')).toBe(true);
    expect(m('[!a-c]x', 'bx')).toBe(false);
    expect(m('O=Example\\\\, Org', 'O=Example\\, Org')).toBe(true);
    expect(m('\\*', '*')).toBe(true);
    expect(m('\\*', 'x')).toBe(false);
    expect(m('(a|b)+', '(a|b)+')).toBe(true);
    expect(m('(a|b)+', 'a')).toBe(false);
    expect(m('*', 'line\nbreak')).toBe(true);
  });

  it('authz-listfile: first matching rule wins, then the default policy; the file is re-read per check unless refresh=off', () => {
    const dir = tempDir('serve-objects');
    const file = path.join(dir, 'rules.json');
    const write = (o: unknown) => fs.writeFileSync(file, JSON.stringify(o));
    write({
      rules: [
        { match: 'fred', policy: 'allow', format: 'exact' },
        { match: 'dan*', policy: 'deny', format: 'glob' },
        { match: 'd*', policy: 'allow', format: 'glob' },
      ],
      policy: 'deny',
    });
    const check = authorizerOf(parseObject(`authz-listfile,id=a,filename=${file}`));
    expect(check('fred')).toBeUndefined();
    expect(check('fred2')).toMatch(/no rule of authz-listfile 'a' allows it/);
    expect(check('danb')).toMatch(/denied by a rule/);
    expect(check('dora')).toBeUndefined();
    const fixed = authorizerOf(parseObject(`authz-listfile,id=b,filename=${file},refresh=off`));
    write({ rules: [], policy: 'allow' });
    expect(check('anyone')).toBeUndefined();
    expect(fixed('anyone')).toMatch(/no rule/);
    fs.writeFileSync(file, '{broken');
    expect(check('fred')).toMatch(/unreadable/);
    expect(() => parseAuthzList('{"rules": [{"match": "x", "policy": "maybe"}]}', 'f')).toThrow(/"policy" must be/);
    expect(() => parseAuthzList('{"rules": [{"match": 1, "policy": "allow"}]}', 'f')).toThrow(/"match" must be/);
    expect(() => parseAuthzList('{"rules": [{"match": "x", "policy": "allow", "format": "regex"}]}', 'f')).toThrow(
      /"format" must be/,
    );
    expect(parseAuthzList('{}', 'f')).toEqual({ rules: [], policy: 'deny' });
  });
});
