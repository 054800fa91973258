/**
 * The target side of page channels (docs/protocol.md §15). A {@link ChannelHub} (one per agent)
 * finds the migration a `channel-hello` names; the migration's {@link IncomingChannels} joins the
 * connection, starts a worker for it (channel-writer-worker.ts) that checks and writes the
 * channel's batches straight into guest memory, and counts what each channel has written, so
 * that a `round-end` is acknowledged only once every channel has written what the source sent.
 *
 * Any channel failing fails the migration before `go`, as the control connection does.
 */

import { Worker } from 'node:worker_threads';
import type { TargetDomain } from '../domain/backend.js';
import { memoryFreshUntilRound1 } from '../domain/guest-memory.js';
import {
  ConnectionClosedError,
  MigrationError,
  type MigrationErrorCode,
  PeerAbortedError,
  UnexpectedRecordError,
} from '../errors.js';
import { encodeRecord } from '../protocol/codec.js';
import type { ProtocolLimits } from '../protocol/limits.js';
import type { PageDigest } from '../protocol/page-digest.js';
import type { ChannelHelloRecord } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import type { TargetWorkerData, TargetWorkerReply } from './channel-messages.js';

/**
 * Frames of one channel handed to its worker and not yet written, at most. Beyond it the channel
 * stops reading, its transport's queue fills, and TCP holds the source back.
 */
export const CHANNEL_FRAMES_IN_WORKER = 4;

/** Where `channel-hello`s find their migration: the migrations of one agent that accept channels. */
export class ChannelHub {
  private readonly open = new Map<string, IncomingChannels>();

  /** Makes `channels` reachable under `migrationId` until {@link remove}. */
  add(migrationId: string, channels: IncomingChannels): void {
    this.open.set(migrationId, channels);
  }

  remove(migrationId: string, channels: IncomingChannels): void {
    if (this.open.get(migrationId) === channels) this.open.delete(migrationId);
  }

  /**
   * Joins `transport` to the migration its `hello` names, answers `channel-ready`, and resolves
   * once the channel is done (closed by the source, or ended with its migration).
   *
   * @throws UnexpectedRecordError for a migration that is not here, or does not take this channel.
   */
  async join(transport: Transport, hello: ChannelHelloRecord): Promise<void> {
    const channels = this.open.get(hello.migrationId);
    if (!channels) throw new UnexpectedRecordError(`no migration ${hello.migrationId} is being received here with page channels`);
    await channels.join(transport, hello);
  }
}

/** One joined channel. */
class TargetChannel {
  /** Batches written. */
  written = 0;
  /** Frames given to the worker and not answered yet. */
  inWorker = 0;
  ended = false;
  constructor(
    readonly index: number,
    readonly transport: Transport,
    readonly worker: Worker,
  ) {}
}

/** The page channels of one incoming migration. */
export class IncomingChannels {
  /** Pages written over every channel. */
  pages = 0;
  /** Rejects with the first failure of any channel. */
  readonly failed: Promise<never>;
  private rejectFailed!: (error: MigrationError) => void;
  private failure: MigrationError | undefined;
  private readonly channels: Array<TargetChannel | undefined> = [];
  private of = 0;
  private sealed = false;
  private closed = false;
  private readonly waiters = new Set<() => void>();
  private readonly workerData: TargetWorkerData;

