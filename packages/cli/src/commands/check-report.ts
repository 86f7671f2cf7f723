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
  /** qcow2's cluster statistics (absent: 0). */
  fragmentedClusters?: number;
  compressedClusters?: number;
  imageEndOffset?: number;
  problems: string[];
}

/** qemu-img check --output=json: the object, one line. */
export function jsonReport(file: string, r: CheckResult): string {
  // qemu-img prints the members in its QDict's order, and a member only when it is not 0.
  const obj: { [k: string]: QValue | undefined } = {};
  if (r.imageEndOffset) obj['image-end-offset'] = r.imageEndOffset;
  if (r.compressedClusters) obj['compressed-clusters'] = r.compressedClusters;
  if (r.totalClusters) obj['total-clusters'] = r.totalClusters;
  if (r.corruptions) obj.corruptions = r.corruptions;
  obj['check-errors'] = r.checkErrors;
  if (r.leaks) obj.leaks = r.leaks;
  if (r.leaksFixed) obj['leaks-fixed'] = r.leaksFixed;
  if (r.corruptionsFixed) obj['corruptions-fixed'] = r.corruptionsFixed;
  if (r.allocatedClusters) obj['allocated-clusters'] = r.allocatedClusters;
  obj.filename = file;
  obj.format = r.format;
  if (r.fragmentedClusters) obj['fragmented-clusters'] = r.fragmentedClusters;
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
      + `${cFixed(((r.fragmentedClusters ?? 0) / r.allocatedClusters) * 100, 2)}% fragmented, `
      + `${cFixed(((r.compressedClusters ?? 0) / r.allocatedClusters) * 100, 2)}% compressed clusters\n`;
  }
  if (r.imageEndOffset) out += `Image end offset: ${r.imageEndOffset}\n`;
  return out;
}
