/** The message for `name`, which is none of `commands`. */
export declare function unknownCommandMessage(name: string, commands: readonly string[]): string;
