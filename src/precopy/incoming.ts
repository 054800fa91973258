/**
 * The target side of a live migration: builds an empty domain, fills it with the pages that
 * arrive, checks every batch and the final digest, and resumes the guest when the source says
 * "go". Which record is legal when is decided by the state machine in
 * src/protocol/receiver-state.ts; this file does what each record asks.
 *
 * Until "go" arrives, every failure ends with the copy here destroyed: the source still runs the
 * guest. After "go" the guest runs here whatever happens to the link.
 */

import type { TargetBackend, TargetDomain } from '../domain/backend.js';
import { memoryFreshUntilRound1 } from '../domain/guest-memory.js';
import {
  asMigrationError,
  ChecksumMismatchError,
  ConnectionClosedError,
  DigestMismatchError,
  type MigrationError,
  OutOfMemoryError,
  PageOutOfRangeError,
  PeerAbortedError,
  TimeoutError,
  UnexpectedRecordError,
  UnknownBackendError,
  UnsupportedVersionError,
} from '../errors.js';
import { decodeFrame, encodeRecord } from '../protocol/codec.js';
import { resolveLimits, type ProtocolLimits } from '../protocol/limits.js';
import { decodePagesPayload } from '../protocol/page-codecs.js';
import { batchChecksum, PageDigest, switchoverDigest } from '../protocol/page-digest.js';
import { HASH_COPY_PAGES, PageHasher } from '../protocol/page-hasher.js';
import { readPageNumbers } from '../protocol/page-list.js';
import { receiverTransition, type ReceiverState } from '../protocol/receiver-state.js';
import {
  CHANNELS_DELTA_PROTOCOL_VERSION,
  CHANNELS_PROTOCOL_VERSION,
  DELTA_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  versionHasChannels,
  versionHasDelta,
  type HelloRecord,
  type MigrationRecord,
  type PagesRecord,
  type RoundEndRecord,
} from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { isDeadline, withDeadline } from '../util/deadline.js';
import { collectorFrom } from '../util/gc.js';
import { abortPeer } from './abort-peer.js';
import { IncomingChannels, type ChannelHub } from './incoming-channels.js';
import { LANDING_HEADER_BYTES, LandingRing } from './landing-ring.js';

/**
 * How long a prepared target waits for "go", in milliseconds. Past it the target discards its
 * copy, so a source that lost the link after sending "go" learns a definite answer by asking.
 */
export const DEFAULT_GO_TIMEOUT_MS = 10_000;

/** Options of {@link receiveMigration}. */
export interface IncomingOptions {
  /** Backends by domain kind. */
  backends: ReadonlyMap<string, TargetBackend>;
  /** Limits on what the source may send. */
  limits?: Partial<ProtocolLimits>;
  /** Called as the migration moves between states. */
  onState?: (state: ReceiverState, migrationId: string) => void;
  /** Called with the domain as soon as it exists (before any page arrives). */
  onDomain?: (domain: TargetDomain, migrationId: string) => void;
  /**
   * Called the moment the guest runs here, before the source is told, with what the result will
   * say (the link may take a while longer to wind down).
   */
  onResumed?: (domain: TargetDomain, migrationId: string, result: IncomingResult) => void;
  /** @default DEFAULT_GO_TIMEOUT_MS */
  goTimeoutMs?: number;
  /**
   * Where the page channels of this migration join it (docs/protocol.md §15). With a hub the
   * target speaks version 3 to a source that offers it and whose guest memory worker threads can
   * reach; without one, version 2 only. @default none
   */
  channelHub?: ChannelHub;
  /**
   * A full garbage collection of this process, run when the source says it will likely pause the
   * guest after the current round ("pause-soon"), before the round is acknowledged: not during
   * the pause. `null` turns it off. @default the collector of a Node started with `--expose-gc`
   * (the livemig command turns it on), else none
   */
  collectGarbage?: (() => void) | null;
  /**
   * Take pages sent again as deltas against the copy held here (the `delta` encoding of
   * docs/protocol.md §5, versions 4 and 5), when the source offers it. @default true
   */
  delta?: boolean;
}

