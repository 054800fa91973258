/**
 * Where `ws` assembles an incoming frame's payload, redirected into buffers a consumer supplies
 * (see `FrameLanding` in transport.ts). ws 8's Receiver keeps a payload's socket reads (64 KiB
 * each) in `_buffers` and, once all have come, copies them into one new buffer in `consume(n)`.
 * That method is wrapped here: a payload the consumer claims is copied into its buffer instead,
 * the same one copy, with nothing allocated and nothing left for the collector. These are ws's
 * internals, not its API; where they are not as expected nothing is wrapped, and every payload is
 * assembled by ws as before (test ws-transport-lands-large-frames-in-the-consumers-buffers then
 * fails, so an upgrade of ws that moves them is noticed).
 */

import type { WebSocket } from 'ws';
import { asBuffer } from '../util/bytes.js';

/** The part of ws 8's Receiver (lib/receiver.js) that holds and assembles incoming bytes. */
interface ReceiverInternals {
  _buffers: Buffer[];
  _bufferedBytes: number;
  consume(n: number): Buffer;
}

/**
 * Makes `ws` assemble each payload of at least `minBytes()` bytes that spans more than one socket
 * read in the buffer `claim` returns for it (exactly as long), or as usual where it returns none.
 * Returns whether the hook is in place.
 */
export function landPayloads(ws: WebSocket, minBytes: () => number, claim: (bytes: number) => Uint8Array | undefined): boolean {
  const receiver = (ws as unknown as { _receiver?: Partial<ReceiverInternals> | null })._receiver;
  if (!receiver || typeof receiver.consume !== 'function' || !Array.isArray(receiver._buffers) || typeof receiver._bufferedBytes !== 'number') {
    return false;
  }
  const assemble = receiver.consume;
  receiver.consume = function consume(this: ReceiverInternals, n: number): Buffer {
    const first = this._buffers[0];
    // Headers, and payloads within one read (which ws hands out as views, without a copy).
    if (first === undefined || n <= first.length || n < minBytes()) return assemble.call(this, n);
    const landing = claim(n);
    if (landing === undefined || landing.length !== n) return assemble.call(this, n);
    this._bufferedBytes -= n;
    let at = 0;
    while (at < n) {
      const read = this._buffers[0]!;
      const take = Math.min(read.length, n - at);
      if (take === read.length) {
        landing.set(read, at);
        this._buffers.shift();
      } else {
        landing.set(read.subarray(0, take), at);
        this._buffers[0] = read.subarray(take);
      }
      at += take;
    }
    return asBuffer(landing);
  };
  return true;
}
