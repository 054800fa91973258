// Fresh target memory of kind "shared" reads as zeros (TargetDomain.memory), and round 0 names
// each page once: the target leaves round 0's zero pages unwritten there, and still zeroes the
// pages a later round sends as zero pages. Memory of any other kind gets every zero page written.
import { expect, test } from 'vitest';
import type { GuestMemory, TargetDomain } from '../dist/domain/backend.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { encodePages, encodeRecord } from '../dist/protocol/codec.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import { batchChecksum, hashPage } from '../dist/protocol/page-digest.js';
import type { DomainDescriptor } from '../dist/protocol/records.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { next, PAGE_SIZE, StubBackend, StubDomain, stubHello } from './helpers/scripted-source.js';

/** A stub domain that says its memory is fresh shared memory, and logs each zeroPages call. */
class SharedStubDomain extends StubDomain {
  readonly zeroCalls: number[][] = [];
  constructor(descriptor: DomainDescriptor, private readonly kind: 'shared' | 'none') {
    super(descriptor, new Set());
  }
  override memory(): GuestMemory {
    if (this.kind === 'none') return { kind: 'none' };
    const buffer = new SharedArrayBuffer(this.bytes.length);
    return { kind: 'shared', buffer, byteOffset: 0, byteLength: buffer.byteLength };
  }
  override zeroPages(pfns: Uint32Array): void {
    this.zeroCalls.push([...pfns]);
    super.zeroPages(pfns);
  }
}

class SharedStubBackend extends StubBackend {
  constructor(private readonly memoryKind: 'shared' | 'none') {
    super();
  }
  override async create(descriptor: DomainDescriptor): Promise<TargetDomain> {
    const domain = new SharedStubDomain(descriptor, this.memoryKind);
    this.domains.push(domain);
    return domain;
  }
}

function batch(round: number, seq: number, data: number[], zeros: number[]): Uint8Array {
  const payload = new Uint8Array(data.length * PAGE_SIZE);
  data.forEach((pfn, i) => payload.fill(pfn + 1, i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
  const hashes = Uint32Array.from(data, (_, i) => hashPage(payload, i * PAGE_SIZE, PAGE_SIZE));
  return encodePages(
    { round, pages: writePageNumbers(data), zeros: writePageNumbers(zeros), codec: 'none', rawLength: payload.length, checksum: batchChecksum(hashes, seq), seq },
    payload,
  );
}

test.each([
  ['shared', [[1]]],
  ['none', [[0, 3], [1]]],
] as const)('a target with memory of kind %s writes the zero pages %j', async (kind, expected) => {
  const backend = new SharedStubBackend(kind);
  const [source, target] = createMemoryTransportPair();
  const incoming = acceptMigration(target, { backends: new Map([[backend.kind, backend]]), collectGarbage: null });
  await source.send(encodeRecord(stubHello()));
  expect((await next(source)).type).toBe('ready');

  // Round 0: pages 1 and 2 hold data, 0 and 3 are zero pages; round 1: page 1 became zeros.
  await source.send(batch(0, 0, [1, 2], [0, 3]));
  await source.send(encodeRecord({ type: 'round-end', round: 0, pages: 4 }));
  expect(await next(source)).toEqual({ type: 'round-ack', round: 0, batches: 1 });
  await source.send(batch(1, 1, [], [1]));
  await source.send(encodeRecord({ type: 'round-end', round: 1, pages: 1 }));
  expect(await next(source)).toEqual({ type: 'round-ack', round: 1, batches: 2 });

  const domain = backend.domains[0] as SharedStubDomain;
  expect(domain.zeroCalls).toEqual(expected);
  const page = (pfn: number) => domain.bytes.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  expect(page(1).every((b) => b === 0)).toBe(true);
  expect(page(2).every((b) => b === 3)).toBe(true);

  await source.send(encodeRecord({ type: 'abort', code: 'ERR_CANCELLED', message: 'test over' }));
  expect(await incoming).toMatchObject({ outcome: 'discarded', error: { code: 'ERR_PEER_ABORTED' } });
  source.destroy();
});
