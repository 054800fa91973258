/**
 * A worker of the source's verification (src/precopy/copy-verification.ts): hashes a range of
 * the paused guest's pages where they lie, through its own accessor, and posts their hashes back
 * (the array is transferred, not copied). One job per worker; it exits when the job is done.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { openGuestMemory } from '../domain/guest-memory.js';
import { asMigrationError } from '../errors.js';
import { PageHasher } from '../protocol/page-hasher.js';
import type { PageHashJob, PageHashReply } from './copy-verification.js';

/** Pages read per call: 1 MiB of 4 KiB pages, one positioned read from a file. */
const RUN_PAGES = 256;

const job = workerData as PageHashJob;
let reply: PageHashReply;
let transfer: ArrayBuffer[] = [];
try {
  const memory = openGuestMemory(job.memory, job.pageSize);
  const buffer = new ArrayBuffer(job.count * 4);
  const hashes = new Uint32Array(buffer);
  const hasher = new PageHasher(job.pageSize, { copyPages: RUN_PAGES });
  try {
    for (let done = 0; done < job.count; done += RUN_PAGES) {
      const pages = Math.min(RUN_PAGES, job.count - done);
      const run = memory.readRun(job.first + done, pages);
      hasher.hashPages(run, 0, pages, hashes, done);
    }
  } finally {
    memory.close();
  }
  reply = { hashes };
  transfer = [buffer];
} catch (err) {
  const error = asMigrationError(err);
  reply = { error: { code: error.code, message: error.message } };
}
parentPort!.postMessage(reply, transfer);
