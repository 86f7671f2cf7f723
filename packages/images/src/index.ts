import {
  DriverRegistry,
  createImage as coreCreateImage,
  openImage as coreOpenImage,
  type CreateImageOptions,
  type Image,
  type OpenImageOptions,
} from '@blk/core';
import { cowDriver } from '@blk/cow';
import { rawDriver } from '@blk/raw';

export * from '@blk/core';
export { cowDriver } from '@blk/cow';
export { rawDriver } from '@blk/raw';

/** A new registry holding every built-in format (cow first; raw, the last resort, scores 1). */
export function builtinRegistry(): DriverRegistry {
  return new DriverRegistry([cowDriver, rawDriver]);
}

/**
 * The registry `openImage` and `createImage` use here. Register a driver of
 * your own with `registry.register(myDriver)`, and it is probed like the rest.
 */
export const registry: DriverRegistry = builtinRegistry();

export type OpenOptions = Omit<OpenImageOptions, 'registry'> & { registry?: DriverRegistry };
export type CreateOptions = Omit<CreateImageOptions, 'registry'> & { registry?: DriverRegistry };

/** Opens an image of any registered format (probed unless `format` is given). */
export function openImage(path: string, options: OpenOptions = {}): Promise<Image> {
  return coreOpenImage(path, { ...options, registry: options.registry ?? registry });
}

/** Creates an image of the given format. */
export function createImage(path: string, options: CreateOptions): Promise<void> {
  return coreCreateImage(path, { ...options, registry: options.registry ?? registry });
}
