// A writer thread of `ext4kit get -r` (see get-writer.ts): runs batches of file ops in order and
// answers each with its id and the first error, if any (the rest of a failed batch is not run).
import { parentPort, workerData } from 'node:worker_threads';
import { FileOpRunner, toWire, unpackOps, type WriterBatch, type WriterReply } from './get-writer.ts';

const port = parentPort;
if (!port) throw new Error('get-writer-worker runs as a worker thread');
const runner = new FileOpRunner((workerData as { imageFd: number }).imageFd);
port.on('message', (b: WriterBatch) => {
  let reply: WriterReply = { id: b.id, packed: b.packed };
  try {
    runner.runBatch(Array.from(unpackOps(b.packed, b.lenBytes)));
  } catch (e) {
    reply = { id: b.id, error: toWire(e), packed: b.packed };
  }
  // The buffer goes back for the next batch.
  port.postMessage(reply, [b.packed]);
});
