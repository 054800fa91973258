// Speed of the delta encoding (docs/protocol.md §5), beside a memory copy of the same pages in the
// same run: a batch of 256 cached pages, each changed by the simulated guest's 64-byte writes
// (1, 4, 16 or 64 of them per page), encoded against the cache and applied again. Reports the
// bytes a page takes on the wire and the pace of encoding and of applying, in pages per
// microsecond of one core. Usage: node bench/delta-encode.js
import { randomFillSync } from 'node:crypto';
import { decodeDeltaPayload } from '../dist/protocol/page-codec-delta.js';
import { hashPage } from '../dist/protocol/page-digest.js';
import { encodeDeltaBatch } from '../dist/precopy/delta-batch.js';

const PAGE = 4096;
const PAGES = 256;
const BYTES = PAGE * PAGES;

/** Runs `fn` for about `ms` milliseconds; returns microseconds per call. */
function time(fn, ms = 400) {
  for (let i = 0; i < 5; i++) fn();
  let calls = 0;
  const started = performance.now();
  while (performance.now() - started < ms) {
    fn();
    calls++;
  }
  return ((performance.now() - started) * 1000) / calls;
}

const base = new Uint8Array(BYTES);
randomFillSync(base);
const cache = Buffer.from(new SharedArrayBuffer(BYTES));
const slots = { data: cache, hashes: new Uint32Array(new SharedArrayBuffer(PAGES * 4)) };
const hashes = new Uint32Array(PAGES);
const baseHashes = Uint32Array.from({ length: PAGES }, (_, i) => hashPage(base, i * PAGE, PAGE));
const pages = Buffer.alloc(BYTES);
const out = Buffer.alloc(BYTES + PAGES);
const codes = Int32Array.from({ length: PAGES }, (_, i) => i * 2 + 1);
const pfns = Uint32Array.from({ length: PAGES }, (_, i) => i);
const copyUs = time(() => cache.set(base));
console.log(`memcpy of ${PAGES} pages: ${copyUs.toFixed(0)} us (${(BYTES / copyUs / 1e3).toFixed(2)} GB/s)`);
console.log('writes/page  wire B/page  encode us/page  encode GB/s  apply us/page');
for (const writes of [1, 4, 16, 64]) {
  pages.set(base);
  for (let i = 0; i < PAGES; i++) for (let w = 0; w < writes; w++) randomFillSync(pages, i * PAGE + Math.floor(Math.random() * 64) * 64, 64);
  // Each encode overwrites the cache with the new pages, so each starts from a fresh copy of the base; the copy is taken out.
  let length = 0;
  const withCopyUs = time(() => {
    cache.set(base);
    slots.hashes.set(baseHashes);
    length = encodeDeltaBatch(pages, 0, PAGES, codes, hashes, slots, out, 0, PAGE).length;
  });
  const encodeUs = withCopyUs - copyUs;
  const payload = out.subarray(0, length);
  const readPages = (_p, dst) => dst.set(base.subarray(0, dst.length));
  const applyUs = time(() => void decodeDeltaPayload(payload, BYTES, pfns, readPages, 0));
  console.log(
    [
      String(writes).padEnd(11),
      (length / PAGES).toFixed(0).padEnd(11),
      (encodeUs / PAGES).toFixed(2).padEnd(14),
      (BYTES / encodeUs / 1e3).toFixed(2).padEnd(11),
      (applyUs / PAGES).toFixed(2),
    ].join('  '),
  );
}
