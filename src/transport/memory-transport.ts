/**
 * Two connected transports in one process, for unit tests of the engine. They follow the
 * WebSocket transport's contract without a socket in between: frames arrive in order, each side's
 * incoming queue is bounded, and a send resolves only once its frame is in the peer's queue, so a
 * consumer that stops reading stalls the sender just as TCP flow control would (minus the kernel
 * buffers, which makes stalls show up sooner and deterministically).
 */

import { ConnectionClosedError, InvalidArgumentError } from '../errors.js';
import {
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_MAX_QUEUED_BYTES,
  DEFAULT_MAX_QUEUED_FRAMES,
  type Transport,
} from './transport.js';
import { FrameQueue } from './frame-queue.js';

/** Options of {@link createMemoryTransportPair}; both ends get the same. */
export interface MemoryTransportOptions {
  /**
   * Most frames an end's incoming queue holds before the peer's sends wait.
   * @default DEFAULT_MAX_QUEUED_FRAMES (64)
   */
  maxQueuedFrames?: number;
  /**
   * Most bytes an end's incoming queue holds before the peer's sends wait. One frame may take the
   * queue past it, as on a real connection.
   * @default DEFAULT_MAX_QUEUED_BYTES (32 MiB)
   */
  maxQueuedBytes?: number;
  /**
   * How long `close()` waits for the peer to take the frames still waiting for room, in
   * milliseconds; then the connection is destroyed.
   * @default DEFAULT_CLOSE_TIMEOUT_MS (10 s)
   */
  closeTimeoutMs?: number;
}

interface Outgoing {
  frame: Uint8Array;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Joins two ends; set by the class so that no one else can re-link an end. */
let joinEnds: (a: MemoryTransport, b: MemoryTransport) => void;

/** One end of a pair made by {@link createMemoryTransportPair}. */
export class MemoryTransport implements Transport {
  #peer!: MemoryTransport;
  readonly #closeTimeoutMs: number;

  readonly #incoming: FrameQueue;
  /** Sent frames waiting for room in the peer's queue, oldest first. */
  #outbox: Outgoing[] = [];
  #bufferedBytes = 0;
  #bytesSent = 0;
  #bytesReceived = 0;

  /** `close()` was called here. */
  #closeCalled = false;
  /** The peer's close arrived, behind every frame it sent before: nothing more will come. */
  #peerClosing = false;
  /** Frames that arrived after `close()` with the queue full, and were dropped. */
  #discardedFrames = 0;
  #closePromise: Promise<void> | undefined;
  readonly #closeWaiters: Array<() => void> = [];
  #closeTimer: NodeJS.Timeout | undefined;

  /** Use {@link createMemoryTransportPair}. */
  constructor(options: Required<MemoryTransportOptions>) {
    this.#closeTimeoutMs = options.closeTimeoutMs;
    this.#incoming = new FrameQueue(options.maxQueuedFrames, options.maxQueuedBytes);
  }

  static {
    joinEnds = (a, b) => {
      a.#peer = b;
      b.#peer = a;
    };
  }

  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  get bytesSent(): number {
    return this.#bytesSent;
  }

  get bytesReceived(): number {
    return this.#bytesReceived;
  }

  get closed(): boolean {
    return this.#ended || this.#closeCalled || this.#peerClosing;
  }

  /** The pair is in one process: a round trip costs nothing measurable. */
  async ping(): Promise<number | undefined> {
    return this.closed ? undefined : 0;
  }

  /** Frames received and not yet taken by `receive()`. */
  get queuedFrames(): number {
    return this.#incoming.frames;
  }

  /** Bytes of the frames received and not yet taken by `receive()`. */
  get queuedBytes(): number {
    return this.#incoming.bytes;
  }

  send(frame: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(this.#unusableError());
    // A copy, because the caller may reuse its buffer as soon as the send resolves.
    // Uint8Array's slice copies; Buffer's (a subclass) would share the sender's memory.
    const copy = Uint8Array.prototype.slice.call(frame);
    if (this.#outbox.length === 0 && this.#peer.#acceptsFrame()) {
      this.#bytesSent += copy.byteLength;
      this.#peer.#deliver(copy);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.#outbox.push({ frame: copy, resolve, reject });
      this.#bufferedBytes += copy.byteLength;
    });
  }

  receive(): Promise<Uint8Array | undefined> {
    const next = this.#incoming.take();
    // Room was made: frames the peer could not deliver yet may come now.
    this.#peer.#flush();
    return next;
  }

