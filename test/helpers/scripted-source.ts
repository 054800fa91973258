// Playing the source of a migration record by record, into a target whose domains are plain
// memory (kind "stub") and whose hooks a test can make fail.
import { Packr } from 'msgpackr';
import type { GuestMemory, TargetBackend, TargetDomain } from '../../dist/domain/backend.js';
import type { DomainDescriptor } from '../../dist/protocol/records.js';
import { decodeFrame, encodeRecord } from '../../dist/protocol/codec.js';
import { PageDigest, switchoverDigest } from '../../dist/protocol/page-digest.js';
import { PROTOCOL_VERSION, type HelloRecord, type MigrationRecord } from '../../dist/protocol/records.js';
import type { Transport } from '../../dist/transport/transport.js';

export const PAGE_SIZE = 4096;
/** Pages of every stub domain. */
export const STUB_PAGES = 16;
/** The device state every scripted source sends. */
export const STUB_STATE = Uint8Array.of(1, 2, 3, 4);

/**
 * A domain in plain memory; `fail` names hooks that throw a plain Error (as a buggy backend
 * would), and `resumeDelayMs` makes resuming take that long (as a loaded hypervisor may).
 */
export class StubDomain implements TargetDomain {
  readonly pageCount: number;
  readonly bytes: Uint8Array;
  paused = true;
  /** Hook calls, in order. */
  readonly calls: string[] = [];

  constructor(
    readonly descriptor: DomainDescriptor,
    private readonly fail: ReadonlySet<string>,
    private readonly resumeDelayMs = 0,
  ) {
    this.pageCount = descriptor.memoryBytes / descriptor.pageSize;
    this.bytes = new Uint8Array(descriptor.memoryBytes);
  }

  private hook(name: string): void {
    this.calls.push(name);
    if (this.fail.has(name)) throw new Error(`stub ${name} broke`);
  }

  memory(): GuestMemory {
    return { kind: 'none' };
  }

  writePages(pfns: Uint32Array, src: Uint8Array): void {
    pfns.forEach((pfn, i) => this.bytes.set(src.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), pfn * PAGE_SIZE));
  }

  zeroPages(pfns: Uint32Array): void {
    for (const pfn of pfns) this.bytes.fill(0, pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }

  readPages(pfns: Uint32Array, dst: Uint8Array): void {
    pfns.forEach((pfn, i) => dst.set(this.bytes.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE), i * PAGE_SIZE));
  }

  async loadState(): Promise<void> {
    this.hook('loadState');
  }

  async resume(): Promise<void> {
    this.hook('resume');
    if (this.resumeDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.resumeDelayMs));
    this.paused = false;
  }

  async pause(): Promise<void> {
    this.hook('pause');
    this.paused = true;
  }

  saveState(): Uint8Array {
    this.hook('saveState');
    return STUB_STATE;
  }

  async destroy(): Promise<void> {
    this.calls.push('destroy');
  }
}

/** Builds {@link StubDomain}s and keeps them for the test to look at. */
export class StubBackend implements TargetBackend {
  readonly kind = 'stub';
  readonly domains: StubDomain[] = [];

  constructor(
    private readonly fail: ReadonlySet<string> = new Set(),
    private readonly resumeDelayMs = 0,
  ) {}

  async create(descriptor: DomainDescriptor): Promise<TargetDomain> {
    const domain = new StubDomain(descriptor, this.fail, this.resumeDelayMs);
    this.domains.push(domain);
    return domain;
  }
}

export function stubHello(migrationId = 'scripted'): HelloRecord {
  return {
    type: 'hello',
    versions: [PROTOCOL_VERSION],
    migrationId,
    domain: { kind: 'stub', name: 'stub', memoryBytes: STUB_PAGES * PAGE_SIZE, pageSize: PAGE_SIZE, vcpus: 1, config: {} },
    codec: 'lz4',
  };
}

/** The next record from the target; throws at the end of the stream. */
export async function next(transport: Transport): Promise<MigrationRecord> {
  const frame = await transport.receive();
  if (frame === undefined) throw new Error('the target closed the connection');
  return decodeFrame(frame);
}

/**
 * Takes a target that has answered "ready" to a stub hello, with no pages sent, to `prepared`:
 * sends the device state and `complete` with the digest of untouched memory.
 */
export async function driveToPrepared(transport: Transport): Promise<void> {
  await transport.send(encodeRecord({ type: 'device-state', state: STUB_STATE }));
  const memory = new PageDigest(STUB_PAGES, PAGE_SIZE).digest();
  await transport.send(encodeRecord({ type: 'complete', batches: 0, digest: switchoverDigest(memory, STUB_STATE) }));
  const answer = await next(transport);
  if (answer.type !== 'prepared') throw new Error(`expected "prepared", got ${JSON.stringify(answer)}`);
}

const packr = new Packr({ useRecords: false });

/** A record of a type this version does not know, marked optional: a receiver skips it. */
export function unknownOptionalFrame(): Uint8Array {
  const header = packr.pack({ type: 'future-hint', optional: true });
  const frame = new Uint8Array(4 + header.length);
  new DataView(frame.buffer).setUint32(0, header.length, true);
  frame.set(header, 4);
  return frame;
}
