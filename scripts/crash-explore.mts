import { runCrashPoints } from '../test/support/crash-run.ts';
import { founding, renames, smallFiles } from '../test/support/crash-workloads.ts';
const which = process.argv[2] ?? 'f1';
const w = which === 'f1' ? founding(1024, Number(process.argv[3] ?? 30)) : which === 'f4' ? founding(4096, Number(process.argv[3] ?? 30)) : which === 'r' ? renames(1024, 40) : smallFiles(4096, 60);
async function main() {
const r = await runCrashPoints(w, { seed: Number(process.argv[4] ?? 1), maxWindows: 100000, perWindow: 2, kernelEvery: 0, kernelMax: 0 });
console.log(r.writes, r.flushes, r.acks, r.tally.states, r.tally.summary());
for (const e of r.tally.examples) if (/lost/.test(e)) console.log(e);
}
main();
