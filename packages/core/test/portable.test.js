import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');
/** Every module reachable from `entry` through static imports (dynamic import() is not followed). */
function staticGraph(entry) {
    const graph = new Map();
    const visit = (file) => {
        if (graph.has(file))
            return;
        const text = readFileSync(join(src, file), 'utf8');
        const specifiers = [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+'([^']+)'/gms)].map((m) => m[1]);
        graph.set(file, specifiers);
        for (const s of specifiers)
            if (s.startsWith('./'))
                visit(s.slice(2).replace(/\.js$/, '.ts'));
    };
    visit(entry);
    return graph;
}
describe('@blk/core/portable', () => {
    it('statically imports no node: module, so it loads in browsers (NodeVfs is loaded lazily)', () => {
        const graph = staticGraph('portable.ts');
        const nodeImports = [...graph].flatMap(([file, specs]) => specs.filter((s) => s.startsWith('node:')).map((s) => `${file} -> ${s}`));
        expect(graph.has('open.ts')).toBe(true);
        expect(graph.has('node-vfs.ts')).toBe(false);
        expect(nodeImports).toEqual([]);
    });
    it('the full entry does reach the Node storage (the check above would see it)', () => {
        const graph = staticGraph('index.ts');
        expect([...graph.get('node-storage.ts') ?? []]).toContain('node:fs');
    });
});
