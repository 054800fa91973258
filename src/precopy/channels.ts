/**
 * The source side of page channels (docs/protocol.md §15): extra connections to the target, each
 * fed by a worker thread (channel-worker.ts) that reads guest memory itself, tests for zero,
 * hashes, compresses and frames. The main thread hands out work, sends the frames on each
 * channel's transport in order, keeps the memory digest, and numbers nothing: each channel counts
 * its own batches from 0, and `round-end` tells the target how many each has sent.
 *
 * The connections belong to the main thread, not to the workers, so the engine talks to the
 * `Transport` interface only and the caller opens (and authenticates) the connections as it
 * opens the control one. What the main thread keeps is the socket writes, about a tenth of a
 * page's cost on the source.
 */

import { Worker } from 'node:worker_threads';
import type { SourceDomain } from '../domain/backend.js';
import {
  asMigrationError,
  ConnectionClosedError,
  InvalidArgumentError,
  MigrationError,
  type MigrationErrorCode,
  PeerAbortedError,
  TimeoutError,
  UnexpectedRecordError,
} from '../errors.js';
import { decodeFrame, encodeRecord, PAGES_HEADER_RESERVE_BYTES } from '../protocol/codec.js';
import type { ProtocolLimits } from '../protocol/limits.js';
import { deltaMaxPayloadBytes } from '../protocol/page-codec-delta.js';
import { pagePayloadCodec, type PageCodec } from '../protocol/page-codecs.js';
import type { PageDigest } from '../protocol/page-digest.js';
import { sourceChannelTransition, type SourceChannelState } from '../protocol/receiver-state.js';
import type { Transport } from '../transport/transport.js';
import { withDeadline } from '../util/deadline.js';
import type { SendPacer } from './bandwidth-cap.js';
import type { SourceWorkerData, SourceWorkerReply, SourceWorkerRequest } from './channel-messages.js';
import type { DeltaCache } from './delta-cache.js';
import { DEFAULT_DATA_PAGES_PER_BATCH, DEFAULT_MAX_IN_FLIGHT_BATCHES, type DeltaCounters, type PageSender, type SenderCounters } from './page-sender.js';

/**
 * Pages handed to one channel's worker and not yet framed, beyond which `sendPages` waits: two
 * of the engine's slices, so a worker always has the next one queued and the engine still looks
 * at deadlines and cancellation every slice or so.
 */
export const CHANNEL_QUEUE_PAGES = 8192;

/**
 * Rounds of fewer pages than this go on the control connection, from the main thread: a worker's
 * turn costs a few hundred microseconds on an idle machine and several milliseconds on a loaded
 * one, which a small last round, sent while the guest is paused, would add to the pause. 32 MiB
 * takes the main thread about 30 ms to send alone, more than the workers' turn costs.
 */
export const CHANNEL_MIN_ROUND_PAGES = 8192;

/** What the engine sends pages through: one connection ({@link PageSender}) or several ({@link ChannelSender}). */
export interface PageSink {
  /** Batches sent in all, over every channel. */
  readonly seq: number;
  readonly counters: SenderCounters;
  /** What went as deltas, over every connection. */
  readonly deltaCounters: DeltaCounters;
  /** Says how many pages the round about to be sent has (page channels choose where it goes). */
  startRound?(pages: number): void;
  /** Sends pages of round 1 and later as deltas against `cache` where it can. */
  useDelta(cache: DeltaCache): void;
  sendPages(round: number, pfns: Uint32Array): Promise<void>;
  wireShare(pfns: Uint32Array): Promise<number | undefined>;
  handedOver(): Promise<void>;
  flush(): Promise<void>;
}

/** Options of {@link ChannelSender.open}. */
export interface ChannelSenderOptions {
  migrationId: string;
  codec: PageCodec;
  dataPagesPerBatch?: number;
  maxInFlight?: number;
  cap?: SendPacer;
  /** How long each channel may take to be joined (`channel-ready`), in milliseconds. */
  timeoutMs: number;
  limits?: Partial<ProtocolLimits>;
  /** Called once, at the first failure of any channel, so the engine can stop waiting on the control link. */
  onFailure: (error: MigrationError) => void;
  /**
   * The target takes deltas: the workers size their frames for them. The cache comes later, if
   * at all ({@link ChannelSender.useDelta}). @default false
   */
  delta?: boolean;
}

/** One page channel as the main thread sees it. */
class SourceChannel {
  /** Batches handed to the transport. */
  batches = 0;
  /** Pages given to the worker and not yet reported done. */
  queuedPages = 0;
  /** Sends not yet resolved. */
  readonly sending = new Set<Promise<void>>();
  /** Settles once the last frame is handed to the transport (a cap may hold frames back). */
  chain: Promise<void> = Promise.resolve();

