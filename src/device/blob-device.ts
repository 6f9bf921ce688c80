// The earlier name of FileDevice, kept so existing code goes on working.
export { FileDevice as BlobDevice } from './file-device.ts';
