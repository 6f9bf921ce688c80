// Codecs of namespace requests: LOOKUP, MKDIR, MKNOD, SYMLINK, LINK, UNLINK, RMDIR, RENAME,
// RENAME2, FORGET, BATCH_FORGET. Pure.
import { Reader } from './wire.ts';

export function decodeName(body: Uint8Array): Uint8Array {
  return new Reader(body).cstr();
}

export interface MkdirIn { mode: number; umask: number; nameBytes: Uint8Array }
export function decodeMkdirIn(body: Uint8Array): MkdirIn {
  const r = new Reader(body);
  const mode = r.u32(), umask = r.u32();
  return { mode, umask, nameBytes: r.cstr() };
}

export interface MknodIn { mode: number; rdev: number; umask: number; nameBytes: Uint8Array }
export function decodeMknodIn(body: Uint8Array): MknodIn {
  const r = new Reader(body);
  const mode = r.u32(), rdev = r.u32(), umask = r.u32();
  r.skip(4);
  return { mode, rdev, umask, nameBytes: r.cstr() };
}

/** SYMLINK: the new entry's name, then the link target. */
export function decodeSymlinkIn(body: Uint8Array): { nameBytes: Uint8Array; target: Uint8Array } {
  const r = new Reader(body);
  const nameBytes = r.cstr();
  return { nameBytes, target: r.cstr() };
}

export function decodeLinkIn(body: Uint8Array): { oldNodeId: number; nameBytes: Uint8Array } {
  const r = new Reader(body);
  const oldNodeId = r.u64();
  return { oldNodeId, nameBytes: r.cstr() };
}

export interface RenameIn { newDirNodeId: number; flags: number; oldName: Uint8Array; newName: Uint8Array }
export function decodeRenameIn(body: Uint8Array, v2: boolean): RenameIn {
  const r = new Reader(body);
  const newDirNodeId = r.u64();
  let flags = 0;
  if (v2) { flags = r.u32(); r.skip(4); }
  const oldName = r.cstr();
  return { newDirNodeId, flags, oldName, newName: r.cstr() };
}

export function decodeForgetIn(body: Uint8Array): number {
  return new Reader(body).u64();
}

export function decodeBatchForgetIn(body: Uint8Array): Array<{ nodeId: number; nlookup: number }> {
  const r = new Reader(body);
  const count = r.u32();
  r.skip(4);
  const out: Array<{ nodeId: number; nlookup: number }> = [];
  for (let i = 0; i < count && r.pos + 16 <= body.length; i++) out.push({ nodeId: r.u64(), nlookup: r.u64() });
  return out;
}
