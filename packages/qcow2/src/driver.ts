/** The qcow2 BlockDriver: probe and open (reading, and writing on writable opens). */
import {
  BlockError,
  readZeroFilled,
  type BackingReference,
  type BlockDriver,
  type DriverCheckResult,
  type InfoExtras,
  type SnapshotInfo,
  type SnapshotRequest,
  type RepairRequest,
  type DriverImage,
  type DriverOpenOptions,
  type ProbeHint,
  type ResizeOptions,
  type Storage,
} from '@blk/core/portable';
import {
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTENDED_L2,
  isQcow2,
  parseHeader,
  probeQcow2,
  MAX_CLUSTER_BITS,
  MIN_CLUSTER_BITS,
} from './header.js';
import { Qcow2Image } from './qcow2-image.js';
import { CREATE_OPTIONS, createQcow2 } from './create.js';
import { measureQcow2 } from './measure.js';
import { checkQcow2 } from './check.js';
import { AMEND_OPTIONS, amendQcow2 } from './amend.js';
import { readSnapshotTable, type Qcow2Snapshot } from './snapshots.js';
import { SnapshotWriter, type SnapshotState } from './snapshot-write.js';

export const qcow2Driver: BlockDriver = {
  name: 'qcow2',
  description: 'QEMU copy-on-write v2 (qcow2, compat 0.10 and 1.1)',
  probeBytes: 112,
  probe: (head: Uint8Array, _hint: ProbeHint) => probeQcow2(head),
  open: openQcow2,
  create: createQcow2,
  measure: measureQcow2,
  createOptions: CREATE_OPTIONS,
  amendOptions: AMEND_OPTIONS,
};