  constructor(
    readonly index: number,
    readonly transport: Transport,
    readonly worker: Worker,
  ) {}

  post(message: SourceWorkerRequest, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(message, transfer);
  }
}

/** Sends a migration's pages over `channels` connections, one worker each. */
export class ChannelSender implements PageSink {
  /** What the channels sent; {@link counters} adds the control connection's. */
  private readonly own: SenderCounters = { pages: 0, zeroPages: 0, bytesRaw: 0, bytesWire: 0 };
  private readonly ownDelta: DeltaCounters = { batches: 0, pages: 0, bytesRaw: 0, wholePages: 0 };
  /** Whether the round being sent goes on the channels (else on the control connection). */
  private onChannels = true;
  /** The first failure of any channel; every later call rethrows it. */
  failure: MigrationError | undefined;
  private readonly channels: SourceChannel[];
  private readonly waiters = new Set<() => void>();
  private released = false;
  /** The cache pages sent again are encoded against, once {@link useDelta} gave one. */
  private deltaCache: DeltaCache | undefined;

  private constructor(
    transports: readonly Transport[],
    workers: readonly Worker[],
    private readonly digest: PageDigest,
    private readonly control: PageSender,
    private readonly options: ChannelSenderOptions,
    /** Bytes the workers' frame and gather buffers hold, all channels together. */
    readonly bufferBytes: number,
  ) {
    this.channels = transports.map((t, i) => new SourceChannel(i, t, workers[i]!));
    for (const channel of this.channels) this.watch(channel);
  }

  /**
   * Joins each of `transports` (fresh, authenticated connections to the target) to the
   * migration as a page channel, and starts a worker for each. On failure every transport is
   * destroyed and every worker stopped before the error is thrown.
   */
  static async open(
    domain: SourceDomain,
    control: PageSender,
    transports: readonly Transport[],
    digest: PageDigest,
    options: ChannelSenderOptions,
  ): Promise<ChannelSender> {
    const memory = domain.memory();
    if (memory.kind === 'none') throw new InvalidArgumentError('page channels need guest memory that worker threads can reach; this domain has none');
    const workerData: SourceWorkerData = {
      memory,
      pageSize: domain.descriptor.pageSize,
      codec: options.codec,
      dataPagesPerBatch: options.dataPagesPerBatch ?? DEFAULT_DATA_PAGES_PER_BATCH,
      buffers: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT_BATCHES,
      delta: options.delta ?? false,
    };
    const workers = transports.map(() => new Worker(new URL('./channel-worker.js', import.meta.url), { workerData, execArgv: [] }));
    try {
      await Promise.all(transports.map((t, i) => joinChannel(t, options.migrationId, i, transports.length, options)));
    } catch (err) {
      for (const t of transports) t.destroy();
      for (const w of workers) void w.terminate();
      throw err;
    }
    return new ChannelSender(transports, workers, digest, control, options, transports.length * workerBufferBytes(workerData));
  }

  /** Batches sent on the control connection and every channel. */
  get seq(): number {
    let n = this.control.seq;
    for (const c of this.channels) n += c.batches;
    return n;
  }

  get counters(): SenderCounters {
    const c = this.control.counters;
    const o = this.own;
    return { pages: c.pages + o.pages, zeroPages: c.zeroPages + o.zeroPages, bytesRaw: c.bytesRaw + o.bytesRaw, bytesWire: c.bytesWire + o.bytesWire };
  }

  get deltaCounters(): DeltaCounters {
    const c = this.control.deltaCounters;
    const o = this.ownDelta;
    return { batches: c.batches + o.batches, pages: c.pages + o.pages, bytesRaw: c.bytesRaw + o.bytesRaw, wholePages: c.wholePages + o.wholePages };
  }

  /**
   * From now on, pages of round 1 and later are assigned slots of `cache` and go as deltas where
   * they can. Each worker is sent the cache's slots ahead of any job that names one; a migration
   * that never sends deltas never allocates a cache, so no worker holds one.
   */
  useDelta(cache: DeltaCache): void {
    this.deltaCache = cache;
    this.control.useDelta(cache);
    for (const c of this.channels) c.post({ kind: 'delta-cache', cache: cache.data, hashes: cache.hashes });
  }

  startRound(pages: number): void {
    this.onChannels = pages >= CHANNEL_MIN_ROUND_PAGES;
  }

  /** For each channel, the batches sent on it so far: `round-end.channels`. */
  channelBatches(): number[] {
    return this.channels.map((c) => c.batches);
  }

