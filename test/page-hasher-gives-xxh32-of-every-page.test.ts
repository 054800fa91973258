// The batch hasher (SIMD WebAssembly, four pages at a time) must give exactly the native XXH32 of
// each page, whatever the count (multiples of four and the rest), the page size, the offset and
// the buffer (its own region, a plain buffer, shared memory), or every checksum would differ.
import { spawnSync } from 'node:child_process';
import { xxh32 } from '@node-rs/xxhash';
import { expect, test } from 'vitest';
import { PageHasher } from '../dist/protocol/page-hasher.js';

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function nativeHashes(src: Uint8Array, offset: number, count: number, pageSize: number): number[] {
  return Array.from({ length: count }, (_, i) => xxh32(src.subarray(offset + i * pageSize, offset + (i + 1) * pageSize), 0));
}

test('the SIMD module runs here, so the tests below test it', () => {
  expect(new PageHasher(4096).simd).toBe(true);
  expect(new PageHasher(4096, { native: true }).simd).toBe(false);
  expect(new PageHasher(4100).simd).toBe(false);
});

test.each([16, 64, 4096, 8192])('pages of %i bytes: every count from 0 to 11, at odd offsets, from any buffer', (pageSize) => {
  const pages = 11;
  const data = randomBytes(pages * pageSize + 7, pageSize);
  // Some pages all zeros, some all ones: hashes of plain content too.
  data.fill(0, 3 + 2 * pageSize, 3 + 3 * pageSize);
  data.fill(0xff, 3 + 5 * pageSize, 3 + 6 * pageSize);
  const shared = new Uint8Array(new SharedArrayBuffer(data.length));
  shared.set(data);
  const hasher = new PageHasher(pageSize, { regionBytes: data.length, copyPages: 3 });
  hasher.region.set(data);
  for (let count = 0; count <= pages; count++) {
    const want = nativeHashes(data, 3, count, pageSize);
    const out = new Uint32Array(count + 2);
    hasher.hashRegion(3, count, out, 2);
    expect([...out.subarray(2)]).toEqual(want);
    const fromPlain = new Uint32Array(count);
    hasher.hashPages(data, 3, count, fromPlain);
    expect([...fromPlain]).toEqual(want);
    const fromShared = new Uint32Array(count);
    hasher.hashPages(shared, 3, count, fromShared);
    expect([...fromShared]).toEqual(want);
  }
});

test('pages that lie in the region already are hashed where they lie, at any offset, with the same hashes', () => {
  const data = randomBytes(9 * 4096, 11);
  const hasher = new PageHasher(4096, { regionBytes: 12 * 4096, copyPages: 2 });
  for (const at of [0, 1, 4100, 3 * 4096 - 5]) {
    hasher.region.set(data, at);
    // A view of the region handed to hashPages, as a frame that landed there is.
    const view = hasher.region.subarray(at, at + data.length);
    const out = new Uint32Array(9);
    hasher.hashPages(view, 0, 9, out);
    expect([...out], `at ${at}`).toEqual(nativeHashes(data, 0, 9, 4096));
    hasher.hashPages(view, 4096, 8, out, 1);
    expect([...out.subarray(1)], `at ${at}, from the second page`).toEqual(nativeHashes(data, 4096, 8, 4096));
  }
});

test('a native hasher gives the same hashes', () => {
  const data = randomBytes(9 * 4096, 7);
  const hasher = new PageHasher(4096, { native: true, regionBytes: data.length });
  hasher.region.set(data);
  const out = new Uint32Array(9);
  hasher.hashRegion(0, 9, out);
  expect([...out]).toEqual(nativeHashes(data, 0, 9, 4096));
  hasher.hashPages(data, 0, 9, out);
  expect([...out]).toEqual(nativeHashes(data, 0, 9, 4096));
});

test('where the process may not reserve the module\'s memory, the hasher falls back to the native hash', () => {
  // V8 reserves several GiB of address space for a WebAssembly memory; under a 3 GB limit it cannot.
  const script = `
    import { xxh32 } from '@node-rs/xxhash';
    import { PageHasher } from './dist/protocol/page-hasher.js';
    const hasher = new PageHasher(4096, { regionBytes: 8 * 4096 });
    for (let i = 0; i < hasher.region.length; i++) hasher.region[i] = (i * 7) & 0xff;
    const out = new Uint32Array(8);
    hasher.hashRegion(0, 8, out);
    const want = Array.from({ length: 8 }, (_, i) => xxh32(hasher.region.subarray(i * 4096, (i + 1) * 4096), 0));
    process.stdout.write(JSON.stringify({ simd: hasher.simd, same: want.every((h, i) => h === out[i]) }));`;
  const run = spawnSync('bash', ['-c', `ulimit -v 3000000 && exec "${process.execPath}" --input-type=module -e "$0"`, script], {
    encoding: 'utf8',
    cwd: new URL('..', import.meta.url).pathname,
    timeout: 30_000,
  });
  expect(run.status, run.stderr).toBe(0);
  expect(JSON.parse(run.stdout)).toEqual({ simd: false, same: true });
}, 40_000);
