/** undefined when `backing` may be read for `overlay`'s owner; else why not. */
export declare function ownerMayRead(overlay: string, backing: string): string | undefined;
