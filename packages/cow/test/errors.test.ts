/** Typed errors on crafted files: one test per kind of damage, each checking kind, field and the file name. */
import { describe, expect, it } from 'vitest';
import { BlockError, MemoryFile, MemoryStorage, type BlockErrorKind } from '@blk/core';
import { cowDriver, encodeHeader, type CowHeader } from '../src/index.js';

const PATH = '/images/bad.cow';

function v3(overrides: Partial<CowHeader> = {}): CowHeader {
  return {
    variant: 'v3',
    magicOrder: 'be',
    version: 3,
    backingFile: '/tmp/base.img',
    mtime: 1,
    size: 1 << 20,
    sectorSize: 512,
    alignment: 4096,
    cowFormat: 0,
    ...overrides,
  };
}

/** A file holding `header` bytes, extended to `length` (default: a generous 1 MiB + 64 KiB). */
function fileOf(header: Uint8Array, length = (1 << 20) + 65536): MemoryFile {
  const file = new MemoryFile(header);
  file.truncate(Math.max(length, 0));
  return file;
}

async function openError(file: MemoryFile, driverOptions?: Record<string, unknown>): Promise<BlockError> {
  try {
    const image = await cowDriver.open(new MemoryStorage(file, PATH), {
      readOnly: true,
      cache: 'writeback',
      driverOptions,
    });
    await image.close();
  } catch (err) {
    if (err instanceof BlockError) return err;
    throw err;
  }
  throw new Error('open succeeded');
}

function expectError(err: BlockError, kind: BlockErrorKind, field: string, message?: RegExp): void {
  expect(err.kind).toBe(kind);
  expect(err.field).toBe(field);
  expect(err.path).toBe(PATH);
  expect(err.message.startsWith(`${PATH}: `)).toBe(true);
  if (message) expect(err.message).toMatch(message);
}

describe('bad-magic', () => {
  it('a file that does not start with OOOM or MOOO', async () => {
    const bytes = encodeHeader(v3());
    bytes.set([0x51, 0x46, 0x49, 0xfb]);
    expectError(await openError(fileOf(bytes)), 'bad-magic', 'magic');
  });

  it('an empty file', async () => {
    expectError(await openError(new MemoryFile()), 'bad-magic', 'magic');
  });
});

describe('unsupported-version', () => {
  it('version 4', async () => {
    const bytes = encodeHeader(v3());
    bytes.set([0, 0, 0, 4], 4);
    expectError(await openError(fileOf(bytes)), 'unsupported-version', 'version', /version 4/);
  });

  it('cow_format 1', async () => {
    expectError(await openError(fileOf(encodeHeader(v3({ cowFormat: 1 })))), 'unsupported-version', 'cow_format');
  });
});

describe('truncated', () => {
  it('a v3 file shorter than its 4128-byte header', async () => {
    const bytes = encodeHeader(v3()).subarray(0, 4000);
    expectError(await openError(fileOf(bytes, 4000)), 'truncated', 'header', /4128/);
  });

  it('a file ending inside the version field', async () => {
    expectError(await openError(new MemoryFile(new Uint8Array([0x4f, 0x4f, 0x4f, 0x4d, 0]))), 'truncated', 'header');
  });

  it('a v2-qemu-lp64 file named by the caller but shorter than 1056 bytes', async () => {
    const bytes = encodeHeader({
      variant: 'v2-qemu-lp64',
      magicOrder: 'be',
      version: 2,
      backingFile: '',
      mtime: 0,
      size: 4096,
      sectorSize: 512,
    });
    expectError(
      await openError(fileOf(bytes.subarray(0, 1050), 1050), { variant: 'v2-qemu-lp64' }),
      'truncated',
      'header',
    );
  });

  it('a file that ends before the end of its bitmap', async () => {
    // 1 MiB: bitmap 8192 + 256 bytes; cut the file 1 byte short of it.
    expectError(await openError(fileOf(encodeHeader(v3()), 8192 + 255)), 'truncated', 'bitmap', /8448/);
  });

  it('a file that ends exactly at the end of its bitmap opens (QEMU-created files do)', async () => {
    const file = fileOf(encodeHeader(v3()), 8192 + 256);
    const image = await cowDriver.open(new MemoryStorage(file, PATH), { readOnly: true, cache: 'writeback' });
    expect(image.size).toBe(1 << 20);
    await image.close();
  });
});

