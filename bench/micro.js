// Microbenchmarks of the hot paths, each reported beside a memory copy of the same bytes measured
// in the same run. Usage: node bench/micro.js
import Benchmark from 'benchmark';
import { compressSync, uncompressSync } from 'lz4-napi';
import { DirtyBitmap } from '../dist/dirtylog/dirty-bitmap.js';
import { fillImage } from '../dist/domain/sim/image.js';
import { decodeFrame, encodePages, encodePagesInPlace, PAGES_HEADER_RESERVE_BYTES } from '../dist/protocol/codec.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import { lz4Codec } from '../dist/protocol/page-codec-lz4.js';
import { PageDigest } from '../dist/protocol/page-digest.js';

const PAGE = 4096;
const BATCH_PAGES = 256;
const BATCH_BYTES = BATCH_PAGES * PAGE;

// A batch of realistic guest pages: take the non-zero pages of a seeded image.
const image = new Uint8Array(new SharedArrayBuffer(64 << 20));
fillImage(image, 1);
const batch = Buffer.alloc(BATCH_BYTES);
for (let pfn = 0, n = 0; n < BATCH_PAGES; pfn++) {
  const page = image.subarray(pfn * PAGE, (pfn + 1) * PAGE);
  if (page.some((b) => b !== 0)) batch.set(page, PAGE * n++);
}
const pfns = Uint32Array.from({ length: BATCH_PAGES }, (_, i) => i * 3);
const header = { round: 0, seq: 0, pages: writePageNumbers(pfns), zeros: new Uint8Array(0), codec: 'none', rawLength: BATCH_BYTES, checksum: '0123456789abcdef' };
const frameBuffer = Buffer.alloc(PAGES_HEADER_RESERVE_BYTES + BATCH_BYTES);
frameBuffer.set(batch, PAGES_HEADER_RESERVE_BYTES);
const frame = encodePagesInPlace(header, frameBuffer, PAGES_HEADER_RESERVE_BYTES, BATCH_BYTES);
const packed = compressSync(batch);
const copyTarget = Buffer.alloc(BATCH_BYTES);
const zeroPage = Buffer.alloc(PAGE);
const digest = new PageDigest(BATCH_PAGES, PAGE);

// 1 GiB worth of dirty bitmap, 1% dirty.
const GIB_PAGES = (1 << 30) / PAGE;
const bitmap = DirtyBitmap.create(GIB_PAGES);
const dirtyEvery = 100;

const bytesPerOp = new Map();
const suite = new Benchmark.Suite();
const add = (name, bytes, fn) => {
  bytesPerOp.set(name, bytes);
  suite.add(name, fn);
};
add('baseline: memory copy of a 1 MiB batch', BATCH_BYTES, () => batch.copy(copyTarget));
// Worst case: every page is zero, so every compare runs to the end (a data page stops early).
const zeroBatch = Buffer.alloc(BATCH_BYTES);
add('zero-page check of a 1 MiB batch of zero pages', BATCH_BYTES, () => {
  for (let off = 0; off < BATCH_BYTES; off += PAGE) zeroBatch.compare(zeroPage, 0, PAGE, off, off + PAGE);
});
add('page digest of a 1 MiB batch (xxh32 per page)', BATCH_BYTES, () => {
  for (let i = 0; i < BATCH_PAGES; i++) digest.update(i, batch, i * PAGE);
});
add('encode pages header in place (1 MiB batch)', BATCH_BYTES, () => encodePagesInPlace(header, frameBuffer, PAGES_HEADER_RESERVE_BYTES, BATCH_BYTES));
add('decode pages frame (1 MiB batch)', BATCH_BYTES, () => decodeFrame(frame));
add('lz4 compress a 1 MiB batch', BATCH_BYTES, () => compressSync(batch));
add('lz4 uncompress a 1 MiB batch', BATCH_BYTES, () => uncompressSync(packed));
const codecOut = Buffer.alloc(lz4Codec.maxPayloadBytes(BATCH_BYTES));
add('lz4 codec: encode a 1 MiB batch into a reused buffer', BATCH_BYTES, () => lz4Codec.encodeSync(batch, codecOut));
add('dirty bitmap read-and-clear, 1 GiB, 1% dirty', (GIB_PAGES / dirtyEvery) * PAGE, () => {
  for (let p = 0; p < GIB_PAGES; p += dirtyEvery) bitmap.mark(p);
  bitmap.readAndClear();
});

const rows = [];
suite.on('cycle', (event) => {
  const b = event.target;
  rows.push({ name: b.name, hz: b.hz, rme: b.stats.rme, bytesPerSec: b.hz * bytesPerOp.get(b.name) });
});
suite.run();

const baseline = rows[0].bytesPerSec;
console.log(`lz4 ratio on image pages: ${(BATCH_BYTES / packed.length).toFixed(2)}x`);
const zeros = Uint32Array.from({ length: 16384 }, (_, i) => i * 2);
const zeroFrame = encodePages({ ...header, pages: new Uint8Array(0), zeros: writePageNumbers(zeros), rawLength: 0 }, new Uint8Array(0));
console.log(`zero pages on the wire: ${(zeroFrame.length / zeros.length).toFixed(3)} bytes per page (page number: 4 bytes)`);
console.log('');
for (const r of rows) {
  console.log(
    `${r.name.padEnd(48)} ${(r.bytesPerSec / 1e9).toFixed(2).padStart(7)} GB/s  ` +
      `${(r.bytesPerSec / baseline).toFixed(3).padStart(6)} x memcpy  ±${r.rme.toFixed(1)}%`,
  );
}
