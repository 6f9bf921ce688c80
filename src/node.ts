// Node entry: the core plus paths to image files (via NodeFileDevice).
import { Ext4 as CoreExt4 } from './api/ext4.ts';
import { NodeFileDevice } from './device/node-file-device.ts';
import type { BlockDevice } from './device/block-device.ts';
import type { OpenOptions } from './api/types.ts';
import type { MkfsOptions, MkfsResult } from './mkfs/mkfs.ts';

export * from './index.ts';
export { NodeFileDevice } from './device/node-file-device.ts';
export { mount, type FuseMount, type FuseMountOptions } from './fuse/mount.ts';

export class Ext4 extends CoreExt4 {
  /** Opens an image file by path, or any block device. */
  static override async open(pathOrDevice: string | BlockDevice, opts: OpenOptions = {}): Promise<CoreExt4> {
    const device = typeof pathOrDevice === 'string' ? await NodeFileDevice.open(pathOrDevice, opts) : pathOrDevice;
    try {
      return await CoreExt4.open(device, opts);
    } catch (e) {
      if (typeof pathOrDevice === 'string') await device.close();
      throw e;
    }
  }

  /** Creates an image: a path makes (or truncates) a sparse file of `sizeBytes`. */
  static override async mkfs(pathOrDevice: string | BlockDevice, options: MkfsOptions & { sizeBytes?: number } = {}): Promise<MkfsResult> {
    if (typeof pathOrDevice !== 'string') return CoreExt4.mkfs(pathOrDevice, options);
    if (options.sizeBytes === undefined) throw new TypeError('mkfs of a path needs sizeBytes');
    const device = await NodeFileDevice.create(pathOrDevice, options.sizeBytes);
    try {
      return await CoreExt4.mkfs(device, { deviceZeroed: true, ...options });
    } finally {
      await device.close();
    }
  }
}