  /**
   * Stops sending, and resolves once both ends' frames in flight are in the other's queue (they
   * stay readable), or once `closeTimeoutMs` passed and the connection was destroyed. As on a
   * WebSocket, frames that reach this end after `close()` when its queue is full are dropped, and
   * a `receive()` that reaches the end then rejects. Never rejects. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    this.#closePromise = new Promise<void>((resolve) => {
      if (this.#ended) resolve();
      else this.#closeWaiters.push(resolve);
    });
    if (!this.#ended) {
      this.#closeCalled = true;
      this.#closeTimer = setTimeout(() => {
        this.#fail(
          new ConnectionClosedError(`the peer did not take the remaining frames within ${this.#closeTimeoutMs} ms of close()`),
        );
      }, this.#closeTimeoutMs);
      this.#flush();
    }
    return this.#closePromise;
  }

  destroy(reason?: Error): void {
    this.#fail(reason ?? new ConnectionClosedError('the connection was destroyed by this side'));
  }

  /** Ends the connection for a reason found on this end; its queued frames are dropped. */
  #fail(error: Error): void {
    this.#incoming.clear();
    this.#end(error);
    this.#peer.#end(new ConnectionClosedError('the peer destroyed the connection'));
  }

  #acceptsFrame(): boolean {
    return this.#incoming.hasWaiter || this.#closeCalled || !this.#incoming.full;
  }

  #deliver(frame: Uint8Array): void {
    this.#bytesReceived += frame.byteLength;
    if (!this.#incoming.hasWaiter && this.#closeCalled && this.#incoming.full) {
      this.#discardedFrames++;
    } else {
      this.#incoming.push(frame);
    }
  }

  /** Moves waiting frames into the peer's queue while it has room, then advances the close. */
  #flush(): void {
    if (this.#ended) return;
    const peer = this.#peer;
    while (this.#outbox.length > 0 && peer.#acceptsFrame()) {
      const out = this.#outbox.shift()!;
      this.#bufferedBytes -= out.frame.byteLength;
      this.#bytesSent += out.frame.byteLength;
      peer.#deliver(out.frame);
      out.resolve();
    }
    if (this.#outbox.length > 0) return;
    // This end's close (or its answer to the peer's) travels behind its last frame.
    if ((this.#closeCalled || this.#peerClosing) && !peer.#peerClosing) {
      peer.#peerClosing = true;
      peer.#flush();
    }
    if (this.#peerClosing && peer.#peerClosing && !this.#ended) {
      this.#end(this.#cleanEndError());
      peer.#end(peer.#cleanEndError());
    }
  }

  #cleanEndError(): Error | undefined {
    if (this.#discardedFrames === 0) return undefined;
    return new ConnectionClosedError(
      `this side closed while the peer was still sending; ${this.#discardedFrames} frames that did not fit the receive queue were dropped`,
    );
  }

  #end(error: Error | undefined): void {
    if (this.#ended) return;
    this.#incoming.end(error);
    clearTimeout(this.#closeTimer);
    const sendError = error ?? new ConnectionClosedError('the connection closed before the frame was delivered');
    for (const out of this.#outbox.splice(0)) out.reject(sendError);
    this.#bufferedBytes = 0;
    for (const resolve of this.#closeWaiters.splice(0)) resolve();
  }

  get #ended(): boolean {
    return this.#incoming.ended;
  }

  get #endError(): Error | undefined {
    return this.#incoming.endError;
  }

  #unusableError(): Error {
    if (this.#endError) return this.#endError;
    return new ConnectionClosedError(this.#closeCalled ? 'the transport is closing' : 'the peer closed the connection');
  }
}

/**
 * Two transports joined back to back, for tests. Each frame is copied on `send`. Differences
 * from a WebSocket: nothing is buffered between the two queues, and `destroy(reason)` reaches the
 * peer as ERR_CONNECTION_CLOSED without the reason, as a dropped connection would.
 */
export function createMemoryTransportPair(options: MemoryTransportOptions = {}): [MemoryTransport, MemoryTransport] {
  const resolved: Required<MemoryTransportOptions> = {
    maxQueuedFrames: options.maxQueuedFrames ?? DEFAULT_MAX_QUEUED_FRAMES,
    maxQueuedBytes: options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
    closeTimeoutMs: options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS,
  };
  for (const name of ['maxQueuedFrames', 'maxQueuedBytes'] as const) {
    const value = resolved[name];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
    }
  }
  if (!Number.isFinite(resolved.closeTimeoutMs) || resolved.closeTimeoutMs <= 0) {
    throw new InvalidArgumentError(`closeTimeoutMs must be a positive number, got ${resolved.closeTimeoutMs}`);
  }
  const a = new MemoryTransport(resolved);
  const b = new MemoryTransport(resolved);
  joinEnds(a, b);
  return [a, b];
}
