// Browser-safe entry: no node: imports reachable from here.
export { Ext4 } from './api/ext4.ts';
export type { Ext4Stats, Ext4Dirent, Ext4StatFs, Ext4Info, Ext4FileHandle, OpenOptions, ReadResult } from './api/types.ts';
export { Ext4Error, isExt4Error, type Ext4ErrorCode } from './errors/ext4-error.ts';
export type { BlockDevice } from './device/block-device.ts';
export { MemoryDevice } from './device/memory-device.ts';
export { BlobDevice } from './device/blob-device.ts';
export type { MkfsOptions, MkfsResult } from './mkfs/mkfs.ts';
export { FileDevice } from './device/file-device.ts';
export { HttpRangeDevice, type HttpRangeDeviceOptions } from './device/http-range-device.ts';
export { OffsetDevice } from './device/offset-device.ts';
