// Prints vitest's result as the plain closing line CI reads ("N passed, N failed, N skipped"),
// and exits with vitest's status. Usage: node scripts/test-summary.mjs -- <vitest args>
// A whole run (no vitest args: CI's `pnpm test`) first runs the format and lint checks
// (scripts/style.mjs check, a few seconds) and fails if they do, after the tests still ran.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, existsSync, rmSync } from 'node:fs';

const args = process.argv.slice(process.argv.indexOf('--') + 1);
const style =
  args.length === 0 ? spawnSync(process.execPath, ['scripts/style.mjs', 'check'], { stdio: 'inherit' }) : undefined;
mkdirSync('.tmp', { recursive: true });
const report = '.tmp/vitest-report.json';
rmSync(report, { force: true });
const run = spawnSync(
  'npx',
  ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...args],
  { stdio: 'inherit' },
);
let passed = 0,
  failed = 0,
  skipped = 0;
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed = r.numPassedTests ?? 0;
  failed = (r.numFailedTests ?? 0) + (r.numRuntimeErrorTestSuites ?? 0);
  skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  if (!r.success && failed === 0) failed = 1; // a suite that failed to load counts
} else {
  failed = 1;
}
if (style && style.status !== 0) console.log('\nstyle: FAILED (format or lint, above): pnpm format:check, pnpm lint');
console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(style && style.status !== 0 ? 1 : (run.status ?? 1));
