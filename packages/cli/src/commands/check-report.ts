/** How blk check prints its result: qemu-img check's human report and its JSON object. */
import { cFixed } from '../format.js';
import { toQemuJson, type QValue } from '../qjson.js';

/** What one check found (and repaired), in qemu-img check's terms. */
export interface CheckResult {
  format: string;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  checkErrors: number;
  totalClusters: number;
  allocatedClusters: number;
  problems: string[];
}

/** qemu-img check --output=json: the object, one line. */
export function jsonReport(file: string, r: CheckResult): string {
  const obj: { [k: string]: QValue | undefined } = {
    filename: file,
    format: r.format,
    'check-errors': r.checkErrors,
  };
  if (r.corruptions) obj.corruptions = r.corruptions;
  if (r.leaks) obj.leaks = r.leaks;
  if (r.corruptionsFixed) obj['corruptions-fixed'] = r.corruptionsFixed;
  if (r.leaksFixed) obj['leaks-fixed'] = r.leaksFixed;
  if (r.totalClusters) obj['total-clusters'] = r.totalClusters;
  if (r.allocatedClusters) obj['allocated-clusters'] = r.allocatedClusters;
  return `${toQemuJson(obj)}\n`;
}

/** qemu-img check's human report. */
export function humanReport(r: CheckResult): string {
  let out = '';
  if (!r.corruptions && !r.leaks && !r.checkErrors) out += 'No errors were found on the image.\n';
  if (r.corruptions) {
    out +=
      `\n${r.corruptions} errors were found on the image.\n`
      + 'Data may be corrupted, or further writes to the image may corrupt it.\n';
  }
  if (r.leaks) {
    out += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
  }
  if (r.checkErrors) out += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
  if (r.totalClusters && r.allocatedClusters) {
    out +=
      `${r.allocatedClusters}/${r.totalClusters} = ${cFixed((r.allocatedClusters / r.totalClusters) * 100, 2)}% allocated, `
      + '0.00% fragmented, 0.00% compressed clusters\n';
  }
  return out;
}
