// Guest memory in this process is tested for zero pages where it lies and only its data pages are
// copied out: the batches are byte for byte those gathered through `readPages`, and a guest whose
// memory stops being shared is read through `readPages` again.
import { expect, test } from 'vitest';
import type { SourceDomain } from '../dist/domain/backend.js';
import { fillPage } from '../dist/domain/sim/index.js';
import { PageSender } from '../dist/precopy/page-sender.js';
import { SharedPageGather } from '../dist/precopy/shared-gather.js';
import { PageDigest } from '../dist/protocol/page-digest.js';
import type { Transport } from '../dist/transport/transport.js';
import type { GuestMemory } from '../dist/util/guest-memory-types.js';

const PAGE = 4096;
const PAGES = 2048;

/** Shared guest memory: seeded pages, a zero page in every three, and pages that are zero but for one byte inside. */
function guestMemory(): { buffer: SharedArrayBuffer; mem: Uint8Array } {
  const buffer = new SharedArrayBuffer(PAGES * PAGE);
  const mem = new Uint8Array(buffer);
  for (let pfn = 0; pfn < PAGES; pfn++) {
    if (pfn % 3 === 1) continue;
    if (pfn % 7 === 0) mem[pfn * PAGE + 1234] = 0x5a;
    else fillPage(11, pfn, mem, pfn * PAGE);
  }
  return { buffer, mem };
}

function isZero(mem: Uint8Array, pfn: number): boolean {
  return mem.subarray(pfn * PAGE, (pfn + 1) * PAGE).every((b) => b === 0);
}

test('a gather sorts pages into zero and data pages and copies the data pages back to back, runs and all', () => {
  const { buffer, mem } = guestMemory();
  const memory: GuestMemory = { kind: 'shared', buffer, byteOffset: 0, byteLength: buffer.byteLength };
  const gather = SharedPageGather.over(memory, PAGE)!;
  expect(gather).toBeDefined();
  expect(SharedPageGather.over({ ...memory }, PAGE, gather)).toBe(gather);
  expect(SharedPageGather.over({ kind: 'none' }, PAGE, gather)).toBeUndefined();

  // Runs, single pages, a page named out of order, and pages zero but for one byte.
  const pfns = Uint32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 21, 14, 28, 100, 101, 102, 103, 2047, 10]);
  const dst = Buffer.alloc(64 + pfns.length * PAGE, 0xee);
  const dataPfns = new Uint32Array(pfns.length + 2);
  const zeroPfns = new Uint32Array(pfns.length + 3);
  const data = gather.gather(pfns, dst, 64, dataPfns, 2, zeroPfns, 3);

  const expectData = [...pfns].filter((pfn) => !isZero(mem, pfn));
  const expectZero = [...pfns].filter((pfn) => isZero(mem, pfn));
  expect(expectData).toContain(14); // zero but for one byte in its middle
  expect(data).toBe(expectData.length);
  expect([...dataPfns.subarray(2, 2 + data)]).toEqual(expectData);
  expect([...zeroPfns.subarray(3, 3 + pfns.length - data)]).toEqual(expectZero);
  expectData.forEach((pfn, i) => expect(Buffer.compare(dst.subarray(64 + i * PAGE, 64 + (i + 1) * PAGE), mem.subarray(pfn * PAGE, (pfn + 1) * PAGE)), `page ${pfn}`).toBe(0));
  // Nothing written before the offset nor after the data pages.
  expect(dst.subarray(0, 64).every((b) => b === 0xee)).toBe(true);
  expect(dst.subarray(64 + data * PAGE).every((b) => b === 0xee)).toBe(true);

  expect(() => gather.gather(Uint32Array.of(5, PAGES), dst, 0, dataPfns, 0, zeroPfns, 0)).toThrow(expect.objectContaining({ code: 'ERR_PAGE_OUT_OF_RANGE' }));
});

/** Frames a sender puts on the wire for `pfns` over `domain`. */
async function framesOf(domain: SourceDomain, pfns: Uint32Array, codec: 'none' | 'lz4'): Promise<Buffer[]> {
  const frames: Buffer[] = [];
  const transport = { send: async (f: Uint8Array) => void frames.push(Buffer.from(f)) } as unknown as Transport;
  const sender = new PageSender(domain, transport, new PageDigest(PAGES, PAGE), { codec });
  await sender.sendPages(0, pfns);
  await sender.flush();
  return frames;
}

test.each(['none', 'lz4'] as const)('batches gathered in place are those gathered through readPages, codec %s', async (codec) => {
  const { buffer, mem } = guestMemory();
  const shared: GuestMemory = { kind: 'shared', buffer, byteOffset: 0, byteLength: buffer.byteLength };
  let reads = 0;
  let memoryNow: GuestMemory = shared;
  const readPages = (pfns: Uint32Array, dst: Uint8Array): void => {
    reads++;
    pfns.forEach((pfn, i) => dst.set(mem.subarray(pfn * PAGE, (pfn + 1) * PAGE), i * PAGE));
  };
  const inPlace = { descriptor: { pageSize: PAGE }, memory: () => memoryNow, readPages } as unknown as SourceDomain;
  const hooked = { descriptor: { pageSize: PAGE }, memory: () => ({ kind: 'none' }), readPages } as unknown as SourceDomain;
  // Every page once, then a scattered list, as later rounds send.
  const all = Uint32Array.from({ length: PAGES }, (_, i) => i);
  const scattered = Uint32Array.from({ length: 300 }, (_, i) => (i * 37) % PAGES).sort();

  for (const pfns of [all, scattered]) {
    reads = 0;
    const here = await framesOf(inPlace, pfns, codec);
    expect(reads).toBe(0);
    const there = await framesOf(hooked, pfns, codec);
    expect(reads).toBeGreaterThan(0);
    expect(here.length).toBe(there.length);
    here.forEach((frame, i) => expect(Buffer.compare(frame, there[i]!), `frame ${i}`).toBe(0));
  }

  // A guest whose memory is no longer shared (destroyed) is read through its hook, which says so.
  memoryNow = { kind: 'none' };
  reads = 0;
  const after = await framesOf(inPlace, all, codec);
  expect(reads).toBeGreaterThan(0);
  expect(after.length).toBeGreaterThan(0);
});
