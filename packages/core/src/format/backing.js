/* How an image names its backing file, and what a new backing reference holds. */
export {};