async function openQcow2(storage: Storage, options: DriverOpenOptions): Promise<DriverImage> {
  const where = { path: storage.path, driver: 'qcow2' as const };
  let snapshotName: string | undefined;
  let lazyRefcounts: boolean | undefined;
  if (options.driverOptions) {
    for (const [key, value] of Object.entries(options.driverOptions)) {
      if (key === 'snapshot' && typeof value === 'string' && value !== '') {
        snapshotName = value;
        continue;
      }
      // QEMU's runtime option: use lazy refcounts (or not) whatever the header's bit says.
      if (key === 'lazy-refcounts' && typeof value === 'boolean') {
        lazyRefcounts = value;
        continue;
      }
      throw new BlockError(
        'invalid-argument',
        `qcow2 takes no driver option '${key}'${key === 'snapshot' ? ' (a snapshot name or ID)' : ''}`,
        {
          ...where,
          field: `driverOptions.${key}`,
        },
      );
    }
  }
  const fileSize = options.probe?.size ?? (await storage.size());
  let head = options.probe?.head;
  if (head === undefined || head.length < 112) {
    head = new Uint8Array(112);
    await readZeroFilled(storage, 0, head);
  }
  if (!isQcow2(head)) {
    const dv = new DataView(head.buffer, head.byteOffset, Math.min(8, head.length));
    if (head.length >= 8 && dv.getUint32(0) === 0x514649fb) {
      throw new BlockError('unsupported-version', `Unsupported qcow2 version ${dv.getUint32(4)}`, {
        ...where,
        field: 'version',
      });
    }
    throw new BlockError('bad-magic', 'not a qcow2 image', { ...where, field: 'magic' });
  }
  // The header cluster holds the extensions and the backing file name.
  const bits = new DataView(head.buffer, head.byteOffset, head.length).getUint32(20);
  if (bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS) {
    throw new BlockError('invalid-header', `Unsupported cluster size: 2^${bits}`, { ...where, field: 'cluster_bits' });
  }
  const cluster0 = new Uint8Array(2 ** bits);
  if (head.length >= cluster0.length) cluster0.set(head.subarray(0, cluster0.length));
  else await readZeroFilled(storage, 0, cluster0);
  const header = parseHeader(cluster0, fileSize, where);
  if (lazyRefcounts && header.version < 3) {
    throw new BlockError(
      'invalid-argument',
      'Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level',
      { ...where, field: 'driverOptions.lazy-refcounts' },
    );
  }

  // The snapshot table (QEMU reads it at open too): bounded, every entry checked (snapshots.ts).
  const state: SnapshotState = { table: await readSnapshotTable(storage, header, fileSize) };
  const snapshots = state.table.snapshots;
  // `snapshot`: the image as it was at that snapshot (qemu-img convert -l), read-only.
  let active = header;
  if (snapshotName !== undefined) {
    const sn = findSnapshot(snapshots, snapshotName);
    if (sn === undefined) {
      throw new BlockError('invalid-argument', `Failed to load snapshot: Can't find snapshot '${snapshotName}'`, {
        ...where,
        field: 'driverOptions.snapshot',
      });
    }
    if (!options.readOnly) {
      throw new BlockError('invalid-argument', 'a snapshot can only be opened read-only', {
        ...where,
        field: 'driverOptions.snapshot',
      });
    }
    if (Math.ceil(sn.diskSize / (header.clusterSize * (header.clusterSize / 8))) > sn.l1Size) {
      throw new BlockError(
        'invalid-header',
        `Snapshot L1 table is too small for its disk size (snapshot ${sn.id})`,
        where,
      );
    }
    if (sn.l1Size > 0 && sn.l1TableOffset + sn.l1Size * 8 > fileSize) {
      throw new BlockError('truncated', `Snapshot L1 table (snapshot ${sn.id}) lies past the end of the file`, where);
    }
    active = { ...header, size: sn.diskSize, l1Size: sn.l1Size, l1TableOffset: sn.l1TableOffset };
  }
  const l1 = new Uint8Array(active.l1Size * 8);
  if (l1.length > 0) await readZeroFilled(storage, active.l1TableOffset, l1);

  let backing: BackingReference | undefined;
  if (header.backingName !== undefined) {
    const text = decodeExactly(header.backingName);
    backing =
      text !== undefined
        ? { path: text }
        : { path: new TextDecoder('utf-8').decode(header.backingName), rawPath: header.backingName };
    if (header.backingFormat !== undefined) backing.format = header.backingFormat;
  }
  let image: Qcow2Image;
  // A snapshot opens read-only (refused above otherwise), at the snapshot's L1 table and size.
  if (options.readOnly) image = new Qcow2Image(qcow2Driver, storage, active, l1, fileSize, backing);
  else image = await openWritable();
  return Object.assign(image, {
    // qemu-img check (check.ts works on the storage itself; the CLI opens an image just for it).
    // check.ts walks standard 8-byte L2 entries: an extended-L2 image would read as corrupt (and
    // -r would "repair" it), so it is refused until check learns subclusters.
    check: (repair: RepairRequest): Promise<DriverCheckResult> =>
      (header.incompatibleFeatures & BigInt(INCOMPAT_EXTENDED_L2)) !== 0n
        ? Promise.reject(
            new BlockError(
              'not-supported',
              'checking qcow2 images with extended L2 entries (subclusters) is not supported yet',
              { ...where, field: 'incompatible_features' },
            ),
          )
        : checkQcow2(storage, header, repair),
    // qemu-img amend (amend.ts); a new refcount width goes through the open image's caches.
    amend: (opts: ReadonlyMap<string, string>, context: ResizeOptions): Promise<void> =>
      amendQcow2(
        storage,
        header,
        opts,
        options.readOnly
          ? undefined
          : {
              writeBackAll: () => image.writeBackAll(),
              reloadRefcounts: () => image.reloadRefcounts(),
              resize: (size) => image.resize(size, context),
              snapshotEngine: () => image.snapshotEngine(),
            },
      ),
    // qemu-img info's cluster-size, dirty-flag and snapshots.
    infoExtras: (): InfoExtras => {
      return {
        clusterSize: header.clusterSize,
        dirty: (header.incompatibleFeatures & BigInt(INCOMPAT_DIRTY)) !== 0n,
        snapshots: state.table.snapshots.map(snapshotInfo),
      };
    },
    // qemu-img snapshot -c/-a/-d (snapshot-write.ts), on writable opens.
    snapshot: (request: SnapshotRequest): Promise<void> => snapshotRequest(image, state, request, storage.path),
  });

  async function openWritable(): Promise<Qcow2Image> {
    const incompat = Number(header.incompatibleFeatures & 0xffffffffn);
    const forCheck = options.forCheck === true;
    if ((incompat & INCOMPAT_CORRUPT) !== 0 && !forCheck) {
      throw new BlockError(
        'not-supported',
        'the image is marked corrupt (qcow2 corrupt bit): it opens read-only; repair it with qemu-img check -r all',
        { ...where, field: 'incompatible_features', code: 'EACCES' },
      );
    }
    // Before any repair: check.ts walks standard L2 entries only.
    if ((incompat & INCOMPAT_EXTENDED_L2) !== 0) {
      throw new BlockError(
        'not-supported',
        'writing qcow2 images with extended L2 entries (subclusters) is not supported: they open read-only',
        { ...where, field: 'incompatible_features' },
      );
    }
    if ((incompat & INCOMPAT_DIRTY) !== 0 && !forCheck) {
      // QEMU's qcow2_do_open: a dirty image opened writable is checked and repaired first (refcounts
      // rebuilt from the L1/L2 tables, leaks freed, the dirty bit cleared), then opened afresh, before
      // the engine has read a refcount.
      const repaired = await checkQcow2(storage, header, { leaks: true, corruptions: true });
      for (const line of repaired.messages) options.onRepair?.(line);
      if (
        repaired.checkErrors > 0
        || repaired.corruptions > 0
        || (header.incompatibleFeatures & BigInt(INCOMPAT_DIRTY)) !== 0n
      ) {
        throw new BlockError('io', 'Could not repair dirty image', {
          ...where,
          field: 'incompatible_features',
          code: 'EIO',
        });
      }
      const again: DriverOpenOptions = { ...options };
      delete again.probe;
      return (await openQcow2(storage, again)) as Qcow2Image;
    }
    // The refcount table (at most 8 MiB, checked by parseHeader) stays in memory while writable.
    const refcountTable = new Uint8Array(header.refcountTableClusters * header.clusterSize);
    await readZeroFilled(storage, header.refcountTableOffset, refcountTable);
    return new Qcow2Image(qcow2Driver, storage, header, l1, fileSize, backing, {
      mode: options.cache,
      refcountTable,
      lazyRefcounts,
    });
  }
}

