/**
 * A transport that holds its peer to a pace: a `receive()` that waits longer than the deadline
 * for the next frame fails with ERR_TIMEOUT. The WebSocket idle timeout counts pings and pongs as
 * signs of life, which `ws` answers by itself; this counts only frames, so a peer that opened a
 * migration and then sends nothing while still answering pings is found out too.
 */

import { TimeoutError } from '../errors.js';
import { checkTimeoutMs, isDeadline } from '../util/deadline.js';
import type { FrameLanding, Transport } from './transport.js';

/** A {@link Transport} whose receives time out; everything else passes through unchanged. */
export class DeadlineTransport implements Transport {
  readonly #inner: Transport;
  readonly #timeoutMs: number;
  readonly #waitingFor: () => string;
  /** Set once a deadline passed; every later receive fails with it. */
  #timedOut: TimeoutError | undefined;
  /** The inner transport's, where it has one: a consumer then knows whether frames can land. */
  readonly landFramesIn?: (landing: FrameLanding | undefined) => void;

  /**
   * @param inner The transport to read from. When a deadline passes it is left open, so that the
   *   caller can still send the peer an abort before closing it; only reading is over.
   * @param timeoutMs Longest wait for one frame, in milliseconds. Infinity, or anything beyond
   *   2^31-1 ms (about 24.8 days), is no deadline.
   * @param waitingFor Says what was awaited, for the error message (e.g. "the next record of the migration").
   */
  constructor(inner: Transport, timeoutMs: number, waitingFor: () => string) {
    this.#inner = inner;
    this.#timeoutMs = checkTimeoutMs('a receive deadline', timeoutMs);
    this.#waitingFor = waitingFor;
    if (inner.landFramesIn) this.landFramesIn = (landing) => inner.landFramesIn!(landing);
  }

  get bufferedBytes(): number {
    return this.#inner.bufferedBytes;
  }

  get closed(): boolean {
    return this.#inner.closed;
  }

  get bytesSent(): number {
    return this.#inner.bytesSent;
  }

  get bytesReceived(): number {
    return this.#inner.bytesReceived;
  }

  send(frame: Uint8Array): Promise<void> {
    return this.#inner.send(frame);
  }

  ping(): Promise<number | undefined> {
    return this.#inner.ping();
  }

  /**
   * The next frame, as the inner transport's `receive()`; rejects with ERR_TIMEOUT if none came
   * within the deadline. Reading is then over for good, and later receives reject with the same
   * error: the abandoned receive still waits for the next frame, so the stream cannot go on in order.
   */
  receive(): Promise<Uint8Array | undefined> {
    if (this.#timedOut) return Promise.reject(this.#timedOut);
    const pending = this.#inner.receive();
    // A timer given more than it holds would fire after 1 ms.
    if (!isDeadline(this.#timeoutMs)) return pending;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // Swallow what the abandoned receive eventually yields; its outcome no longer matters.
        pending.catch(() => undefined);
        this.#timedOut = new TimeoutError(
          `nothing from the peer for ${this.#timeoutMs} ms while waiting for ${this.#waitingFor()}; ` +
            'the peer stalled, or raise the deadline if the link is that slow',
        );
        reject(this.#timedOut);
      }, this.#timeoutMs);
      pending.then(
        (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  destroy(reason?: Error): void {
    this.#inner.destroy(reason);
  }
}
