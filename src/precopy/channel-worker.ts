/**
 * A source page-channel worker (docs/protocol.md §15): reads guest memory itself, tests each page
 * for zero where it lies, copies the data pages into a frame buffer and hashes the copy (the guest
 * may write the original meanwhile; the copy is what goes out), compresses, frames, and hands the
 * frame to the main thread, which sends it on this channel's connection. Batches are numbered
 * per channel from 0.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { openGuestMemory } from '../domain/guest-memory.js';
import { asMigrationError } from '../errors.js';
import { encodePagesInPlace, PAGES_HEADER_RESERVE_BYTES } from '../protocol/codec.js';
import { DEFAULT_MAX_ZERO_PAGES_PER_BATCH } from '../protocol/limits.js';
import { deltaMaxPayloadBytes } from '../protocol/page-codec-delta.js';
import { pagePayloadCodec } from '../protocol/page-codecs.js';
import { batchChecksum } from '../protocol/page-digest.js';
import { HASH_COPY_PAGES, PageHasher } from '../protocol/page-hasher.js';
import { writePageNumbers } from '../protocol/page-list.js';
import { asBuffer } from '../util/bytes.js';
import type { SourceWorkerData, SourceWorkerReply, SourceWorkerRequest } from './channel-messages.js';
import { type DeltaSlots, deltaSlots, NO_SLOT } from './delta-cache.js';
import { anyBase, encodeDeltaBatch, storeInSlots } from './delta-batch.js';

const data = workerData as SourceWorkerData;
const port = parentPort!;
const pageSize = data.pageSize;
const memory = openGuestMemory(data.memory, pageSize);
const codec = pagePayloadCodec(data.codec);
const perBatch = data.dataPagesPerBatch;
const rawBytes = perBatch * pageSize;
/** Where a compressing codec's input is gathered: compression runs on this thread, one batch at a time. */
const gather = codec.payloadIsRaw ? undefined : Buffer.allocUnsafe(rawBytes);
const slotBytes = PAGES_HEADER_RESERVE_BYTES + Math.max(codec.payloadIsRaw ? rawBytes : codec.maxPayloadBytes(rawBytes), data.delta ? deltaMaxPayloadBytes(rawBytes) : 0);
/** Where a `delta` payload is written before it is copied into its frame. */
const deltaOut = data.delta ? Buffer.allocUnsafe(deltaMaxPayloadBytes(rawBytes)) : undefined;
/** The delta cache's slots, once the main thread sends them (`delta-cache`); never, if deltas were turned off. */
let slots: DeltaSlots | undefined;
/** The slot code of each data page gathered, in order. */
const dataCodes = new Int32Array(perBatch);
const free: ArrayBuffer[] = Array.from({ length: data.buffers }, () => new ArrayBuffer(slotBytes));
let bufferReturned: (() => void) | undefined;
const zero = Buffer.alloc(pageSize);
const dataPfns = new Uint32Array(perBatch);
const hashes = new Uint32Array(perBatch);
const hasher = new PageHasher(pageSize, { copyPages: HASH_COPY_PAGES });
const zeroPfns = new Uint32Array(DEFAULT_MAX_ZERO_PAGES_PER_BATCH);
let seq = 0;
/** Jobs run one after another, in the order they came. */
let queue: Promise<void> = Promise.resolve();
let failed = false;

function post(reply: SourceWorkerReply, transfer: ArrayBuffer[] = []): void {
  port.postMessage(reply, transfer);
}

async function takeBuffer(): Promise<Buffer> {
  while (free.length === 0) await new Promise<void>((resolve) => (bufferReturned = resolve));
  return Buffer.from(free.pop()!);
}

/** Length of the run of consecutive page numbers at `pfns[i]`, at most `max`. */
function runAt(pfns: Uint32Array, i: number, max: number): number {
  let n = 1;
  const first = pfns[i]!;
  while (n < max && i + n < pfns.length && pfns[i + n] === first + n) n++;
  return n;
}

