/**
 * The pre-copy rounds of a source migration: the loop that sends rounds while the guest runs until
 * the policy (or a deadline) switches over, and one round from its first batch to its
 * acknowledgement and its line in the report. `migration.ts` runs the rest of the sequence (the
 * handshake, stop-and-copy, the switchover) and sends the stop-and-copy round through here too.
 */

import { DirtyRateMeter } from '../dirtylog/dirty-rate.js';
import { mergeSorted } from '../dirtylog/page-lists.js';
import { NoProgressError, PolicyAbortError } from '../errors.js';
import { encodeRecord } from '../protocol/codec.js';
import { roundTo } from '../util/stats.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from './migrate-options.js';
import { ForcedSwitchover, MigrationState } from './migration-state.js';
import type { SenderCounters } from './page-sender.js';
import { decisionOf, type RoundSample } from './policy.js';
import { DEFAULT_TIMEOUT_ACTION } from './progress-watchdog.js';

/** Pages sent between two looks at cancellation, peer aborts and deadlines. */
const SLICE_PAGES = 4096;

/** What a round's figures are measured from: the counters and clocks at its start. */
interface RoundStart {
  counters: SenderCounters;
  /** `performance.now()` at the start. */
  at: number;
  /** Time held at the switchover gate so far. */
  heldMs: number;
  /** The guest's vCPU time so far, if the backend tells. */
  vcpuMs: number | undefined;
}

/** How a round went once every page was handed over, for its line in the report. */
interface RoundEnd {
  handedOverAt: number;
  ackMs: number;
  vcpuMs: number | undefined;
  gcMs: number;
}

/** The rounds of a source migration; {@link SourceMigration} runs the sequence around them. */
export abstract class PrecopyRounds extends MigrationState {
  /**
   * The pre-copy rounds: round 0 sends all memory, each later one what the guest dirtied, until
   * the policy switches over (or a deadline forces it). Returns the pages still dirty and the
   * pause the model expected for them.
   */
  protected async precopy(): Promise<{ pending: Uint32Array; predictedMs: number }> {
    // Round 0 sends all memory; the dirty log, enabled first, catches what changes meanwhile.
    this.setPhase('precopy');
    this.custody.holdingGuest = true;
    await this.dirty.start();
    this.dirtyMeter = new DirtyRateMeter({ startMs: performance.now() });
    const pageCount = this.domain.pageCount;
    let pending: Uint32Array = new Uint32Array(pageCount);
    for (let pfn = 0; pfn < pageCount; pfn++) pending[pfn] = pfn;
    this.memory.set('pageLists', pending.byteLength);
    let predictedMs = Number.POSITIVE_INFINITY;
    for (;;) {
      const { unsent } = await this.sendRound(pending, false);
      const dirtied = await this.readDirtyLog();
      // The round's list, what the log gave and their merge are all held at once here.
      this.memory.set('pageLists', pending.byteLength + dirtied.byteLength + (unsent.length + dirtied.length) * Uint32Array.BYTES_PER_ELEMENT);
      pending = mergeSorted(unsent, dirtied);
      this.memory.set('pageLists', pending.byteLength);
      if (this.round === 0) this.startDeltas(pending.length);
      if (this.options.maxBandwidthBytesPerSec !== undefined) this.model.wireShare = (await this.sender.wireShare(pending)) ?? this.model.wireShare;
      this.round++;
      const stats = this.statsFor(pending.length);
      if (this.forced) {
        await this.forceSwitchover(this.forced);
        predictedMs = stats.expectedDowntimeMs;
        break;
      }
      const last = this.rounds[this.rounds.length - 1]!;
      last.dirtyRateBytesPerSec = roundTo(stats.dirtyRateBytesPerSec, 3);
      const percent = this.throttle.afterRound({
        sentBytes: last.bytesRaw,
        dirtyBytes: stats.dirtyBytes,
        expectedDowntimeMs: stats.expectedDowntimeMs,
        budgetMs: stats.downtimeBudgetMs,
      });
      this.domain.setThrottle(percent / 100);
      const { decision, reason, noPauseFits } = decisionOf(this.policy(stats));
      if (decision === 'abort' && noPauseFits !== undefined) {
        // No pause can fit: ended as the stall deadline would end it, without waiting for it.
        const error = new NoProgressError(noPauseFits);
        if ((this.options.timeoutAction ?? DEFAULT_TIMEOUT_ACTION) === 'abort') throw error;
        this.forced = new ForcedSwitchover(error);
        await this.forceSwitchover(this.forced);
        predictedMs = stats.expectedDowntimeMs;
        break;
      }
      if (decision === 'abort') {
        throw new PolicyAbortError(`the pre-copy policy gave up in round ${this.round} with ${pending.length} dirty pages`);
      }
      if (decision === 'stop-and-copy') {
        if (this.seat && !this.seat.tryHold()) {
          // Another migration of this host is paused: two pauses must not share the link. Once
          // it is over, one more round sends what the guest dirtied meanwhile, and the policy
          // decides again on the figures then.
          await this.seat.whileOtherPaused();
          continue;
        }
        predictedMs = stats.expectedDowntimeMs;
        this.report.switchoverReason = reason ?? 'policy';
        break;
      }
    }
    return { pending, predictedMs };
  }

