/**
 * A cap on how fast the source sends: a token bucket that holds at most one averaging window's
 * worth of bytes, so the engine never sends faster than the cap averaged over that window. It
 * also lets a benchmark on loopback behave like a 1 or 10 Gbit/s link.
 */

import { setTimeout as delay } from 'node:timers/promises';
import { InvalidArgumentError } from '../errors.js';

/** The window over which the cap holds, in milliseconds. */
export const BANDWIDTH_CAP_WINDOW_MS = 100;

/** A sending-rate cap shared by everything one migration sends. */
export class BandwidthCap {
  private tokens: number;
  private last: number;
  private readonly burst: number;

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
    this.burst = (bytesPerSec * BANDWIDTH_CAP_WINDOW_MS) / 1000;
    this.tokens = this.burst;
    this.last = now();
  }

  /**
   * Resolves when `bytes` may go out. A frame larger than the window's allowance goes into debt
   * and the next ones wait it off, so the average still holds.
   */
  async take(bytes: number): Promise<void> {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.bytesPerSec) / 1000);
    this.last = now;
    this.tokens -= bytes;
    if (this.tokens < 0) await this.sleep((-this.tokens * 1000) / this.bytesPerSec);
  }
}