async function runJob(round: number, pfns: Uint32Array, codes: Int32Array | undefined): Promise<void> {
  let slot: Buffer | undefined;
  let dataCount = 0;
  let zeroCount = 0;
  for (let i = 0; i < pfns.length; ) {
    slot ??= await takeBuffer();
    const room = Math.min(perBatch - dataCount, DEFAULT_MAX_ZERO_PAGES_PER_BATCH - zeroCount);
    const n = runAt(pfns, i, room);
    const run = memory.readRun(pfns[i]!, n);
    const src = asBuffer(run);
    const into = gather ?? slot;
    const base = gather ? 0 : PAGES_HEADER_RESERVE_BYTES;
    for (let k = 0; k < n; k++) {
      const from = k * pageSize;
      if (src.compare(zero, 0, pageSize, from, from + pageSize) === 0) {
        zeroPfns[zeroCount++] = pfns[i + k]!;
        continue;
      }
      const to = base + dataCount * pageSize;
      // `fill` with a page-long source is Node's memcpy; `copy` out of shared memory is slower.
      into.fill(src.subarray(from, from + pageSize), to, to + pageSize);
      dataCodes[dataCount] = codes ? codes[i + k]! : NO_SLOT;
      dataPfns[dataCount++] = pfns[i + k]!;
    }
    i += n;
    if (dataCount === perBatch || zeroCount === DEFAULT_MAX_ZERO_PAGES_PER_BATCH) {
      dispatch(slot, round, dataCount, zeroCount);
      slot = undefined;
      dataCount = 0;
      zeroCount = 0;
    }
  }
  if (slot && dataCount + zeroCount > 0) dispatch(slot, round, dataCount, zeroCount);
  else if (slot) free.push(slot.buffer as ArrayBuffer);
  post({ kind: 'job-done', pages: pfns.length });
}

/** Frames the gathered batch in `slot` and hands the buffer to the main thread. */
function dispatch(slot: Buffer, round: number, dataCount: number, zeroCount: number): void {
  const rawLength = dataCount * pageSize;
  let payloadLength = rawLength;
  let deltas: number | undefined;
  const gathered = gather ?? slot;
  const at = gather ? 0 : PAGES_HEADER_RESERVE_BYTES;
  hasher.hashPages(gathered, at, dataCount, hashes);
  if (slots && deltaOut && anyBase(dataCodes, dataCount)) {
    // Encoded aside and copied in: a page that goes whole takes a byte more than it was gathered in.
    const encoded = encodeDeltaBatch(gathered, at, dataCount, dataCodes, hashes, slots, deltaOut, 0, pageSize);
    deltaOut.copy(slot, PAGES_HEADER_RESERVE_BYTES, 0, encoded.length);
    payloadLength = encoded.length;
    deltas = encoded.deltas;
  } else {
    if (slots) storeInSlots(gathered, at, dataCount, dataCodes, hashes, slots, pageSize);
    if (gather && dataCount > 0) payloadLength = codec.encodeSync(gather.subarray(0, rawLength), slot.subarray(PAGES_HEADER_RESERVE_BYTES));
  }
  const header = {
    round,
    seq,
    pages: writePageNumbers(dataPfns, dataCount),
    zeros: writePageNumbers(zeroPfns, zeroCount),
    codec: deltas !== undefined ? ('delta' as const) : dataCount > 0 ? data.codec : ('none' as const),
    rawLength,
    checksum: batchChecksum(hashes.subarray(0, dataCount), seq),
  };
  seq++;
  const frame = encodePagesInPlace(header, slot, PAGES_HEADER_RESERVE_BYTES, payloadLength);
  const buffer = slot.buffer as ArrayBuffer;
  post(
    {
      kind: 'frame',
      buffer,
      offset: frame.byteOffset,
      length: frame.byteLength,
      dataPfns: dataPfns.slice(0, dataCount),
      hashes: hashes.slice(0, dataCount),
      zeroPfns: zeroPfns.slice(0, zeroCount),
      deltas,
    },
    [buffer],
  );
}

port.on('message', (message: SourceWorkerRequest) => {
  if (message.kind === 'delta-cache') {
    // Taken at once, not queued: a job before it has no slot codes, so never reads the slots.
    slots = deltaSlots(message.cache, message.hashes);
    return;
  }
  if (message.kind === 'buffer') {
    free.push(message.buffer);
    bufferReturned?.();
    bufferReturned = undefined;
    return;
  }
  queue = queue.then(async () => {
    if (failed) return;
    try {
      await runJob(message.round, message.pfns, message.codes);
    } catch (err) {
      failed = true;
      const error = asMigrationError(err, 'ERR_DOMAIN_FAILED');
      post({ kind: 'error', code: error.code, message: `page channel worker: ${error.message}` });
    }
  });
});
