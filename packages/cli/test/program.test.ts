/**
 * The program's commands (src/program.ts): a start registers only the
 * command it runs (commander's work for every command's options was a third
 * of `blk info`'s cost above Node's start); without one, every command, in
 * the order `blk --help` lists them. The output is the same either way (the
 * startup fixture test).
 */
import { describe, expect, it } from 'vitest';
import { buildProgram, COMMAND_NAMES } from '../src/program.js';

const names = (only?: string) => buildProgram(only).commands.map((c) => c.name());

describe('buildProgram', () => {
  it('registers every command without a name, and just the named one with it', () => {
    expect(names()).toEqual(COMMAND_NAMES);
    expect(COMMAND_NAMES.length).toBeGreaterThan(10);
    for (const name of COMMAND_NAMES) expect(names(name)).toEqual([name]);
  });

  it("keeps the named command's options and help as with every command", () => {
    for (const name of ['info', 'convert', 'compare', 'serve']) {
      const alone = buildProgram(name).commands[0]!;
      const among = buildProgram().commands.find((c) => c.name() === name)!;
      expect(alone.options.map((o) => o.flags)).toEqual(among.options.map((o) => o.flags));
      expect(alone.helpInformation()).toBe(among.helpInformation());
    }
  });
});
