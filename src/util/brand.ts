// Branded number types: numbers in different spaces must not mix (blocks vs clusters is the
// classic bigalloc bug). Brands cost nothing at run time.

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Physical block number on the filesystem. */
export type FsBlock = Brand<number, 'FsBlock'>;
/** Logical block number inside a file. */
export type FileBlock = Brand<number, 'FileBlock'>;
/** Physical cluster number (== FsBlock >> clusterBits). */
export type Cluster = Brand<number, 'Cluster'>;
/** Block group number. */
export type GroupNo = Brand<number, 'GroupNo'>;
/** Inode number (1-based). */
export type InodeNo = Brand<number, 'InodeNo'>;

export const fsBlock = (n: number): FsBlock => n as FsBlock;
export const fileBlock = (n: number): FileBlock => n as FileBlock;
export const cluster = (n: number): Cluster => n as Cluster;
export const groupNo = (n: number): GroupNo => n as GroupNo;
export const inodeNo = (n: number): InodeNo => n as InodeNo;
