export interface FuzzStats {
    inputs: number;
    opened: number;
    probedAs: Record<string, number>;
    kinds: Record<string, number>;
    maxMs: number;
    maxGrowth: number;
    largestRead: number;
    failures: string[];
}
export declare function runFuzz(count: number, first?: number): Promise<FuzzStats>;