  /** Frame bytes sent on the channels (the control connection counts its own). */
  get bytesSent(): number {
    let n = 0;
    for (const c of this.channels) n += c.transport.bytesSent;
    return n;
  }

  /**
   * Queues `pfns` (ascending) for the least busy channel, and resolves once some channel has room
   * for more, so the engine's slices keep every worker busy without queuing a whole round.
   */
  async sendPages(round: number, pfns: Uint32Array): Promise<void> {
    this.throwIfFailed();
    if (!this.onChannels) return this.control.sendPages(round, pfns);
    if (pfns.length === 0) return;
    let target = this.channels[0]!;
    for (const c of this.channels) if (c.queuedPages < target.queuedPages) target = c;
    target.queuedPages += pfns.length;
    // A copy of just these pages: posting a view would copy the whole list it views.
    const own = pfns.slice();
    const codes = this.deltaCache && round > 0 ? this.deltaCache.assign(round, own) : undefined;
    target.post({ kind: 'job', round, pfns: own, codes }, codes ? [own.buffer, codes.buffer as ArrayBuffer] : [own.buffer]);
    while (!this.failure && Math.min(...this.channels.map((c) => c.queuedPages)) >= CHANNEL_QUEUE_PAGES) await this.progress();
    this.throwIfFailed();
  }

  /** Sampled on this thread through the domain's own hooks, as without channels. */
  wireShare(pfns: Uint32Array): Promise<number | undefined> {
    return this.control.wireShare(pfns);
  }

  /** Resolves once every page queued so far is framed and every frame handed to its transport. */
  async handedOver(): Promise<void> {
    await this.control.handedOver();
    while (!this.failure && this.channels.some((c) => c.queuedPages > 0)) await this.progress();
    this.throwIfFailed();
    await Promise.all(this.channels.map((c) => c.chain));
    this.throwIfFailed();
  }

  /** Resolves once every frame queued so far has been written to its connection. */
  async flush(): Promise<void> {
    await this.control.flush();
    await this.handedOver();
    for (const c of this.channels) await Promise.all(c.sending);
    this.throwIfFailed();
  }

  /**
   * Ends the channels: cleanly (the target has written every batch) or not. Workers stop at
   * once; connections close in the background. Idempotent.
   */
  release(clean: boolean): void {
    if (this.released) return;
    this.released = true;
    for (const c of this.channels) {
      void c.worker.terminate();
      if (clean) void c.transport.close();
      else c.transport.destroy();
    }
    this.wake();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private progress(): Promise<void> {
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiting) resolve();
  }

  private fail(error: MigrationError): void {
    if (this.failure || this.released) return;
    this.failure = error;
    this.wake();
    this.options.onFailure(error);
  }

  /** Listens to a channel's worker and reads its connection, which carries nothing but an abort. */
  private watch(channel: SourceChannel): void {
    channel.worker.on('message', (reply: SourceWorkerReply) => this.onReply(channel, reply));
    channel.worker.on('error', (err) => this.fail(new MigrationError('ERR_DOMAIN_FAILED', `page channel ${channel.index}'s worker failed: ${err.message}`)));
    channel.worker.on('exit', (code) => {
      if (!this.released) this.fail(new MigrationError('ERR_DOMAIN_FAILED', `page channel ${channel.index}'s worker exited (code ${code})`));
    });
    void this.drain(channel);
  }

  private async drain(channel: SourceChannel): Promise<void> {
    try {
      for (;;) {
        const frame = await channel.transport.receive();
        if (frame === undefined) break;
        const record = decodeFrame(frame, this.options.limits);
        sourceChannelTransition('channel-open', record.type);
        if (record.type === 'abort') throw new PeerAbortedError(record.code, record.message);
      }
      if (!this.released) throw new ConnectionClosedError(`the target closed page channel ${channel.index} before the migration ended`);
    } catch (err) {
      if (!this.released) this.fail(err instanceof MigrationError ? err : new ConnectionClosedError(`page channel ${channel.index} failed: ${String(err)}`));
    }
  }

  private onReply(channel: SourceChannel, reply: SourceWorkerReply): void {
    if (this.released) return;
    switch (reply.kind) {
      case 'frame':
        this.send(channel, reply);
        return;
      case 'job-done':
        channel.queuedPages -= reply.pages;
        this.wake();
        return;
      case 'error':
        this.fail(new MigrationError(reply.code as MigrationErrorCode, reply.message));
        return;
    }
  }

