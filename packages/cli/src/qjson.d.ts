/**
 * JSON as qemu-img prints it (qobject_to_json_pretty): four-space indents,
 * `"key": value`, non-ASCII as \uXXXX, and object keys in the order QEMU's
 * QDict iterates them. A QDict is a hash table of 512 buckets (tdb_hash of
 * the key); iteration walks the buckets in order and, inside a bucket, the
 * latest insertion first. Reproducing that order makes `blk info
 * --output=json` byte-identical to qemu-img's for the same fields.
 */
export type QValue = string | number | boolean | null | QValue[] | {
    [key: string]: QValue | undefined;
};
/** QEMU's tdb_hash(), in 32-bit unsigned arithmetic. */
export declare function tdbHash(name: string): number;
/** The keys of `obj` (undefined values dropped) in QDict iteration order. */
export declare function qdictOrder(obj: Record<string, unknown>): string[];
/** Serialises `value` as qemu-img's pretty JSON (no trailing newline). */
export declare function toQemuJson(value: QValue, indent?: number): string;
