// open(2) flags as Node accepts them: strings ('r', 'r+', 'w', 'wx', 'a', ...) or numbers.

export type OpenFlags = string | number;

export interface ParsedFlags {
  read: boolean;
  write: boolean;
  create: boolean;
  exclusive: boolean;
  truncate: boolean;
  append: boolean;
}

const O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0o100, O_EXCL = 0o200, O_TRUNC = 0o1000, O_APPEND = 0o2000;

const STRINGS: Record<string, number> = {
  r: 0, rs: 0, sr: 0, 'r+': O_RDWR, 'rs+': O_RDWR, 'sr+': O_RDWR,
  w: O_TRUNC | O_CREAT | O_WRONLY, wx: O_TRUNC | O_CREAT | O_WRONLY | O_EXCL, xw: O_TRUNC | O_CREAT | O_WRONLY | O_EXCL,
  'w+': O_TRUNC | O_CREAT | O_RDWR, 'wx+': O_TRUNC | O_CREAT | O_RDWR | O_EXCL, 'xw+': O_TRUNC | O_CREAT | O_RDWR | O_EXCL,
  a: O_APPEND | O_CREAT | O_WRONLY, ax: O_APPEND | O_CREAT | O_WRONLY | O_EXCL, xa: O_APPEND | O_CREAT | O_WRONLY | O_EXCL,
  as: O_APPEND | O_CREAT | O_WRONLY, sa: O_APPEND | O_CREAT | O_WRONLY,
  'a+': O_APPEND | O_CREAT | O_RDWR, 'ax+': O_APPEND | O_CREAT | O_RDWR | O_EXCL, 'xa+': O_APPEND | O_CREAT | O_RDWR | O_EXCL,
  'as+': O_APPEND | O_CREAT | O_RDWR, 'sa+': O_APPEND | O_CREAT | O_RDWR,
};

export function parseOpenFlags(flags: OpenFlags): ParsedFlags {
  const n = typeof flags === 'number' ? flags : STRINGS[flags];
  if (n === undefined) throw new TypeError(`invalid open flags '${flags}'`);
  const acc = n & 3;
  return {
    read: acc === 0 || acc === O_RDWR, write: acc === O_WRONLY || acc === O_RDWR,
    create: (n & O_CREAT) !== 0, exclusive: (n & O_EXCL) !== 0, truncate: (n & O_TRUNC) !== 0, append: (n & O_APPEND) !== 0,
  };
}
