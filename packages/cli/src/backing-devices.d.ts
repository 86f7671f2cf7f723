/** Called once the option is seen on the command line. */
export declare function allowBackingDevices(): void;
/** What the blk command was told (false for library callers, who set JobOptions.backingDevices). */
export declare function backingDevicesAllowed(): boolean;
