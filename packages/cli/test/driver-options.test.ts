/** -o for create and amend is generic: help is rendered from the driver's OptionSpec list, values parsed by type. */
import { describe, expect, it } from 'vitest';
import { BlockError, type BlockDriver } from '@blk/core';
import { registry } from '../src/images.js';
import { formatOptionHelp, parseCreateOptions, parseOptionValue } from '../src/options.js';

/** A format nobody in the CLI knows: only its declarations tell the CLI what it takes. */
const fake: BlockDriver = {
  name: 'fake-opts',
  probeBytes: 0,
  probe: () => 0,
  open: () => Promise.reject(new BlockError('not-supported', 'never opened')),
  create: () => Promise.resolve(),
  createOptions: [
    { name: 'size', type: 'size', help: 'Virtual disk size' },
    { name: 'lazy', type: 'bool', default: false, help: 'Defer metadata writes' },
    { name: 'cluster', type: 'size', driverOption: 'clusterBytes', help: 'Cluster size' },
    { name: 'mode', type: 'enum', values: ['fast', 'safe'], mapsTo: { fast: 'F', safe: 'S' }, help: 'How to write' },
    { name: 'level', type: 'number', help: 'A level' },
    { name: 'label', type: 'string', valueName: 'text', help: 'A label' },
  ],
};

/** A format that takes createImage's own options only. */
const plain: BlockDriver = {
  name: 'plain-opts',
  probeBytes: 0,
  probe: () => 0,
  open: () => Promise.reject(new BlockError('not-supported', 'never opened')),
  create: () => Promise.resolve(),
  createOptions: [{ name: 'size', type: 'size', help: 'Virtual disk size' }],
};

registry.register(fake);
registry.register(plain);

describe('generic -o parsing from driver declarations', () => {
  it("renders -o help from the driver's options", () => {
    expect(formatOptionHelp('fake-opts')).toBe(
      [
        'Supported options:',
        '  size=<size>       Virtual disk size',
        '  lazy=<on|off>     Defer metadata writes',
        '  cluster=<size>    Cluster size',
        '  mode=<fast|safe>  How to write',
        '  level=<n>         A level',
        '  label=<text>      A label',
        '',
      ].join('\n'),
    );
  });

  it('parses each value by its type into driverOptions, under the declared key', () => {
    const o = parseCreateOptions('fake-opts', ['lazy=on,cluster=64k,mode=safe', 'level=3,label=a,,b,size=1M']);
    expect(o.size).toBe(1024 * 1024);
    expect(o.driverOptions).toEqual({ lazy: true, clusterBytes: 65536, mode: 'S', level: 3, label: 'a,b' });
  });

  it('refuses values of the wrong type, naming the format and the option', () => {
    expect(() => parseCreateOptions('fake-opts', ['mode=slow'])).toThrow(
      "invalid fake-opts mode 'slow' (expected fast or safe)",
    );
    expect(() => parseCreateOptions('fake-opts', ['level=x'])).toThrow(
      "invalid fake-opts level 'x' (expected an integer)",
    );
    expect(() => parseCreateOptions('fake-opts', ['lazy=maybe'])).toThrow(
      "invalid fake-opts lazy 'maybe' (expected on or off)",
    );
    expect(parseOptionValue({ name: 'v', type: 'enum', values: ['1'], help: '' }, '1', 'x')).toBe('1');
  });

  it('undeclared keys reach a driver with options of its own (it refuses them in its words); a driver with none refuses them here', () => {
    expect(parseCreateOptions('fake-opts', ['other=7']).driverOptions).toEqual({ other: '7' });
    expect(() => parseCreateOptions('plain-opts', ['other=7'])).toThrow(
      "format plain-opts does not support option 'other'",
    );
  });

  it("cow's help comes from the cow driver (its alignment option included)", () => {
    const help = formatOptionHelp('cow');
    expect(help).toContain('version=<3|2|1>');
    expect(help).toMatch(/\n {2}alignment=<n> +v3 only/);
  });
});
