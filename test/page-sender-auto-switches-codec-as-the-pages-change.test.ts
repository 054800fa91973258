// A sender with codec auto behind a slow link compresses the pages that shrink and stops for the
// ones that do not, within one round, and every batch still decodes to the pages it names.
import { expect, test } from 'vitest';
import type { SourceDomain } from '../dist/domain/backend.js';
import { fillPage, pageKind, type PageKind } from '../dist/domain/sim/index.js';
import { PageSender } from '../dist/precopy/page-sender.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import { decodePagesPayload } from '../dist/protocol/page-codecs.js';
import { readPageNumbers } from '../dist/protocol/page-list.js';
import { PageDigest } from '../dist/protocol/page-digest.js';
import type { Transport } from '../dist/transport/transport.js';

const PAGE = 4096;
const SEED = 3;
const BATCHES_EACH = 32;

/** The first `count` pages of the seeded image that hold `kind`. */
function pagesOf(kind: PageKind, count: number): number[] {
  const out: number[] = [];
  for (let pfn = 0; out.length < count; pfn++) if (pageKind(SEED, pfn) === kind) out.push(pfn);
  return out;
}

test('auto sends text pages with lz4 and random pages uncompressed, in one round', async () => {
  // Guest memory: BATCHES_EACH batches of text pages, then as many of random ones.
  const sources = [...pagesOf('text', BATCHES_EACH * 256), ...pagesOf('random', BATCHES_EACH * 256)];
  const mem = new Uint8Array(sources.length * PAGE);
  sources.forEach((src, pfn) => fillPage(SEED, src, mem, pfn * PAGE));
  const domain = {
    descriptor: { pageSize: PAGE },
    readPages: (pfns: Uint32Array, dst: Uint8Array) => pfns.forEach((pfn, i) => dst.set(mem.subarray(pfn * PAGE, (pfn + 1) * PAGE), i * PAGE)),
  } as unknown as SourceDomain;
  const frames: Uint8Array[] = [];
  const transport = { send: async (f: Uint8Array) => void frames.push(Uint8Array.from(f)) } as unknown as Transport;
  const sender = new PageSender(domain, transport, new PageDigest(sources.length, PAGE), { codec: 'auto', capBytesPerSec: 10e6 });

  await sender.sendPages(0, Uint32Array.from(sources, (_, pfn) => pfn));
  await sender.flush();

  const codecs: string[] = [];
  for (const frame of frames) {
    const record = decodeFrame(frame);
    if (record.type !== 'pages') throw new Error(`unexpected ${record.type}`);
    codecs.push(record.codec);
    const raw = await decodePagesPayload(record);
    readPageNumbers(record.pages).forEach((pfn, i) => expect(Buffer.compare(raw.subarray(i * PAGE, (i + 1) * PAGE), mem.subarray(pfn * PAGE, (pfn + 1) * PAGE))).toBe(0));
  }
  expect(codecs).toHaveLength(2 * BATCHES_EACH);
  expect(sender.batchesByCodec.lz4 + sender.batchesByCodec.none).toBe(2 * BATCHES_EACH);
  // Text: uncompressed only until lz4 was measured. Random: compressed only until its ratio showed.
  expect(codecs.slice(0, BATCHES_EACH).filter((c) => c === 'lz4').length).toBeGreaterThanOrEqual(BATCHES_EACH - 8);
  expect(codecs.slice(-BATCHES_EACH / 2).every((c) => c === 'none')).toBe(true);
});
