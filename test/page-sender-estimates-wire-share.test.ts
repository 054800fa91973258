import { describe, expect, it } from 'vitest';
import type { SourceDomain } from '../dist/domain/backend.js';
import { fillPage, pageKind, type PageKind } from '../dist/domain/sim/index.js';
import { PageSender } from '../dist/precopy/page-sender.js';
import { PageDigest } from '../dist/protocol/page-digest.js';
import type { Transport } from '../dist/transport/transport.js';

const PAGE = 4096;
const SEED = 7;

/** A guest image of `pages` seeded pages; only `readPages` is used by the estimate. */
function imageDomain(pages: number): SourceDomain {
  const mem = new Uint8Array(pages * PAGE);
  for (let pfn = 0; pfn < pages; pfn++) fillPage(SEED, pfn, mem, pfn * PAGE);
  return {
    descriptor: { pageSize: PAGE },
    readPages: (pfns: Uint32Array, dst: Uint8Array) => pfns.forEach((pfn, i) => dst.set(mem.subarray(pfn * PAGE, (pfn + 1) * PAGE), i * PAGE)),
  } as unknown as SourceDomain;
}

function sender(domain: SourceDomain, codec: 'lz4' | 'none', pages: number): PageSender {
  return new PageSender(domain, {} as Transport, new PageDigest(pages, PAGE), { codec });
}

/** The first 64 page numbers of the image that hold `kinds`. */
function pagesOf(kinds: PageKind[], pages: number): Uint32Array {
  const out: number[] = [];
  for (let pfn = 0; pfn < pages && out.length < 64; pfn++) if (kinds.includes(pageKind(SEED, pfn))) out.push(pfn);
  return Uint32Array.from(out);
}

describe('the wire share a sender estimates for a round', () => {
  const pages = 1024;
  const domain = imageDomain(pages);

  it('counts zero pages as nothing and data pages whole with codec none', async () => {
    // 64 pages: four runs of 16 cover every one of them.
    const mixed = Uint32Array.from({ length: 64 }, (_, i) => i * 3);
    const data = [...mixed].filter((pfn) => pageKind(SEED, pfn) !== 'zero').length;
    expect(data).toBeGreaterThan(10);
    expect(data).toBeLessThan(60);
    expect(await sender(domain, 'none', pages).wireShare(mixed)).toBeCloseTo(data / 64, 10);
    expect(await sender(domain, 'none', pages).wireShare(pagesOf(['zero'], pages))).toBe(0);
  });

  it('with lz4, follows how well the pages compress', async () => {
    const lz4 = sender(domain, 'lz4', pages);
    const text = (await lz4.wireShare(pagesOf(['text'], pages)))!;
    const random = (await lz4.wireShare(pagesOf(['random'], pages)))!;
    expect(text).toBeGreaterThan(0.05);
    expect(text).toBeLessThan(0.6);
    expect(random).toBeGreaterThan(0.95);
    expect(random).toBeLessThan(1.05);
  });

  it('samples a long list in a few runs, and has nothing to say about an empty one', async () => {
    const all = Uint32Array.from({ length: pages }, (_, i) => i);
    const share = (await sender(domain, 'none', pages).wireShare(all))!;
    // About three pages in five hold data (the image is 40% zero pages); 64 sampled of 1024.
    expect(share).toBeGreaterThan(0.35);
    expect(share).toBeLessThan(0.85);
    expect(await sender(domain, 'lz4', pages).wireShare(new Uint32Array(0))).toBeUndefined();
  });
});
