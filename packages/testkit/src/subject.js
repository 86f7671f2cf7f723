import { MemoryVfs, createImage, openImage, } from '@blk/core/portable';
import { pattern, prng } from './pattern.js';
/**
 * A subject made of a base image and zero or more overlays, each created with
 * `createImage` (so every overlay records the layer below as its backing
 * file), filled as `layers[i].fill` says, and opened top-down with each layer's
 * format. `initial` is computed independently of the code under test: the
 * fill patterns applied in order, each layer's view cut or zero-extended to
 * its size (reads past a shorter backing file read zeros).
 *
 * A one-layer chain is a single image: `chainSubject({ registry, layers: [{ format: 'raw', size: 65536 }] })`.
 */
export function chainSubject(options) {
    const layers = options.layers;
    if (layers.length === 0)
        throw new Error('chainSubject: at least one layer is needed');
    const sizes = [];
    for (const [i, layer] of layers.entries()) {
        const size = layer.size ?? sizes[i - 1];
        if (size === undefined)
            throw new Error('chainSubject: the base layer needs a size');
        if (!Number.isSafeInteger(size) || size <= 0)
            throw new Error(`chainSubject: layer ${i} has size ${size}`);
        sizes.push(size);
    }
    const dir = (options.dir ?? '/images').replace(/\/+$/, '');
    const paths = layers.map((layer, i) => `${dir}/layer${i}.${layer.format}`);
    const name = options.name ?? [...layers].reverse().map((l) => l.format).join('>');
    const maxExtent = options.maxFillExtent ?? 3 * 4096 + 17;
    /** Open options for layer `top` (its backing layers open with their listed formats). */
    const openOptionsFor = (top, vfs, readOnly) => {
        const opts = {
            registry: options.registry,
            vfs,
            readOnly,
            format: layers[top].format,
            backing: { format: (_ref, depth) => layers[top - depth]?.format ?? 'raw' },
        };
        const driverOptions = layers[top].openDriverOptions;
        if (driverOptions)
            opts.driverOptions = driverOptions;
        return opts;
    };
    return {
        name,
        size: sizes[sizes.length - 1],
        async setup({ vfs, seed }) {
            const random = prng(seed ^ 0x5eed);
            let content = new Uint8Array(0);
            for (const [i, layer] of layers.entries()) {
                const size = sizes[i];
                if (i === 0) {
                    await createImage(paths[0], {
                        registry: options.registry, vfs, format: layer.format, size,
                        ...(layer.driverOptions ? { driverOptions: layer.driverOptions } : {}),
                    });
                }
                else {
                    const below = layers[i - 1].format;
                    await createImage(paths[i], {
                        registry: options.registry, vfs, format: layer.format, size,
                        backing: below === 'raw' ? paths[i - 1] : { path: paths[i - 1], format: below },
                        ...(layer.driverOptions ? { driverOptions: layer.driverOptions } : {}),
                    });
                }
                const next = new Uint8Array(size);
                next.set(content.subarray(0, Math.min(size, content.length)));
                content = next;
                const fill = layer.fill ?? (i === 0 ? 'random' : i === layers.length - 1 ? 'none' : 4);
                const extents = [];
                if (fill === 'random') {
                    extents.push([0, pattern(size, random())]);
                }
                else if (typeof fill === 'number') {
                    for (let k = 0; k < fill; k++) {
                        const offset = random() % size;
                        const length = 1 + (random() % Math.min(maxExtent, size - offset));
                        extents.push([offset, pattern(length, random())]);
                    }
                }
                if (extents.length > 0) {
                    const image = await openImage(paths[i], openOptionsFor(i, vfs, false));
                    try {
                        for (const [offset, data] of extents) {
                            await image.write(offset, data);
                            content.set(data, offset);
                        }
                    }
                    finally {
                        await image.close();
                    }
                }
            }
            const top = layers.length - 1;
            const openOptions = options.openOptions;
            return {
                initial: content,
                open: ({ vfs: through, readOnly }) => openImage(paths[top], {
                    ...openOptionsFor(top, through, readOnly),
                    ...openOptions,
                }),
            };
        },
    };
}
