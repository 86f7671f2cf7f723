// Runs one workload in a fresh process and prints its result as JSON.
import * as workloads from './workloads.mjs';

const params = JSON.parse(process.argv[2]);
try {
  // biome-ignore lint/performance/noDynamicNamespaceImportAccess: the parent names the workload at run time
  const fn = workloads[params.task];
  if (!fn) throw new Error(`unknown task ${params.task}`);
  const result = await fn(params);
  result.maxRssKiB = process.resourceUsage().maxRSS;
  process.stdout.write(`${JSON.stringify({ ok: true, result })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(err?.stack ?? err) })}\n`);
  process.exitCode = 1;
}
