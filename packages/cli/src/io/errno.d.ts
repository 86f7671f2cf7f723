/** errno text for a failed request: a BlockError's kind, else its (or a Node error's) errno code. */
export declare function strerror(err: unknown): string;
