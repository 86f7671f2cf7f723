#!/usr/bin/env node
// Summarises V8 .cpuprofile files (from `node --cpu-prof` or `bench/run.mjs --profile`):
// top functions by self time, and by inclusive time for functions in blk's dist/.
//   node bench/lib/profile-summary.mjs FILE.cpuprofile [--top 25]
import * as fs from 'node:fs';

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const TOP = topAt >= 0 ? Number(args[topAt + 1]) : 25;
const files = args.filter((a, i) => a.endsWith('.cpuprofile') && !(topAt >= 0 && i === topAt + 1));

for (const file of files) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map();
  const dts = prof.timeDeltas;
  for (let i = 0; i < prof.samples.length; i++)
    self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + (dts[i] ?? 0));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const key = (n) => {
    const cf = n.callFrame;
    const url = cf.url
      .replace(/^file:\/\//, '')
      .replace(/.*\/packages\//, 'packages/')
      .replace(/.*\/bench\//, 'bench/');
    return `${cf.functionName || '(anonymous)'} ${url ? `${url}:${cf.lineNumber + 1}` : ''}`.trim();
  };
  const selfBy = new Map();
  const inclBy = new Map();
  for (const [id, t] of self) {
    const n = byId.get(id);
    selfBy.set(key(n), (selfBy.get(key(n)) ?? 0) + t);
    // Inclusive: every distinct frame on the stack gets the sample once.
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur));
      if (seen.has(k)) continue;
      seen.add(k);
      inclBy.set(k, (inclBy.get(k) ?? 0) + t);
    }
  }
  const pct = (t) => `${((t / total) * 100).toFixed(1).padStart(5)}%`;
  console.log(`\n== ${file}  (${(total / 1000).toFixed(0)} ms sampled)`);
  console.log('-- self time');
  for (const [k, t] of [...selfBy].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${pct(t)}  ${k}`);
  console.log('-- inclusive time, blk code');
  for (const [k, t] of [...inclBy]
    .filter(([k]) => k.includes('packages/'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP))
    console.log(`${pct(t)}  ${k}`);
}
