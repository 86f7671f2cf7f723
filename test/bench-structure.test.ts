/**
 * bench/run.mjs stays factored: no two row blocks that differ only in their
 * strings (a row per variant is one call of a helper), and the timed run +
 * untimed `sync -d` of the copy rows is one helper (plug-in groups in
 * bench/groups/ add rows of their own).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const source = fs.readFileSync(path.join(__dirname, '..', 'bench', 'run.mjs'), 'utf8');

/** The text of every `addRow({ ... })` call, balanced on braces. */
function addRowBlocks(text: string): string[] {
  const blocks: string[] = [];
  let at = text.indexOf('addRow({');
  while (at >= 0) {
    let depth = 0;
    let end = at + 'addRow('.length;
    for (; end < text.length; end++) {
      if (text[end] === '{') depth++;
      else if (text[end] === '}' && --depth === 0) break;
    }
    blocks.push(text.slice(at, end + 1));
    at = text.indexOf('addRow({', end);
  }
  return blocks;
}

/** A block with its string literals and the keys they name blanked: what is left is its shape. */
const shape = (block: string) =>
  block
    .replace(/`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/g, 'S')
    .replace(/\s+/g, ' ')
    .trim();

describe('bench/run.mjs', () => {
  it('has no two row blocks that differ only in strings (rows per variant go through a helper)', () => {
    const blocks = addRowBlocks(source).filter((b) => !b.startsWith('addRow(row'));
    expect(blocks.length).toBeGreaterThan(10);
    const seen = new Map<string, string>();
    const repeats: string[] = [];
    for (const b of blocks) {
      const s = shape(b);
      const first = seen.get(s);
      if (first !== undefined)
        repeats.push(`${/id: '([^']+)'/.exec(b)?.[1]} repeats ${/id: '([^']+)'/.exec(first)?.[1]}`);
      else seen.set(s, b);
    }
    expect(repeats).toEqual([]);
  });

  it('times a command and then syncs its output in one helper (runThenSync), not inline per variant', () => {
    const inline =
      /const r = runCommand\([^\n]+\);\n\s*const sync = runCommand\(\['sync', '-d'[^\n]+\n\s*return \{ value: r\.seconds, unit: 's', maxRssKiB: r\.maxRssKiB, syncSeconds/g;
    expect(source.match(inline) ?? []).toHaveLength(1); // the helper itself
  });
});
