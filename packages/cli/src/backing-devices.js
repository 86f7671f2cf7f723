/**
 * --backing-devices: whether images may name block devices as backing files
 * (BackingPolicy.allowDevices). A device path read from an image is refused by
 * default (the image may be a stranger's); the user allows it for their own
 * images, such as a UML COW file over /dev/sdX. A module of its own, without
 * imports, so that blk.ts can set it before loading any command.
 */
let allowed = false;
/** Called once the option is seen on the command line. */
export function allowBackingDevices() {
    allowed = true;
}
/** What the blk command was told (false for library callers, who set JobOptions.backingDevices). */
export function backingDevicesAllowed() {
    return allowed;
}
