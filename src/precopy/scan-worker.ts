/**
 * A dirty-page scan worker (see scan-pool.ts): reads guest memory itself, through its own
 * accessor, and compares or records the hashes of the pages each job names. Jobs come one at a time.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { HashScanner } from '../dirtylog/hash-scan.js';
import { openGuestMemory } from '../domain/guest-memory.js';
import type { ScanJob, ScanReply, ScanWorkerData } from './scan-messages.js';

const data = workerData as ScanWorkerData;
const port = parentPort!;
const memory = openGuestMemory(data.memory, data.pageSize);
const scanner = new HashScanner(memory, new Uint32Array(data.table));
const none = new Uint32Array(0);

port.on('message', (job: ScanJob) => {
  if (job.op === 'close') {
    memory.close();
    port.close();
    return;
  }
  let reply: ScanReply;
  try {
    if (job.op === 'changed') {
      reply = { pages: scanner.changedPages(job.first, job.count) };
    } else {
      scanner.record(job.first, job.count);
      reply = { pages: none };
    }
  } catch (err) {
    reply = { error: (err as Error).message };
  }
  port.postMessage(reply, 'pages' in reply && reply.pages.length > 0 ? [reply.pages.buffer as ArrayBuffer] : []);
});