/** Runs a create, apply or delete request on a writable image (the core drains requests first). */
async function snapshotRequest(
  image: Qcow2Image,
  state: SnapshotState,
  request: SnapshotRequest,
  path: string,
): Promise<void> {
  const writer = new SnapshotWriter(image.snapshotEngine(), state);
  const list = state.table.snapshots;
  if (request.action === 'create') {
    const now = Date.now();
    await writer.create(
      request.name,
      request.dateSec ?? Math.floor(now / 1000),
      request.dateNsec ?? (now % 1000) * 1_000_000,
    );
    return;
  }
  const spec = request.snapshot;
  // qemu-img snapshot -a looks up an ID, then a name (qcow2_snapshot_goto); -d a name only
  // (bdrv_snapshot_find). Both take `snapshot.id=ID` and `snapshot.name=NAME` to say which.
  const sn =
    request.action === 'apply' || spec.startsWith('snapshot.id=') || spec.startsWith('snapshot.name=')
      ? findSnapshot(list, spec)
      : list.find((s) => s.name === spec);
  if (sn === undefined) {
    throw new BlockError('invalid-argument', `Can't find snapshot '${spec}'`, {
      path,
      driver: 'qcow2',
      field: 'snapshot',
      code: 'ENOENT',
    });
  }
  if (request.action === 'apply') await writer.apply(sn);
  else await writer.delete(sn);
}

/** qemu's bdrv_snapshot_load_tmp_by_id_or_name: `snapshot.id=ID`, `snapshot.name=NAME`, else an ID, then a name. */
export function findSnapshot(list: readonly Qcow2Snapshot[], spec: string): Qcow2Snapshot | undefined {
  if (spec.startsWith('snapshot.id=')) return list.find((s) => s.id === spec.slice(12));
  if (spec.startsWith('snapshot.name=')) return list.find((s) => s.name === spec.slice(14));
  return list.find((s) => s.id === spec) ?? list.find((s) => s.name === spec);
}

function snapshotInfo(s: Qcow2Snapshot): SnapshotInfo {
  const info: SnapshotInfo = {
    id: s.id,
    name: s.name,
    vmStateSize: s.vmStateSize,
    dateSec: s.dateSec,
    dateNsec: s.dateNsec,
    vmClockNsec: s.vmClockNsec,
  };
  if (s.icount >= 0) info.icount = s.icount;
  return info;
}

function decodeExactly(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
