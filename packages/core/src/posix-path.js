/**
 * POSIX path arithmetic without node:path, so that the portable core (and
 * MemoryVfs) runs anywhere. Paths read from images are Linux paths.
 */
export function normalizePosix(path) {
    const absolute = path.startsWith('/');
    const parts = [];
    for (const part of path.split('/')) {
        if (part === '' || part === '.')
            continue;
        if (part === '..') {
            if (parts.length > 0 && parts[parts.length - 1] !== '..')
                parts.pop();
            else if (!absolute)
                parts.push('..');
            continue;
        }
        parts.push(part);
    }
    const joined = parts.join('/');
    return absolute ? `/${joined}` : joined === '' ? '.' : joined;
}
export function resolvePosix(base, path) {
    return normalizePosix(path.startsWith('/') ? path : `${base}/${path}`);
}
export function dirnamePosix(path) {
    const normalized = normalizePosix(path);
    const slash = normalized.lastIndexOf('/');
    if (slash < 0)
        return '.';
    if (slash === 0)
        return '/';
    return normalized.slice(0, slash);
}
/** True when `path` is `dir` itself or lies below it (both absolute and normalized). */
export function isWithin(dir, path) {
    if (dir === '/')
        return path.startsWith('/');
    return path === dir || path.startsWith(`${dir}/`);
}
