export interface CreateOpts {
    format: string;
    backing?: string;
    backingFormat?: string;
    options: string[];
    quiet?: boolean;
}
export declare function create(file: string, sizeArg: string | undefined, opts: CreateOpts): Promise<number>;
