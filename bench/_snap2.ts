import { writeHeapSnapshot } from 'node:v8';
import { execSync } from 'node:child_process';
let done = false;
const t = setInterval(() => {
  if (done) return;
  try {
    const n = Number(execSync("ls /tmp/ext4kit-fuse-memory/mnt/d9 2>/dev/null | wc -l", { encoding: 'utf8' }).trim());
    if (n >= 8000) { done = true; console.error('snapshot at', n, writeHeapSnapshot('/tmp/fm-live.heapsnapshot')); }
  } catch { /* */ }
}, 1000);
t.unref();
await import('./fuse-memory.ts');
