// Runs operation sequences on two backends side by side, comparing every call's outcome
// (result or errno), and compares final trees (names, types, modes, owners, sizes, link
// counts, blocks, contents, symlink targets, xattrs; never inode numbers or times).
import { createHash } from 'node:crypto';
import { fillPattern } from '../byte-model.ts';
import { outcomeOf, type Backend, type BackendHandle, type Outcome, type StatLike } from './backend.ts';
import { describeOp, type Op } from './ops.ts';

export interface CompareOptions {
  /** Compare st_blocks (see the kept differences in test/differential.test.ts). */
  blocks: boolean;
  /** Compare file contents in trees (off where concurrent writers may land in either order). */
  contents?: boolean;
}

const digest = (b: Uint8Array): string => `${b.length}:${createHash('sha256').update(b).digest('hex').slice(0, 16)}`;
const statView = (s: StatLike, o: CompareOptions) => ({
  mode: '0o' + s.mode.toString(8), nlink: s.nlink, uid: s.uid, gid: s.gid, size: s.size, ...(o.blocks ? { blocks: s.blocks } : {}),
});

/** One backend's side of a sequence: its open handles by slot. */
export class Session {
  private readonly handles = new Map<number, BackendHandle>();
  constructor(readonly be: Backend, private readonly opts: CompareOptions) {}

  private handle(slot: number): BackendHandle {
    const h = this.handles.get(slot);
    if (!h) throw Object.assign(new Error('EBADF: no handle in this slot'), { code: 'EBADF' });
    return h;
  }

  /** Runs one operation; its outcome in a form both backends can be compared in. */
  run(op: Op): Promise<Outcome> {
    const be = this.be;
    const o = this.opts;
    return outcomeOf((async (): Promise<unknown> => {
      switch (op.k) {
        case 'writeFile': return be.writeFile(op.path, fillPattern(op.len, op.seed), op.flag, op.mode);
        case 'appendFile': return be.appendFile(op.path, fillPattern(op.len, op.seed));
        case 'readFile': return digest(await be.readFile(op.path));
        case 'open': {
          const old = this.handles.get(op.slot);
          if (old) { this.handles.delete(op.slot); await old.close(); }
          this.handles.set(op.slot, await be.open(op.path, op.flags, op.mode));
          return undefined;
        }
        case 'write': return this.handle(op.slot).write(fillPattern(op.len, op.seed), op.pos);
        case 'read': return digest(await this.handle(op.slot).read(op.len, op.pos));
        case 'ftruncate': return this.handle(op.slot).truncate(op.len);
        case 'fstat': return statView(await this.handle(op.slot).stat(), o);
        case 'close': { const h = this.handle(op.slot); this.handles.delete(op.slot); return h.close(); }
        case 'truncate': return be.truncate(op.path, op.len);
        case 'fallocate': return be.fallocate(op.path, op.mode, op.offset, op.len);
        case 'mkdir': return be.mkdir(op.path, op.mode);
        case 'rmdir': return be.rmdir(op.path);
        case 'unlink': return be.unlink(op.path);
        case 'rename': return be.rename(op.from, op.to);
        case 'link': return be.link(op.from, op.to);
        case 'symlink': return be.symlink(op.target, op.path);
        case 'readlink': return be.readlink(op.path);
        case 'chmod': return be.chmod(op.path, op.mode);
        case 'chown': return be.chown(op.path, op.uid, op.gid);
        case 'lchown': return be.lchown(op.path, op.uid, op.gid);
        case 'utimes': {
          await be.utimes(op.path, op.sec);
          return String((await be.stat(op.path)).mtimeNs); // what ext4 stored (clamped)
        }
        case 'setxattr': return be.setxattr(op.path, op.name, fillPattern(op.len, op.seed), op.flags);
        case 'getxattr': return digest(await be.getxattr(op.path, op.name));
        case 'listxattr': return (await be.listxattr(op.path)).sort();
        case 'removexattr': return be.removexattr(op.path, op.name);
        case 'readdir': return (await be.readdir(op.path)).sort();
        case 'stat': return statView(await be.stat(op.path), o);
        case 'lstat': return statView(await be.lstat(op.path), o);
      }
    })());
  }

  async closeAll(): Promise<void> {
    for (const h of this.handles.values()) await h.close().catch(() => undefined);
    this.handles.clear();
  }
}

export interface Mismatch { index: number; op: string; expected: Outcome; actual: Outcome }

/**
 * Runs `ops` on the reference (the kernel) and on the backend under test, one call at a time,
 * and lists the calls whose outcomes differ. `classify` may name a mismatch as a known one
 * (kept apart, not counted).
 */
export async function runSequence(ops: readonly Op[], reference: Backend, tested: Backend, opts: CompareOptions,
  classify: (op: Op, expected: Outcome, actual: Outcome) => string | undefined = () => undefined,
): Promise<{ mismatches: Mismatch[]; known: Array<Mismatch & { why: string }> }> {
  const ref = new Session(reference, opts);
  const dut = new Session(tested, opts);
  const mismatches: Mismatch[] = [];
  const known: Array<Mismatch & { why: string }> = [];
  try {
    for (const [index, op] of ops.entries()) {
      const expected = await ref.run(op);
      const actual = await dut.run(op);
      if (JSON.stringify(expected) === JSON.stringify(actual)) continue;
      const m = { index, op: describeOp(op), expected, actual };
      const why = classify(op, expected, actual);
      if (why) known.push({ ...m, why }); else mismatches.push(m);
    }
  } finally {
    await ref.closeAll();
    await dut.closeAll();
  }
  return { mismatches, known };
}

/** A tree as the comparison sees it: path → entry description. */
export type Tree = Map<string, Record<string, unknown>>;

export async function snapshot(be: Backend, opts: CompareOptions): Promise<Tree> {
  const out: Tree = new Map();
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await be.readdir(dir)).sort()) {
      const path = dir === '/' ? `/${name}` : `${dir}/${name}`;
      const st = await be.lstat(path);
      const e: Record<string, unknown> = statView(st, opts);
      const type = st.mode & 0o170000;
      if (type === 0o100000 && opts.contents !== false) e['data'] = digest(await be.readFile(path));
      if (type === 0o120000) e['target'] = await be.readlink(path);
      const xattrs: Record<string, string> = {};
      for (const x of (await be.listxattr(path)).sort()) xattrs[x] = digest(await be.getxattr(path, x));
      if (Object.keys(xattrs).length) e['xattrs'] = xattrs;
      out.set(path, e);
      if (type === 0o040000) await walk(path);
    }
  };
  out.set('/', { ...statView(await be.lstat('/'), opts) });
  await walk('/');
  return out;
}

/** Differences between two trees, one line each; [] when equal. */
export function diffTrees(expected: Tree, actual: Tree): string[] {
  const out: string[] = [];
  for (const [p, e] of expected) {
    const a = actual.get(p);
    if (!a) { out.push(`${p}: missing`); continue; }
    const es = JSON.stringify(e);
    const as = JSON.stringify(a);
    if (es !== as) out.push(`${p}: expected ${es}, got ${as}`);
  }
  for (const p of actual.keys()) if (!expected.has(p)) out.push(`${p}: unexpected`);
  return out;
}
