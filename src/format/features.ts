// Feature flags by name (superblock s_feature_compat / s_feature_incompat / s_feature_ro_compat)
// and which of them ext4kit can read. Names follow mke2fs's -O spelling.

export type FeatureKind = 'compat' | 'incompat' | 'ro_compat';

export const COMPAT = {
  dir_prealloc: 0x1, imagic_inodes: 0x2, has_journal: 0x4, ext_attr: 0x8, resize_inode: 0x10,
  dir_index: 0x20, lazy_bg: 0x40, exclude_inode: 0x80, exclude_bitmap: 0x100, sparse_super2: 0x200,
  fast_commit: 0x400, stable_inodes: 0x800, orphan_file: 0x1000,
} as const;

export const INCOMPAT = {
  compression: 0x1, filetype: 0x2, needs_recovery: 0x4, journal_dev: 0x8, meta_bg: 0x10,
  extent: 0x40, '64bit': 0x80, mmp: 0x100, flex_bg: 0x200, ea_inode: 0x400, dirdata: 0x1000,
  metadata_csum_seed: 0x2000, large_dir: 0x4000, inline_data: 0x8000, encrypt: 0x10000, casefold: 0x20000,
} as const;

export const RO_COMPAT = {
  sparse_super: 0x1, large_file: 0x2, btree_dir: 0x4, huge_file: 0x8, uninit_bg: 0x10, dir_nlink: 0x20,
  extra_isize: 0x40, has_snapshot: 0x80, quota: 0x100, bigalloc: 0x200, metadata_csum: 0x400,
  replica: 0x800, read_only: 0x1000, project: 0x2000, shared_blocks: 0x4000, verity: 0x8000,
  orphan_present: 0x10000,
} as const;

export type CompatName = keyof typeof COMPAT;
export type IncompatName = keyof typeof INCOMPAT;
export type RoCompatName = keyof typeof RO_COMPAT;
export type FeatureName = CompatName | IncompatName | RoCompatName;

const TABLES: Record<FeatureKind, Record<string, number>> = { compat: COMPAT, incompat: INCOMPAT, ro_compat: RO_COMPAT };

/** Aliases mke2fs accepts. */
const ALIASES: Record<string, FeatureName> = { gdt_csum: 'uninit_bg', extents: 'extent', recover: 'needs_recovery' };

/** Incompat features whose on-disk format the read path understands. */
export const READABLE_INCOMPAT: number =
  INCOMPAT.filetype | INCOMPAT.needs_recovery | INCOMPAT.meta_bg | INCOMPAT.extent | INCOMPAT['64bit'] |
  INCOMPAT.mmp | INCOMPAT.flex_bg | INCOMPAT.ea_inode | INCOMPAT.metadata_csum_seed | INCOMPAT.large_dir |
  INCOMPAT.inline_data | INCOMPAT.encrypt | INCOMPAT.casefold;

/** ro_compat features known to ext4kit; anything else forces a read-only open. */

export interface FeatureSet { compat: number; incompat: number; roCompat: number }

export function featureKind(name: string): { kind: FeatureKind; bit: number; name: FeatureName } | undefined {
  const canonical = (ALIASES[name] ?? name) as FeatureName;
  for (const kind of ['compat', 'incompat', 'ro_compat'] as const) {
    const bit = TABLES[kind][canonical];
    if (bit !== undefined) return { kind, bit, name: canonical };
  }
  return undefined;
}

export function hasFeature(f: FeatureSet, name: FeatureName): boolean {
  const k = featureKind(name)!;
  const word = k.kind === 'compat' ? f.compat : k.kind === 'incompat' ? f.incompat : f.roCompat;
  return (word & k.bit) !== 0;
}

/** Names of the set bits of one word; unknown bits are shown as FEATURE_C12-style names like e2fsprogs. */
export function featureNames(kind: FeatureKind, word: number): string[] {
  const out: string[] = [];
  const table = TABLES[kind];
  const prefix = kind === 'compat' ? 'C' : kind === 'incompat' ? 'I' : 'R';
  for (let bit = 0; bit < 32; bit++) {
    const mask = (1 << bit) >>> 0;
    if (!(word & mask)) continue;
    const name = Object.keys(table).find((k) => table[k] === mask);
    out.push(name ?? `FEATURE_${prefix}${bit}`);
  }
  return out;
}

export function allFeatureNames(f: FeatureSet): string[] {
  return [...featureNames('compat', f.compat), ...featureNames('incompat', f.incompat), ...featureNames('ro_compat', f.roCompat)];
}
