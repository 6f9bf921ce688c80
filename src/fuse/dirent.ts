// Codec of READDIR / READDIRPLUS replies (fuse_dirent, fuse_direntplus): packs entries into
// the size the kernel asked for. Pure.
import { ENTRY_OUT_BYTES, entryOutInto, type NodeAttr, type Validity } from './attr.ts';
import { Writer } from './wire.ts';

const DIRENT_HEADER_BYTES = 24;
const align8 = (n: number): number => (n + 7) & ~7;

export interface DirentOut {
  ino: number;
  /** Cookie of the entry after this one. */
  nextCookie: number;
  nameBytes: Uint8Array;
  /** DT_* type. */
  type: number;
}

export function direntBytes(e: DirentOut, plus: boolean): number {
  return align8((plus ? ENTRY_OUT_BYTES : 0) + DIRENT_HEADER_BYTES + e.nameBytes.length);
}

/** Packs as many entries as fit in `maxBytes`. `plus` entries carry their lookup reply. */
export function encodeDirents(entries: ReadonlyArray<DirentOut & { entry?: { nodeId: number; generation: number; attr: NodeAttr } }>,
  plus: boolean, valid: Validity): Uint8Array {
  let total = 0;
  for (const e of entries) total += direntBytes(e, plus);
  const w = new Writer(total);
  for (const e of entries) {
    const start = w.pos;
    if (plus) entryOutInto(w, e.entry?.nodeId ?? 0, e.entry?.generation ?? 0, e.entry?.attr, valid, valid);
    w.u64(e.ino).u64(e.nextCookie).u32(e.nameBytes.length).u32(e.type).bytesAt(e.nameBytes);
    w.pos = start + direntBytes(e, plus);
  }
  return w.bytes;
}
