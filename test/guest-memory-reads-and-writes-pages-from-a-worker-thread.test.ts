// Guest memory described by a backend's `memory()` is read and written from a worker thread, as a
// channel worker or a dirty-page scanner will: the shared memory of a simulated guest, and a RAM
// backing file at an offset, through src/domain/guest-memory.ts opened inside the worker.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, test } from 'vitest';
import type { GuestMemory } from '../dist/domain/backend.js';
import { openGuestMemory } from '../dist/domain/guest-memory.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';

const PAGE = 4096;
const MiB = 1024 * 1024;
const MODULE = new URL('../dist/domain/guest-memory.js', import.meta.url).href;

/** What a worker is asked to do, in this order, through its own accessor. */
interface Job {
  memory: GuestMemory;
  read: number[];
  run: [first: number, count: number];
  write?: { pfns: number[]; bytes: Uint8Array };
  zero?: number[];
}

interface Answer {
  threadId: number;
  read: Uint8Array;
  run: Uint8Array;
}

// CommonJS, as an eval'ed worker is; the module under test is loaded with a dynamic import.
const WORKER_SOURCE = `
const { parentPort, workerData, threadId } = require('node:worker_threads');
import(workerData.module).then(({ openGuestMemory }) => {
  const job = workerData.job;
  const access = openGuestMemory(job.memory, ${PAGE}, { writable: true });
  const read = new Uint8Array(job.read.length * ${PAGE});
  access.readPages(Uint32Array.from(job.read), read);
  const run = access.readRun(job.run[0], job.run[1]).slice();
  if (job.write) access.writePages(Uint32Array.from(job.write.pfns), job.write.bytes);
  if (job.zero) access.zeroPages(Uint32Array.from(job.zero));
  access.close();
  parentPort.postMessage({ threadId, read, run });
});
`;

function inWorker(job: Job): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: MODULE, job } });
    worker.once('message', (answer: Answer) => resolve(answer));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker exited with ${code} before answering`)));
  });
}

/** The pages `pfns` of `memory` (a whole memory image), back to back. */
function pagesOf(memory: Uint8Array, pfns: number[], base = 0): Uint8Array {
  const out = new Uint8Array(pfns.length * PAGE);
  pfns.forEach((pfn, i) => out.set(memory.subarray(base + pfn * PAGE, base + (pfn + 1) * PAGE), i * PAGE));
  return out;
}

describe('a simulated guest\'s shared memory', () => {
  const guests: SimulatedGuest[] = [];
  afterAll(async () => {
    for (const guest of guests) await guest.destroy();
  });

  test('is read by a worker exactly as the guest reads it, and written by one into an empty guest', async () => {
    const source = await SimulatedGuest.boot({ memoryBytes: 8 * MiB, vcpus: 1, workload: 'idle', dirtyRateBytesPerSec: 0, hotSetBytes: MiB, seed: 3 });
    guests.push(source);
    await source.pause();
    const target = await SimulatedGuest.createEmpty(source.descriptor);
    guests.push(target);

    // Out of order, with a run of three and a page alone.
    const pfns = [5, 6, 7, 100, 2];
    const here = new Uint8Array(pfns.length * PAGE);
    source.readPages(Uint32Array.from(pfns), here);
    const answer = await inWorker({ memory: source.memory(), read: pfns, run: [5, 3] });
    expect(answer.threadId).not.toBe(0);
    expect(Buffer.from(answer.read).equals(Buffer.from(here))).toBe(true);
    expect(Buffer.from(answer.run).equals(Buffer.from(source.bytes.subarray(5 * PAGE, 8 * PAGE)))).toBe(true);
    expect(here.some((b) => b !== 0)).toBe(true);

    // The target's page 9 holds data here; the worker writes three pages and zeroes page 9.
    target.writePages(Uint32Array.of(9), new Uint8Array(PAGE).fill(0xaa));
    await inWorker({ memory: target.memory(), read: [9], run: [0, 1], write: { pfns: [10, 11, 300], bytes: here.subarray(0, 3 * PAGE) }, zero: [9] });
    expect(Buffer.from(pagesOf(target.bytes, [10, 11, 300])).equals(Buffer.from(here.subarray(0, 3 * PAGE)))).toBe(true);
    expect(target.bytes.subarray(9 * PAGE, 10 * PAGE).every((b) => b === 0)).toBe(true);
    expect(target.bytes.subarray(12 * PAGE, 300 * PAGE).every((b) => b === 0)).toBe(true);
  });
});

describe('a RAM backing file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'livemig-guest-memory-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('is read and written by a worker with positioned I/O, at the described offset only', async () => {
    // One page of something else, then 64 pages of guest memory, then one more page of something else.
    const path = join(dir, 'ram');
    const file = randomBytes(66 * PAGE);
    writeFileSync(path, file);
    const base = PAGE;
    const memory: GuestMemory = { kind: 'file', path, byteOffset: base, byteLength: 64 * PAGE };
    const fresh = randomBytes(2 * PAGE);

    const answer = await inWorker({ memory, read: [3, 4, 63, 0], run: [62, 2], write: { pfns: [1, 2], bytes: fresh }, zero: [9, 10] });
    expect(answer.threadId).not.toBe(0);
    expect(Buffer.from(answer.read).equals(Buffer.from(pagesOf(file, [3, 4, 63, 0], base)))).toBe(true);
    expect(Buffer.from(answer.run).equals(file.subarray(base + 62 * PAGE, base + 64 * PAGE))).toBe(true);

    const after = readFileSync(path);
    const expected = Buffer.from(file);
    expected.set(fresh, base + PAGE);
    expected.fill(0, base + 9 * PAGE, base + 11 * PAGE);
    expect(after.length).toBe(file.length);
    expect(after.equals(expected)).toBe(true);
  });

  test('that ends inside the memory it is said to hold is refused as a domain failure', () => {
    const path = join(dir, 'short');
    writeFileSync(path, randomBytes(10 * PAGE));
    const access = openGuestMemory({ kind: 'file', path, byteOffset: 0, byteLength: 16 * PAGE }, PAGE);
    try {
      expect(() => access.readPages(Uint32Array.of(12), new Uint8Array(PAGE))).toThrow(expect.objectContaining({ code: 'ERR_DOMAIN_FAILED' }));
      expect(() => access.readPages(Uint32Array.of(16), new Uint8Array(PAGE))).toThrow(expect.objectContaining({ code: 'ERR_PAGE_OUT_OF_RANGE' }));
    } finally {
      access.close();
    }
  });

  test('a memory only the domain\'s hooks reach cannot be opened', () => {
    expect(() => openGuestMemory({ kind: 'none' }, PAGE)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    const buffer = new SharedArrayBuffer(4 * PAGE);
    expect(() => openGuestMemory({ kind: 'shared', buffer, byteOffset: PAGE, byteLength: 4 * PAGE }, PAGE)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
  });
});