  constructor(
    domain: TargetDomain,
    private readonly digest: PageDigest,
    limits: ProtocolLimits,
    delta = false,
  ) {
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => undefined);
    const memory = domain.memory();
    this.workerData = {
      memory,
      pageSize: domain.descriptor.pageSize,
      pageCount: domain.pageCount,
      limits,
      freshUntilRound1: memoryFreshUntilRound1(memory),
      delta,
    };
  }

  /** Batches written over every channel. */
  get batches(): number {
    let n = 0;
    for (const c of this.channels) n += c?.written ?? 0;
    return n;
  }

  /** See {@link ChannelHub.join}. */
  async join(transport: Transport, hello: ChannelHelloRecord): Promise<void> {
    if (this.closed || this.sealed) throw new UnexpectedRecordError(`migration ${hello.migrationId} takes no more page channels`);
    if (this.of === 0) this.of = hello.of;
    if (hello.of !== this.of || hello.channel >= this.of || this.channels[hello.channel]) {
      throw new UnexpectedRecordError(
        `page channel ${hello.channel} of ${hello.of} does not fit migration ${hello.migrationId}, which has ${this.of} channels (${this.joined()} joined)`,
      );
    }
    const worker = new Worker(new URL('./channel-writer-worker.js', import.meta.url), { workerData: this.workerData, execArgv: [] });
    const channel = new TargetChannel(hello.channel, transport, worker);
    this.channels[hello.channel] = channel;
    worker.on('message', (reply: TargetWorkerReply) => this.onReply(channel, reply));
    worker.on('error', (err) => this.fail(new MigrationError('ERR_DOMAIN_FAILED', `page channel ${channel.index}'s worker failed: ${err.message}`)));
    await transport.send(encodeRecord({ type: 'channel-ready', channel: hello.channel }));
    await this.pump(channel);
  }

  /**
   * Resolves with the total of batches written once each channel `i` has written `counts[i]`
   * (a round's end), or rejects at the first failure.
   *
   * @throws UnexpectedRecordError if the counts do not match the channels, or a channel wrote more.
   */
  async waitFor(counts: readonly number[]): Promise<number> {
    if (counts.length !== this.of || this.joined() !== this.of) {
      throw new UnexpectedRecordError(`the round's end names ${counts.length} page channels; ${this.joined()} of ${this.of} have joined`);
    }
    for (;;) {
      if (this.failure) throw this.failure;
      let done = true;
      for (let i = 0; i < counts.length; i++) {
        const c = this.channels[i]!;
        if (c.written > counts[i]!) throw new UnexpectedRecordError(`page channel ${i} wrote ${c.written} batches; the round's end says ${counts[i]}`);
        if (c.written < counts[i]!) {
          done = false;
          if (c.ended) throw new ConnectionClosedError(`page channel ${i} ended after ${c.written} of the ${counts[i]} batches the source sent on it`);
        }
      }
      if (done) return this.batches;
      await new Promise<void>((resolve) => this.waiters.add(resolve));
    }
  }

  /** Nothing more may come on the channels (`complete` is in): a later batch fails the migration. */
  seal(): void {
    this.sealed = true;
  }

  /** Stops every worker and ends every connection (cleanly once the migration no longer needs them). Idempotent. */
  close(clean: boolean): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.channels) {
      if (!c) continue;
      void c.worker.terminate();
      if (clean) void c.transport.close();
      else c.transport.destroy();
    }
    this.wake();
  }

  private joined(): number {
    return this.channels.filter((c) => c !== undefined).length;
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiting) resolve();
  }

  private fail(error: MigrationError): void {
    if (this.failure || this.closed) return;
    this.failure = error;
    this.rejectFailed(error);
    this.wake();
  }

  /** Reads the channel's frames into its worker, a few at a time, until the source closes it. */
  private async pump(channel: TargetChannel): Promise<void> {
    try {
      for (;;) {
        while (channel.inWorker >= CHANNEL_FRAMES_IN_WORKER && !this.closed) await new Promise<void>((resolve) => this.waiters.add(resolve));
        if (this.closed) return;
        const frame = await channel.transport.receive();
        if (frame === undefined || this.closed) break;
        if (this.sealed) throw new UnexpectedRecordError(`page channel ${channel.index} carried a record after "complete"`);
        channel.inWorker++;
        // The worker gets a copy of just the frame, whose memory it then owns. The transport's
        // memory is never transferred: it may hold other frames the WebSocket reader has yet to
        // hand out. Not `frame.slice()`: on a Buffer, which the transport gives, that is a view.
        const own = new Uint8Array(frame);
        channel.worker.postMessage({ frame: own }, [own.buffer as ArrayBuffer]);
      }
    } catch (err) {
      this.fail(err instanceof MigrationError ? err : new ConnectionClosedError(`page channel ${channel.index} failed: ${String(err)}`));
    } finally {
      channel.ended = true;
      this.wake();
    }
  }

  private onReply(channel: TargetChannel, reply: TargetWorkerReply): void {
    if (this.closed) return;
    channel.inWorker--;
    switch (reply.kind) {
      case 'written': {
        const { dataPfns, hashes, zeroPfns } = reply;
        for (let i = 0; i < dataPfns.length; i++) this.digest.set(dataPfns[i]!, hashes[i]!);
        for (let i = 0; i < zeroPfns.length; i++) this.digest.zero(zeroPfns[i]!);
        this.pages += dataPfns.length + zeroPfns.length;
        channel.written++;
        break;
      }
      case 'ignored':
        break;
      case 'abort':
        this.fail(new PeerAbortedError(reply.code, reply.message));
        break;
      case 'error':
        this.fail(new MigrationError(reply.code as MigrationErrorCode, `page channel ${channel.index}: ${reply.message}`));
        break;
    }
    this.wake();
  }
}
