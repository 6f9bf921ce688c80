// Concurrent scenarios: calls in flight together on one backend. Their outcome is summarised
// in a form that does not depend on which writer went first (the kernel and ext4kit may order
// them differently), and that a lost or torn write changes.
import type { Backend } from './backend.ts';

/** Which writers' runs a file holds, in sorted order: each `runBytes` piece must be one writer's fill byte. */
export async function runsOf(be: Backend, path: string, runBytes: number): Promise<{ size: number; runs: string[] }> {
  const data = await be.readFile(path);
  const runs: string[] = [];
  for (let at = 0; at < data.length; at += runBytes) {
    const piece = data.subarray(at, at + runBytes);
    runs.push(piece.every((b) => b === piece[0]) && piece.length === runBytes ? `writer ${piece[0]}` : `torn at ${at}`);
  }
  return { size: data.length, runs: runs.sort() };
}

const fill = (len: number, writer: number): Uint8Array => new Uint8Array(len).fill(writer);

export interface Scenario { name: string; run(be: Backend): Promise<unknown> }

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'six parallel appendFile calls of 7,000 bytes',
    run: async (be) => {
      await Promise.all([1, 2, 3, 4, 5, 6].map((w) => be.appendFile('/log', fill(7000, w))));
      return runsOf(be, '/log', 7000);
    },
  },
  ...(['a', 'w'] as const).map((flags): Scenario => ({
    name: `five parallel writes at the position of one handle opened '${flags}'`,
    run: async (be) => {
      const fh = await be.open('/f', flags, 0o644);
      try { await Promise.all([1, 2, 3, 4, 5].map((w) => fh.write(fill(3000, w), null))); } finally { await fh.close(); }
      return runsOf(be, '/f', 3000);
    },
  })),
  {
    name: 'rename while writing through a handle',
    run: async (be) => {
      const fh = await be.open('/f', 'w', 0o644);
      const writes: Array<Promise<number>> = [];
      for (let w = 1; w <= 8; w++) {
        writes.push(fh.write(fill(4096, w), null));
        if (w === 4) writes.push(be.rename('/f', '/g').then(() => 0));
      }
      await Promise.all(writes);
      await fh.close();
      return { names: (await be.readdir('/')).sort(), g: await runsOf(be, '/g', 4096) };
    },
  },
  {
    name: 'unlink while open: the handle keeps the data, the inode goes at close',
    run: async (be) => {
      const fh = await be.open('/f', 'w+', 0o644);
      await fh.write(fill(10_000, 1), null);
      await be.unlink('/f');
      await fh.write(fill(5000, 2), null);
      const st = await fh.stat();
      const back = await fh.read(20_000, 0);
      await fh.close();
      return { nlink: st.nlink, size: st.size, back: [back.length, back[0], back[9999], back[10_000], back[14_999]], names: (await be.readdir('/')).sort() };
    },
  },
  {
    name: 'parallel appends while another writer truncates',
    run: async (be) => {
      await be.writeFile('/t', fill(9000, 9), 'w', 0o644);
      await Promise.all([be.appendFile('/t', fill(3000, 1)), be.truncate('/t', 0), be.appendFile('/t', fill(3000, 2))]);
      const { size } = await be.stat('/t');
      await be.truncate('/t', 0); // the final size depends on the order: the trees compare after this
      return { sizeIsWholeRuns: size % 3000 === 0 && size <= 15_000 };
    },
  },
];