/** How an incoming migration ended. */
export interface IncomingResult {
  migrationId: string;
  /** `resumed`: the guest runs here; `discarded`: the copy here was destroyed. */
  outcome: 'resumed' | 'discarded';
  /** The running domain, when resumed. */
  domain?: TargetDomain;
  /** Why it was discarded. */
  error?: { code: string; message: string };
  /** Pages written (data and zero), batches received, and frame bytes received (headers included). */
  pages: number;
  batches: number;
  bytesWire: number;
  /** Target's digest at resume. */
  digest?: string;
  /** Who the guest is in its pool, if the source said (its optional `guest` record). */
  guest?: { id: string; priority: number };
}

/**
 * Receives one migration whose `hello` was already read from `transport`. Always resolves;
 * closes the transport when done.
 */
export async function receiveMigration(transport: Transport, hello: HelloRecord, options: IncomingOptions): Promise<IncomingResult> {
  return new IncomingMigration(transport, hello, options).run();
}

/**
 * Reads the first record of `transport`, which must be a `hello`, and receives that migration.
 * For a transport that carries only migrations (a target agent also answers queries and reads
 * the first record itself).
 */
export async function acceptMigration(transport: Transport, options: IncomingOptions): Promise<IncomingResult> {
  let record: MigrationRecord;
  try {
    // Unknown optional records pass before the hello as in every other state that is not final
    // (protocol.md §7), and a peer's abort is not answered with one (§10).
    do {
      const frame = await transport.receive();
      if (frame === undefined) throw new ConnectionClosedError('the source closed the connection before its hello');
      record = decodeFrame(frame, options.limits);
    } while (record.type === 'ignored');
    if (record.type === 'abort') throw new PeerAbortedError(record.code, record.message);
    if (record.type !== 'hello') throw new UnexpectedRecordError(`a migration must start with "hello", not "${record.type}"`);
  } catch (err) {
    const error = asMigrationError(err, 'ERR_MALFORMED_RECORD');
    await abortPeer(transport, error, error.code !== 'ERR_PEER_ABORTED' && error.code !== 'ERR_CONNECTION_CLOSED');
    throw error;
  }
  return receiveMigration(transport, record, options);
}