  /** Records a framed batch in the digest and the counters, and sends it behind the channel's earlier ones. */
  private send(channel: SourceChannel, reply: Extract<SourceWorkerReply, { kind: 'frame' }>): void {
    const { dataPfns, hashes, zeroPfns } = reply;
    for (let i = 0; i < dataPfns.length; i++) this.digest.set(dataPfns[i]!, hashes[i]!);
    for (let i = 0; i < zeroPfns.length; i++) this.digest.zero(zeroPfns[i]!);
    const cache = this.deltaCache;
    if (cache) for (let i = 0; i < zeroPfns.length; i++) cache.drop(zeroPfns[i]!);
    if (reply.deltas !== undefined) {
      this.ownDelta.batches++;
      this.ownDelta.pages += reply.deltas;
      this.ownDelta.bytesRaw += reply.deltas * this.digest.pageSize;
      this.ownDelta.wholePages += dataPfns.length - reply.deltas;
    }
    this.own.pages += dataPfns.length + zeroPfns.length;
    this.own.zeroPages += zeroPfns.length;
    this.own.bytesRaw += dataPfns.length * this.digest.pageSize;
    channel.batches++;
    const frame = new Uint8Array(reply.buffer, reply.offset, reply.length);
    const cap = this.options.cap;
    const handOver = (): void => {
      if (this.failure || this.released) return;
      this.own.bytesWire += frame.length;
      const sent = channel.transport.send(frame).then(
        () => {
          channel.sending.delete(sent);
          if (!this.released) channel.post({ kind: 'buffer', buffer: reply.buffer }, [reply.buffer]);
        },
        (err: unknown) => {
          channel.sending.delete(sent);
          this.fail(err instanceof MigrationError ? err : new ConnectionClosedError(`page channel ${channel.index} failed: ${String(err)}`));
        },
      );
      channel.sending.add(sent);
    };
    // A pacer that gives up (the migration ends while the frame waits) fails the channels.
    if (cap) channel.chain = channel.chain.then(() => cap.take(frame.length)).then(handOver, (err: unknown) => this.fail(asMigrationError(err)));
    else handOver();
  }
}

/** Bytes one source channel worker allocates for its frames and, with a compressing codec, its gathering. */
export function workerBufferBytes(data: SourceWorkerData): number {
  const codec = pagePayloadCodec(data.codec);
  const rawBytes = data.dataPagesPerBatch * data.pageSize;
  const delta = data.delta ? deltaMaxPayloadBytes(rawBytes) : 0;
  const slotBytes = PAGES_HEADER_RESERVE_BYTES + Math.max(codec.payloadIsRaw ? rawBytes : codec.maxPayloadBytes(rawBytes), delta);
  // With deltas, one more buffer: where a delta payload is encoded before it is copied into its frame.
  return data.buffers * slotBytes + (codec.payloadIsRaw ? 0 : rawBytes) + delta;
}

/** Sends `channel-hello` on `transport` and waits for the target's `channel-ready`. */
async function joinChannel(transport: Transport, migrationId: string, channel: number, of: number, options: ChannelSenderOptions): Promise<void> {
  await transport.send(encodeRecord({ type: 'channel-hello', migrationId, channel, of }));
  let state: SourceChannelState = 'channel-hello-sent';
  while (state === 'channel-hello-sent') {
    const frame = await withDeadline(
      transport.receive(),
      options.timeoutMs,
      () => new TimeoutError(`the target did not accept page channel ${channel} within ${options.timeoutMs} ms`),
    );
    if (frame === undefined) throw new ConnectionClosedError(`the target closed page channel ${channel} before accepting it`);
    const record = decodeFrame(frame, options.limits);
    state = sourceChannelTransition(state, record.type);
    if (record.type === 'abort') throw new PeerAbortedError(record.code, record.message);
    if (record.type === 'channel-ready' && record.channel !== channel) {
      throw new UnexpectedRecordError(`the target accepted page channel ${record.channel} on the connection of channel ${channel}`);
    }
  }
}

/**
 * Opens `count` more connections with `openChannel` and joins them to the migration as page
 * channels. What was opened is destroyed again if any fails.
 */
export async function openChannels(
  domain: SourceDomain,
  control: PageSender,
  count: number,
  openChannel: () => Promise<Transport>,
  digest: PageDigest,
  options: ChannelSenderOptions,
): Promise<ChannelSender> {
  const opened = await Promise.allSettled(Array.from({ length: count }, () => openChannel()));
  const transports = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = opened.find((o) => o.status === 'rejected');
  if (failed) {
    for (const t of transports) t.destroy();
    throw failed.reason;
  }
  return ChannelSender.open(domain, control, transports, digest, options);
}
