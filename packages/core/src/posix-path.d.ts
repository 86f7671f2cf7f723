/**
 * POSIX path arithmetic without node:path, so that the portable core (and
 * MemoryVfs) runs anywhere. Paths read from images are Linux paths.
 */
export declare function normalizePosix(path: string): string;
export declare function resolvePosix(base: string, path: string): string;
export declare function dirnamePosix(path: string): string;
/** True when `path` is `dir` itself or lies below it (both absolute and normalized). */
export declare function isWithin(dir: string, path: string): boolean;