class IncomingMigration {
  private state: ReceiverState = 'await-hello';
  private readonly limits: ProtocolLimits;
  private domain: TargetDomain | undefined;
  /** Whether the domain's memory is fresh, all zeros, until round 0 has written it. */
  private freshUntilRound1 = false;
  private digest: PageDigest | undefined;
  /** The page channels, when version 3 was chosen. */
  private channels: IncomingChannels | undefined;
  private nextSeq = 0;
  /** The version chosen in `ready`. */
  private version = PROTOCOL_VERSION;
  private pages = 0;
  private resumed = false;
  /** The memory digest once "complete" checked out. */
  private memoryDigest: string | undefined;
  /** The device state received, for the switchover digest. */
  private deviceState: Uint8Array | undefined;
  private readonly collectGarbage: (() => void) | undefined;
  /** Scratch for the page hashes of one batch (the decoder bounds its data pages). */
  private readonly batchHashes: Uint32Array;
  /** Hashes received pages a batch at a time; made for the domain's page size. */
  private hasher: PageHasher | undefined;
  /** Slots in the hasher's memory that batches land in, if the transport can land them. */
  private landing: LandingRing | undefined;
  /**
   * When the wait for "go" ends, on the `performance.now()` clock: fixed on entering `prepared`,
   * so that records which change nothing (unknown optional ones) cannot keep the target waiting.
   */
  private goDeadline = Infinity;
  /** The source's `guest` record, if it sent one. */
  private guest: { id: string; priority: number } | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly hello: HelloRecord,
    private readonly options: IncomingOptions,
  ) {
    this.limits = resolveLimits(options.limits);
    this.collectGarbage = collectorFrom(options.collectGarbage);
    this.batchHashes = new Uint32Array(this.limits.maxDataPagesPerBatch);
  }

  private get id(): string {
    return this.hello.migrationId;
  }

  async run(): Promise<IncomingResult> {
    try {
      await this.accept();
      while (!this.resumed) {
        const frame = await (this.channels ? Promise.race([this.nextFrame(), this.channels.failed]) : this.nextFrame());
        if (frame === undefined) throw new ConnectionClosedError(`the source closed the connection in state ${this.state}`);
        await this.handle(decodeFrame(frame, this.limits));
        this.landing?.release(frame);
      }
      await this.transport.close().catch(() => undefined);
      return this.result('resumed');
    } catch (err) {
      this.closeChannels(false);
      // Link and record failures arrive as coded errors already; anything else came from the backend.
      const error = asMigrationError(err);
      if (this.resumed) {
        // The guest already runs here; a late link failure changes nothing.
        this.transport.destroy();
        return this.result('resumed');
      }
      await this.discard(error);
      return { ...this.result('discarded'), error: error.toJSON() };
    }
  }

  /** The next frame; once prepared, only until the "go" deadline. */
  private async nextFrame(): Promise<Uint8Array | undefined> {
    if (this.state !== 'prepared') return this.transport.receive();
    const timeoutMs = this.options.goTimeoutMs ?? DEFAULT_GO_TIMEOUT_MS;
    const timedOut = (): TimeoutError => new TimeoutError(`no "go" within ${timeoutMs} ms of "prepared"; the copy here is discarded`);
    const leftMs = this.goDeadline - performance.now();
    // Checked before reading: a peer that keeps frames queued would otherwise win every race
    // against an expired timer.
    if (leftMs <= 0) throw timedOut();
    return withDeadline(this.transport.receive(), leftMs, timedOut);
  }

  private result(outcome: 'resumed' | 'discarded'): IncomingResult {
    return {
      migrationId: this.id,
      outcome,
      domain: outcome === 'resumed' ? this.domain : undefined,
      pages: this.pages + (this.channels?.pages ?? 0),
      batches: this.nextSeq + (this.channels?.batches ?? 0),
      bytesWire: this.transport.bytesReceived,
      digest: outcome === 'resumed' ? this.digest?.digest() : undefined,
      guest: this.guest,
    };
  }

  private move(event: Parameters<typeof receiverTransition>[1]): void {
    this.state = receiverTransition(this.state, event);
    this.options.onState?.(this.state, this.id);
  }

  /** Checks the hello against this host, allocates the empty domain, and answers "ready". */
  private async accept(): Promise<void> {
    this.move('hello');
    const hello = this.hello;
    const spoken = [PROTOCOL_VERSION, CHANNELS_PROTOCOL_VERSION, DELTA_PROTOCOL_VERSION, CHANNELS_DELTA_PROTOCOL_VERSION];
    if (!hello.versions.some((v) => spoken.includes(v))) {
      throw new UnsupportedVersionError(
        `the source speaks protocol versions ${hello.versions.join(', ')}; this target speaks ${spoken.join(', ')}`,
      );
    }
    const d = hello.domain;
    if (d.memoryBytes > this.limits.maxGuestMemoryBytes) {
      throw new OutOfMemoryError(
        `the domain needs ${d.memoryBytes} bytes of memory; this target accepts at most ${this.limits.maxGuestMemoryBytes}`,
      );
    }
    const backend = this.options.backends.get(d.kind);
    if (!backend) throw new UnknownBackendError(d.kind, [...this.options.backends.keys()]);
    this.domain = await backend.create(d);
    this.options.onDomain?.(this.domain, this.id);
    this.freshUntilRound1 = memoryFreshUntilRound1(this.domain.memory());
    this.digest = new PageDigest(this.domain.pageCount, d.pageSize);
    // Batches land in the hasher's memory when the transport can put them there.
    const landing = this.transport.landFramesIn !== undefined;
    const slotBytes = HASH_COPY_PAGES * d.pageSize + LANDING_HEADER_BYTES;
    this.hasher = new PageHasher(d.pageSize, { copyPages: HASH_COPY_PAGES, regionBytes: landing ? LandingRing.bytes(slotBytes) : 0 });
    if (landing) {
      this.landing = new LandingRing(this.hasher.region, slotBytes);
      this.transport.landFramesIn!(this.landing);
    }
    const hub = this.options.channelHub;
    // Channels need a hub to join through and memory the workers can write; the highest version
    // offered of those this target can keep to is chosen.
    const channelsPossible = hub !== undefined && this.domain.memory().kind !== 'none';
    const deltaPossible = this.options.delta ?? true;
    const version = Math.max(
      ...hello.versions.filter((v) => spoken.includes(v) && (!versionHasChannels(v) || channelsPossible) && (!versionHasDelta(v) || deltaPossible)),
      PROTOCOL_VERSION,
    );
    this.version = version;
    if (versionHasChannels(version)) {
      this.channels = new IncomingChannels(this.domain, this.digest, this.limits, versionHasDelta(version));
      hub!.add(this.id, this.channels);
    }
    await this.transport.send(encodeRecord({ type: 'ready', version, migrationId: this.id }));
  }

  private async handle(record: MigrationRecord): Promise<void> {
    this.move(record.type);
    switch (record.type) {
      case 'ignored':
        return;
      case 'guest':
        // Once, before any page: a guest that changes who it is mid-stream is not one guest.
        if (this.guest !== undefined || this.nextSeq > 0) {
          throw new UnexpectedRecordError('a "guest" record comes at most once, before the first page batch');
        }
        this.guest = { id: record.id, priority: record.priority };
        return;
      case 'pages':
        await this.writeBatch(record);
        return;
      case 'pause-soon': {
        // Collect now, before the round is acknowledged and the source pauses: not in the pause.
        // The source learns how long it took, which its acknowledgement then waited.
        if (!this.collectGarbage) return;
        const started = performance.now();
        this.collectGarbage();
        await this.transport.send(encodeRecord({ type: 'collected', ms: performance.now() - started }));
        return;
      }
      case 'round-end':
        // Everything of the round is written by now: say so, so the source can pace itself.
        await this.transport.send(encodeRecord({ type: 'round-ack', round: record.round, batches: await this.roundWritten(record) }));
        return;
      case 'device-state': {
        // Kept past its frame, whose memory may be a landing slot that a later frame reuses.
        const state = record.state.slice();
        await this.domain!.loadState(state);
        this.deviceState = state;
        return;
      }
      case 'complete': {
        this.channels?.seal();
        const arrived = this.nextSeq + (this.channels?.batches ?? 0);
        if (record.batches !== arrived) {
          throw new UnexpectedRecordError(`the source says it sent ${record.batches} batches; ${arrived} arrived`);
        }
        // Nothing is written between here and the resume: this is also the digest at resume.
        this.memoryDigest = this.digest!.digest();
        const mine = switchoverDigest(this.memoryDigest, this.deviceState!);
        if (mine !== record.digest) {
          throw new DigestMismatchError(`the memory and device state received have digest ${mine}; the source sent ${record.digest}`);
        }
        await this.transport.send(encodeRecord({ type: 'prepared', digest: mine }));
        this.move('sent-prepared');
        const goTimeoutMs = this.options.goTimeoutMs ?? DEFAULT_GO_TIMEOUT_MS;
        if (isDeadline(goTimeoutMs)) this.goDeadline = performance.now() + goTimeoutMs;
        return;
      }
      case 'go': {
        const started = performance.now();
        await this.domain!.resume();
        this.resumed = true;
        const resumeMs = performance.now() - started;
        this.options.onResumed?.(this.domain!, this.id, this.result('resumed'));
        // The guest runs: from here on a failure to tell the source does not undo anything.
        await this.transport.send(encodeRecord({ type: 'resumed', resumeMs, digest: this.memoryDigest ?? this.digest!.digest() })).catch(() => undefined);
        // Only now: stopping workers and closing connections would lengthen the pause.
        this.closeChannels(true);
        return;
      }
      case 'abort':
        throw new PeerAbortedError(record.code, record.message);
      default:
        // The state machine admits nothing else here; this guards against the two disagreeing.
        throw new UnexpectedRecordError(`record "${record.type}" is not handled by a receiving target`);
    }
  }

  /**
   * Batches written once the round `record` ends is written: on page channels, once each has
   * written what the source says it sent on it; without channels, everything before the record.
   */
  private async roundWritten(record: RoundEndRecord): Promise<number> {
    if (!this.channels) {
      if (record.channels !== undefined) throw new UnexpectedRecordError('"round-end" names page channels, but this migration has none');
      return this.nextSeq;
    }
    if (record.channels === undefined) throw new UnexpectedRecordError('"round-end" of a migration with page channels must give their batch counts');
    return this.nextSeq + (await this.channels.waitFor(record.channels));
  }

  /** Ends the page channels and forgets them in the hub. */
  private closeChannels(clean: boolean): void {
    if (!this.channels) return;
    this.options.channelHub?.remove(this.id, this.channels);
    this.channels.close(clean);
  }

  /** Checks one batch against the announced memory and its checksum, then writes it. */
  private async writeBatch(record: PagesRecord): Promise<void> {
    const domain = this.domain!;
    const digest = this.digest!;
    if (record.seq !== this.nextSeq) {
      throw new UnexpectedRecordError(`page batch ${record.seq} arrived where batch ${this.nextSeq} was due`);
    }
    const pfns = readPageNumbers(record.pages);
    const zeros = readPageNumbers(record.zeros);
    checkInRange(pfns, domain.pageCount);
    checkInRange(zeros, domain.pageCount);
    // A delta's base is what this domain holds of the page now.
    const bases = versionHasDelta(this.version) ? { pfns, readPages: (p: Uint32Array, dst: Uint8Array) => domain.readPages(p, dst) } : undefined;
    const raw = await decodePagesPayload(record, bases);
    // Each page is hashed once: its hash makes the batch's checksum and goes into the digest.
    const hashes = this.batchHashes.subarray(0, pfns.length);
    this.hasher!.hashPages(raw, 0, pfns.length, hashes);
    const sum = batchChecksum(hashes, record.seq);
    if (sum !== record.checksum) {
      throw new ChecksumMismatchError(`page batch ${record.seq} has checksum ${sum} after decompression; the source sent ${record.checksum}`);
    }
    // The backend's hooks may finish at once (memory here) or return a promise (I/O): only a
    // promise is awaited.
    if (pfns.length > 0) {
      const written = domain.writePages(pfns, raw);
      if (written !== undefined) await written;
    }
    for (let i = 0; i < pfns.length; i++) digest.set(pfns[i]!, hashes[i]!);
    // Round 0 names each page once, so on fresh memory its zero pages already are.
    if (zeros.length > 0 && !(this.freshUntilRound1 && record.round === 0)) {
      const zeroed = domain.zeroPages(zeros);
      if (zeroed !== undefined) await zeroed;
    }
    for (let i = 0; i < zeros.length; i++) digest.zero(zeros[i]!);
    this.pages += pfns.length + zeros.length;
    this.nextSeq++;
  }

  private async discard(error: MigrationError): Promise<void> {
    await abortPeer(this.transport, error, error.code !== 'ERR_PEER_ABORTED');
    try {
      this.state = 'aborted';
      this.options.onState?.(this.state, this.id);
    } finally {
      await this.domain?.destroy().catch(() => undefined);
    }
  }
}

function checkInRange(pfns: Uint32Array, pageCount: number): void {
  for (let i = 0; i < pfns.length; i++) {
    if (pfns[i]! >= pageCount) {
      throw new PageOutOfRangeError(`page ${pfns[i]} is beyond the announced memory of ${pageCount} pages`);
    }
  }
}