  /**
   * Records a switchover forced by a deadline, once this migration holds the switchover gate: past
   * a deadline the pause cannot be put off, but it still waits for another migration's to end.
   */
  private async forceSwitchover(forced: ForcedSwitchover): Promise<void> {
    while (this.seat && !this.seat.tryHold()) await this.seat.whileOtherPaused();
    this.report.forcedSwitchover = forced.error.toJSON();
    this.report.switchoverReason = 'forced-by-deadline';
  }

  /**
   * Sends one round and waits for its acknowledgement. Returns the pages it did not send
   * because a deadline forced the switchover (empty otherwise), and how long it waited for runs
   * of pages still being found (stop-and-copy only: `pfns` may then come in runs, and `found` is
   * called once the last one came).
   */
  protected async sendRound(
    pfns: Uint32Array | AsyncIterable<Uint32Array>,
    stopAndCopy: boolean,
    found?: () => void,
  ): Promise<{ unsent: Uint32Array; scanWaitMs: number }> {
    this.throwIfCancelled();
    const start: RoundStart = {
      counters: { ...this.sender.counters },
      heldMs: this.seat?.heldMs ?? 0,
      vcpuMs: this.domain.vcpuTimeMs?.(),
      at: performance.now(),
    };
    const whole = pfns instanceof Uint32Array ? pfns : undefined;
    // Runs still being found: as many pages as the dirty rate suggests, for progress and channels.
    const expectedPages = whole ? whole.length : this.dirty.peek();
    this.roundPages = expectedPages;
    this.roundStartPages = start.counters.pages;
    this.sender.startRound?.(expectedPages);
    this.emitProgress();
    let unsent: Uint32Array = new Uint32Array(0);
    let scanWaitMs = 0;
    if (whole) unsent = await this.sendList(whole, stopAndCopy);
    else scanWaitMs = await this.sendRuns(pfns as AsyncIterable<Uint32Array>, found);
    const pauseSoon = await this.endRound(stopAndCopy, start);
    // Before the pause, wait until the target has written the whole round: the round's duration
    // then measures what the target absorbs, and nothing queued in buffers stretches the pause.
    const handedOverAt = performance.now();
    let ackMs = 0;
    this.targetGcMs = 0;
    if (!stopAndCopy) {
      await this.expectRoundAck(this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
      ackMs = performance.now() - handedOverAt;
      this.model.observeRoundTrip(ackMs);
    }
    const durationMs = performance.now() - start.at;
    const vcpuMs = start.vcpuMs === undefined ? undefined : (this.domain.vcpuTimeMs?.() ?? start.vcpuMs) - start.vcpuMs;
    // The target collected before it acknowledged; this side collects now, while the guest still
    // runs, and outside the round's duration: the dirty log is read after it.
    let gcMs = 0;
    if (pauseSoon && this.collectGarbage) {
      const gcStarted = performance.now();
      this.collectGarbage();
      gcMs = performance.now() - gcStarted;
    }
    this.noteBuffers();
    this.recordRound(stopAndCopy, start, durationMs, { handedOverAt, ackMs, vcpuMs, gcMs });
    return { unsent, scanWaitMs };
  }

  /**
   * Sends a round's pages given as one sorted list, slice by slice. Before stop-and-copy a deadline
   * may end the round early: returns the pages left unsent then (empty otherwise).
   */
  private async sendList(pfns: Uint32Array, stopAndCopy: boolean): Promise<Uint32Array> {
    // A round with nothing to send still answers to the deadlines: a policy that keeps asking for
    // empty rounds must not outlive them.
    if (!stopAndCopy && pfns.length === 0) this.checkDeadlines();
    for (let first = 0; first < pfns.length; first += SLICE_PAGES) {
      this.inbox?.throwIfFailed();
      this.throwIfCancelled();
      if (!stopAndCopy && this.checkDeadlines()) return pfns.subarray(first);
      await this.sender.sendPages(this.round, pfns.subarray(first, Math.min(pfns.length, first + SLICE_PAGES)));
    }
    return new Uint32Array(0);
  }

  /**
   * Sends the stop-and-copy round's pages as a scan finds them, run by run, and calls `found` once
   * the last run came. Returns the time spent waiting for runs, in milliseconds.
   */
  private async sendRuns(runs: AsyncIterable<Uint32Array>, found: (() => void) | undefined): Promise<number> {
    let scanWaitMs = 0;
    let waitFrom = performance.now();
    for await (const run of runs) {
      scanWaitMs += performance.now() - waitFrom;
      for (let first = 0; first < run.length; first += SLICE_PAGES) {
        this.inbox?.throwIfFailed();
        this.throwIfCancelled();
        await this.sender.sendPages(this.round, run.subarray(first, Math.min(run.length, first + SLICE_PAGES)));
      }
      waitFrom = performance.now();
    }
    scanWaitMs += performance.now() - waitFrom;
    found?.();
    return scanWaitMs;
  }

  /**
   * Ends the round with "round-end" (and "pause-soon" before it, when the pause likely follows).
   * Returns whether "pause-soon" went out.
   */
  private async endRound(stopAndCopy: boolean, start: RoundStart): Promise<boolean> {
    // Counted once every page is handed over: page channels count a batch when their worker framed it.
    const sentPages = (): number => this.sender.counters.pages - start.counters.pages;
    if (stopAndCopy) {
      // Paused: queue the round's end behind the batches at once; the caller waits for the writes.
      await this.sender.handedOver();
      const pages = sentPages();
      this.finalRoundEnd = this.transport.send(encodeRecord({ type: 'round-end', round: this.round, pages, ...this.channelCounts() }));
      this.finalRoundEnd.catch(() => undefined);
      return false;
    }
    await this.sender.flush();
    // If the pause is likely to follow this round, say so: the target then gets ready (collects
    // its garbage) before it acknowledges, and this side does the same once it has the ack.
    const c = this.sender.counters;
    const work = this.model.workOf(c.bytesRaw - start.counters.bytesRaw, c.zeroPages - start.counters.zeroPages);
    const pauseSoon = this.pauseLikely({ bytes: work, ms: performance.now() - start.at });
    if (pauseSoon) await this.transport.send(encodeRecord({ type: 'pause-soon' }));
    await this.transport.send(encodeRecord({ type: 'round-end', round: this.round, pages: sentPages(), ...this.channelCounts() }));
    return pauseSoon;
  }

  /** Adds the round just ended to the report. */
  private recordRound(stopAndCopy: boolean, start: RoundStart, durationMs: number, end: RoundEnd): void {
    const c = this.sender.counters;
    const bytesRaw = c.bytesRaw - start.counters.bytesRaw;
    this.rounds.push({
      round: this.round,
      stopAndCopy,
      pages: c.pages - start.counters.pages,
      zeroPages: c.zeroPages - start.counters.zeroPages,
      bytesRaw,
      bytesWire: c.bytesWire - start.counters.bytesWire,
      durationMs: roundTo(durationMs, 3),
      dirtyRateBytesPerSec: 0,
      guestCpuCores: end.vcpuMs !== undefined && durationMs > 0 ? roundTo(end.vcpuMs / durationMs, 3) : undefined,
      bandwidthBytesPerSec: durationMs > 0 ? roundTo((bytesRaw * 1000) / durationMs, 3) : 0,
      sendMs: roundTo(end.handedOverAt - start.at, 3),
      ...(this.seat ? { heldMs: roundTo(this.seat.heldMs - start.heldMs, 3) } : {}),
      ackMs: roundTo(end.ackMs, 3),
      gcMs: roundTo(end.gcMs, 3),
      targetGcMs: roundTo(this.targetGcMs, 3),
      throttlePercent: this.throttle.percent,
    });
  }

  /**
   * Whether the decision after the round being sent will likely be the switchover: a deadline
   * forces it, or the policy would stop on the figures expected once the round is acknowledged
   * (for a policy without `wouldStop`: the round limit is reached, or the pause for what is dirty
   * now fits the budget). Only for the "pause-soon" hint; a wrong guess costs a garbage
   * collection on each side, during which a busy guest dirties more for the next round (5 MB at
   * 450 MB/s: a floor under the pause, were it every round).
   */
  private pauseLikely(current: RoundSample): boolean {
    if (this.forced) return true;
    const wouldStop = this.policy.wouldStop;
    if (!wouldStop) {
      const maxRounds = this.options.maxRounds;
      if (maxRounds !== undefined && this.round + 1 >= maxRounds) return true;
      return this.model.predict(this.dirty.peek() * this.pageSize, current) <= this.budgetMs();
    }
    // The guest goes on writing until the acknowledgement, which may take as long as the last one.
    const ackMs = this.rounds.at(-1)?.ackMs ?? 0;
    const roundMs = current.ms + ackMs;
    const dirtyPages = Math.round(this.dirty.peek() * (current.ms > 0 ? roundMs / current.ms : 1));
    const dirtyBytes = dirtyPages * this.pageSize;
    const ackedAt = performance.now() + ackMs;
    return wouldStop({
      round: this.round + 1,
      elapsedMs: ackedAt - this.start,
      dirtyPages,
      dirtyBytes,
      // After the first pass alone, the link's pace is that pass's.
      bandwidthBytesPerSec: this.model.bandwidth() || (roundMs > 0 ? (current.bytes * 1000) / roundMs : 0),
      dirtyRateBytesPerSec: roundMs > 0 ? (dirtyBytes * 1000) / roundMs : 0,
      expectedDowntimeMs: this.model.predict(dirtyBytes, current),
      downtimeBudgetMs: this.budgetMs(),
      deadlineInMs: this.watchdog.msLeft(ackedAt),
      throttlePercent: this.throttle.percent,
      bytesSent: this.sender.counters.bytesRaw,
      memoryBytes: this.domain.descriptor.memoryBytes,
    });
  }

  /**
   * Looks at the deadlines. Throws on `abort`; on `force-switchover` records why and returns
   * true, and the caller stops the round and switches over.
   */
  private checkDeadlines(): boolean {
    if (this.forced) return true;
    const now = performance.now();
    this.watchdog.observe(this.remainingBytes(), now);
    const expired = this.watchdog.check(now);
    if (!expired) return false;
    if ((this.options.timeoutAction ?? DEFAULT_TIMEOUT_ACTION) === 'abort') throw expired;
    this.forced = new ForcedSwitchover(expired);
    return true;
  }
}