describe('invalid-header', () => {
  it('sectorsize 4096', async () => {
    expectError(
      await openError(fileOf(encodeHeader(v3({ sectorSize: 4096 })))),
      'invalid-header',
      'sectorsize',
      /4096/,
    );
  });

  it('size not a multiple of 512', async () => {
    expectError(await openError(fileOf(encodeHeader(v3({ size: 5000 })))), 'invalid-header', 'size', /5000/);
  });

  it('size 0', async () => {
    expectError(await openError(fileOf(encodeHeader(v3({ size: 0 })))), 'invalid-header', 'size', /size is 0/);
  });

  it('size above 2^53 - 1', async () => {
    const bytes = encodeHeader(v3());
    new DataView(bytes.buffer).setBigUint64(12, 2n ** 60n);
    expectError(await openError(fileOf(bytes)), 'invalid-header', 'size', /beyond what the file can address/);
  });

  it('size whose data area ends beyond 2^53 - 1', async () => {
    const size = Math.floor(Number.MAX_SAFE_INTEGER / 512) * 512;
    expectError(
      await openError(fileOf(encodeHeader(v3({ size })))),
      'invalid-header',
      'size',
      /data area ends at .* beyond/,
    );
  });

  it('alignment 0 (UML divides by zero)', async () => {
    expectError(
      await openError(fileOf(encodeHeader(v3({ alignment: 0 })))),
      'invalid-header',
      'alignment',
      /alignment is 0/,
    );
  });

  it('alignment not a power of two', async () => {
    expectError(
      await openError(fileOf(encodeHeader(v3({ alignment: 3000 })))),
      'invalid-header',
      'alignment',
      /power of two/,
    );
  });

  it('alignment above 1 GiB', async () => {
    expectError(
      await openError(fileOf(encodeHeader(v3({ alignment: 2 ** 31 })))),
      'invalid-header',
      'alignment',
      /1 GiB/,
    );
  });

  it('backing path field without a NUL terminator', async () => {
    const bytes = encodeHeader(v3());
    bytes.fill(0x41, 32, 4128);
    expectError(await openError(fileOf(bytes)), 'invalid-header', 'backing_file', /NUL/);
  });

  it('a version-2 header that fits none of the three v2 layouts', async () => {
    const bytes = new Uint8Array(4200);
    bytes.set([0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 2]);
    expectError(await openError(fileOf(bytes, 4200)), 'invalid-header', 'sectorsize', /driverOptions.variant/);
  });
});

describe('driver options', () => {
  it('a variant of another version than the file is invalid-argument', async () => {
    expectError(
      await openError(fileOf(encodeHeader(v3())), { variant: 'v2-uml' }),
      'invalid-argument',
      'variant',
      /version 3/,
    );
  });

  it('an unknown option name is invalid-argument naming it', async () => {
    expectError(await openError(fileOf(encodeHeader(v3())), { varient: 'v3' }), 'invalid-argument', 'varient');
  });

  it('an unknown variant name is invalid-argument', async () => {
    expectError(await openError(fileOf(encodeHeader(v3())), { variant: 'v4' }), 'invalid-argument', 'variant');
  });

  it('a non-positive bitmapCacheBytes is invalid-argument', async () => {
    expectError(
      await openError(fileOf(encodeHeader(v3())), { bitmapCacheBytes: 0 }),
      'invalid-argument',
      'bitmapCacheBytes',
    );
  });
});
