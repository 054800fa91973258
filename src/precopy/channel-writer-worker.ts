/**
 * A target page-channel worker (docs/protocol.md §15): decodes each frame its channel received,
 * checks it as the control connection's batches are checked (§5: `seq`, page range, payload,
 * checksum), writes the pages straight into guest memory, and reports the pages and their hashes
 * for the target's digest. Batches are numbered per channel from 0.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { openGuestMemory } from '../domain/guest-memory.js';
import { asMigrationError, ChecksumMismatchError, PageOutOfRangeError, UnexpectedRecordError } from '../errors.js';
import { decodeFrame } from '../protocol/codec.js';
import { decodePagesPayload } from '../protocol/page-codecs.js';
import { batchChecksum } from '../protocol/page-digest.js';
import { HASH_COPY_PAGES, PageHasher } from '../protocol/page-hasher.js';
import { readPageNumbers } from '../protocol/page-list.js';
import type { PagesRecord } from '../protocol/records.js';
import type { TargetWorkerData, TargetWorkerReply, TargetWorkerRequest } from './channel-messages.js';

const data = workerData as TargetWorkerData;
const port = parentPort!;
const pageSize = data.pageSize;
const memory = openGuestMemory(data.memory, pageSize, { writable: true });
const hashes = new Uint32Array(data.limits.maxDataPagesPerBatch);
const hasher = new PageHasher(pageSize, { copyPages: HASH_COPY_PAGES });
let nextSeq = 0;
let queue: Promise<void> = Promise.resolve();
let failed = false;

function post(reply: TargetWorkerReply): void {
  port.postMessage(reply);
}

function checkInRange(pfns: Uint32Array): void {
  for (let i = 0; i < pfns.length; i++) {
    if (pfns[i]! >= data.pageCount) throw new PageOutOfRangeError(`page ${pfns[i]} is beyond the announced memory of ${data.pageCount} pages`);
  }
}

async function write(record: PagesRecord): Promise<void> {
  if (record.seq !== nextSeq) throw new UnexpectedRecordError(`page batch ${record.seq} arrived on its channel where batch ${nextSeq} was due`);
  const pfns = readPageNumbers(record.pages);
  const zeros = readPageNumbers(record.zeros);
  checkInRange(pfns);
  checkInRange(zeros);
  // A delta's base is what guest memory holds of the page now: earlier rounds wrote it.
  const raw = await decodePagesPayload(record, data.delta ? { pfns, readPages: (p, dst) => memory.readPages(p, dst) } : undefined);
  const batchHashes = hashes.subarray(0, pfns.length);
  hasher.hashPages(raw, 0, pfns.length, batchHashes);
  const sum = batchChecksum(batchHashes, record.seq);
  if (sum !== record.checksum) {
    throw new ChecksumMismatchError(`page batch ${record.seq} has checksum ${sum} after decompression; the source sent ${record.checksum}`);
  }
  if (pfns.length > 0) memory.writePages(pfns, raw);
  // Fresh memory is all zeros, and round 0 names each page once: its zero pages are already so.
  if (zeros.length > 0 && !(data.freshUntilRound1 && record.round === 0)) memory.zeroPages(zeros);
  nextSeq++;
  post({ kind: 'written', seq: record.seq, dataPfns: pfns.slice(), hashes: batchHashes.slice(), zeroPfns: zeros.slice() });
}

async function handle(frame: Uint8Array): Promise<void> {
  const record = decodeFrame(frame, data.limits);
  switch (record.type) {
    case 'pages':
      return write(record);
    case 'ignored':
      post({ kind: 'ignored' });
      return;
    case 'abort':
      post({ kind: 'abort', code: record.code, message: record.message });
      return;
    default:
      throw new UnexpectedRecordError(`a page channel carries only "pages" records, not "${record.type}"`);
  }
}

port.on('message', (message: TargetWorkerRequest) => {
  queue = queue.then(async () => {
    if (failed) return;
    try {
      await handle(message.frame);
    } catch (err) {
      failed = true;
      const error = asMigrationError(err, 'ERR_MALFORMED_RECORD');
      post({ kind: 'error', code: error.code, message: error.message });
    }
  });
});
