/**
 * A cap on how fast the source sends, paced as a link of that speed would carry it: each frame
 * takes its time on the link (its bytes at the cap), and the next one starts when it is done.
 * Time the link stood idle (while the source waited for an acknowledgement) is not saved up for
 * a burst afterwards, so over any 100 ms the engine hands over at most the cap's worth, plus
 * {@link BANDWIDTH_CAP_SLACK_MS} of it and one frame. It also lets a benchmark on loopback behave
 * like a 1 or 10 Gbit/s link.
 */

import { setTimeout as delay } from 'node:timers/promises';
import { InvalidArgumentError } from '../errors.js';

/** The window over which the cap holds, in milliseconds. */
export const BANDWIDTH_CAP_WINDOW_MS = 100;

/**
 * How far ahead of the link's schedule a frame may go, in milliseconds. A timer fires a little
 * late (up to a millisecond here); without slack each late wake-up would be time the link lost,
 * and a 10 Gbit/s cap, whose 1 MiB frames take under a millisecond each, would run well below it.
 */
export const BANDWIDTH_CAP_SLACK_MS = 2;

/**
 * What a page sender asks before each frame goes to the link: resolves when the frame may go.
 * A {@link BandwidthCap} is one; so is a migration's seat at its host's switchover gate.
 */
export interface SendPacer {
  take(bytes: number): Promise<void>;
}

/** Paces frames through each of `pacers` in turn; undefined with none. */
export function pacerOf(...pacers: Array<SendPacer | undefined>): SendPacer | undefined {
  const all = pacers.filter((p): p is SendPacer => p !== undefined);
  if (all.length <= 1) return all[0];
  return {
    async take(bytes) {
      for (const p of all) await p.take(bytes);
    },
  };
}

/** A sending-rate cap shared by everything one migration sends. */
export class BandwidthCap implements SendPacer {
  /** When the link will have carried everything handed to it so far. */
  private freeAt: number;

  /**
   * @param bytesPerSec the cap, in bytes per second (> 0)
   * @param now a clock in milliseconds; tests pass a fake one
   * @param sleep waits the given milliseconds; tests pass a fake one
   */
  constructor(
    readonly bytesPerSec: number,
    private readonly now: () => number = () => performance.now(),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => delay(ms),
  ) {
    if (!(Number.isFinite(bytesPerSec) && bytesPerSec > 0)) {
      throw new InvalidArgumentError(`a bandwidth cap must be a positive number of bytes per second, got ${String(bytesPerSec)}`);
    }
    this.freeAt = now();
  }

  /**
   * Resolves when a frame of `bytes` may go out: once the link has (nearly) carried the frames
   * before it. A frame larger than the window's allowance simply keeps the link busy for longer,
   * and the next one waits for it.
   */
  async take(bytes: number): Promise<void> {
    const now = this.now();
    // An idle link starts the frame now; a busy one when it is done with the last.
    const start = Math.max(now, this.freeAt);
    this.freeAt = start + (bytes * 1000) / this.bytesPerSec;
    const wait = start - now - BANDWIDTH_CAP_SLACK_MS;
    if (wait > 0) await this.sleep(wait);
  }
}
