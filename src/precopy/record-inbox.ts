/**
 * Reads records off a transport in the background so that a peer's abort is noticed while the
 * sender is busy streaming pages, and hands them out one at a time with a deadline.
 */

import { asMigrationError, ConnectionClosedError, LimitExceededError, MigrationError, PeerAbortedError, TimeoutError } from '../errors.js';
import { decodeFrame } from '../protocol/codec.js';
import type { ProtocolLimits } from '../protocol/limits.js';
import type { MigrationRecord } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { MAX_TIMER_MS } from '../util/deadline.js';

/**
 * Records read but not yet taken, at most. The source takes each control record as it comes;
 * a peer that sends many more than asked is broken or hostile.
 */
export const MAX_UNREAD_RECORDS = 64;

/** A background reader of one transport's records. */
export class RecordInbox {
  private readonly queue: MigrationRecord[] = [];
  private waiter: (() => void) | undefined;
  private failureValue: MigrationError | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly limits?: Partial<ProtocolLimits>,
  ) {
    void this.pump();
  }

  /** Why no more records will come, once that is known: a peer abort, a cut link, a bad frame. */
  get failure(): MigrationError | undefined {
    return this.failureValue;
  }

  /** Throws the failure, if there is one. Cheap: meant for hot loops. */
  throwIfFailed(): void {
    if (this.failureValue) throw this.failureValue;
  }

  /**
   * The next record, waiting at most `timeoutMs`. Rejects with the inbox's failure (a peer abort
   * becomes ERR_PEER_ABORTED), ERR_TIMEOUT naming `waitingFor`, or what `stop` returns once it
   * returns an error (it is asked again at each {@link interrupt}).
   */
  async next(timeoutMs: number, waitingFor: string, stop?: () => MigrationError | undefined): Promise<MigrationRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const record = this.queue.shift();
      if (record) return record;
      this.throwIfFailed();
      const stopped = stop?.();
      if (stopped) throw stopped;
      const left = deadline - Date.now();
      if (left <= 0) throw new TimeoutError(`no ${waitingFor} from the peer within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        // A deadline past what a timer holds (Infinity included) is checked again on waking.
        const timer = setTimeout(resolve, Math.min(left, MAX_TIMER_MS));
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Wakes a waiting `next` so that it asks its `stop` again (e.g. after a cancel). */
  interrupt(): void {
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const frame = await this.transport.receive();
        if (frame === undefined) {
          throw new ConnectionClosedError('the peer closed the connection');
        }
        const record = decodeFrame(frame, this.limits);
        if (record.type === 'ignored') continue;
        if (record.type === 'abort') {
          throw new PeerAbortedError(record.code, record.message);
        }
        if (this.queue.length >= MAX_UNREAD_RECORDS) {
          throw new LimitExceededError(`the peer sent more than ${MAX_UNREAD_RECORDS} records that nobody asked for`);
        }
        this.queue.push(record);
        this.wake();
      }
    } catch (err) {
      this.failureValue = asMigrationError(err, 'ERR_CONNECTION_CLOSED');
      this.wake();
    }
  }
}
