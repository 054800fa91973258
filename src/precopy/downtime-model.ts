/**
 * The source's model of the pause: how long a last round of so many bytes would take, at the pace
 * of the recent rounds like it in size, slowed down as much as the latest round was against the
 * rounds like it, plus half a round trip for "go" and the calibration's overhead and factor;
 * under a bandwidth cap, the link's own pace. The engine feeds it rounds and round trips and asks
 * it for estimates; the decisions stay with the policy.
 */

import type { RoundReport } from './report.js';
import { estimateDowntime, paceOfRoundsLike, type RoundSample, type RoundTimeModel } from './policy.js';
import type { SwitchoverCalibration } from './switchover-calibration.js';

/**
 * What a zero page costs the sender compared with a data page: it is copied and compared
 * (about 0.5 µs) but neither hashed, compressed, sent nor written on the target (bench/micro.js
 * puts the rest of a data page's path at several times that).
 */
export const ZERO_PAGE_COST_SHARE = 0.15;


/**
 * Share of the bandwidth cap at which a round counts as held back by it: the link then sets the
 * pace of the next round (see {@link DowntimeModel.linkTime}).
 */
export const LINK_BOUND_SHARE = 0.9;

export class DowntimeModel {
  /** Shortest round trip seen on the link (pings, acknowledgements), in milliseconds. */
  rttMs = Number.POSITIVE_INFINITY;
  /**
   * Under a bandwidth cap, the share of their size the dirty pages would take on the wire, as
   * sampled when the dirty log was last read (see {@link linkTime}).
   */
  wireShare: number | undefined;
  /**
   * What finding the last dirty pages costs in the pause, in ms: the dirty tracker's `takeMs` (a
   * scan of all memory for a scan-tracked guest, 0 for a log). Every prediction includes it, since
   * every pause pays it, however few pages are dirty.
   */
  findDirtyMs: () => number = () => 0;
  /**
   * How much of the shorter of finding the dirty pages and sending them does not overlap the
   * other, as a share of it (the tracker's `takeLagShare`): the pause pays
   * `max(find, round) + share x min(find, round)`. 1, the sum, when the pages are all found before
   * the first is sent; for a scan whose chunks are sent as they are found, the first chunks
   * scanned before the send starts and the last chunks' pages sent after the scan ends.
   */
  findDirtyLagShare: () => number = () => 1;

  /**
   * @param rounds The migration's rounds so far, appended to by the engine (read, never written).
   * @param pageSize Bytes per page.
   * @param calibration What earlier switchovers taught (see {@link SwitchoverCalibration}).
   * @param capBytesPerSec The bandwidth cap, if any.
   */
  constructor(
    private readonly rounds: readonly RoundReport[],
    private readonly pageSize: number,
    readonly calibration: SwitchoverCalibration,
    private readonly capBytesPerSec: number | undefined,
  ) {}

  /** Counts a measured round trip, in milliseconds: the model keeps the shortest. */
  observeRoundTrip(ms: number): void {
    this.rttMs = Math.min(this.rttMs, ms);
  }

  /**
   * Raw bytes per second the target absorbed over the latest rounds that add up to at least a
   * second (or all rounds so far): a sliding window, so a guest or link that changes pace is
   * followed, and a single short round does not swing it.
   */
  bandwidth(): number {
    let bytes = 0;
    let ms = 0;
    for (let i = this.rounds.length - 1; i >= 0 && ms < 1000; i--) {
      const r = this.rounds[i]!;
      if (r.stopAndCopy) continue;
      bytes += r.bytesRaw;
      ms += r.durationMs - (r.heldMs ?? 0);
    }
    return ms > 0 ? (bytes * 1000) / ms : 0;
  }

  /**
   * The pause if `bytes` were left: a last round as the recent rounds went (see
   * {@link roundTimeModel}), then half a round trip for "go", with the calibration's factor and
   * overhead. The last round starts with nothing queued (the previous round was acknowledged).
   */
  predict(bytes: number, current?: RoundSample): number {
    const model = this.roundTimeModel(bytes, current);
    if (!model) return Number.POSITIVE_INFINITY;
    const c = this.calibration;
    const e = estimateDowntime(bytes, model, this.rttMs, c.overheadMs);
    // A link that sets the pace is no faster with the guest paused: the factor is not for it.
    const link = bytes > 0 ? this.linkTime(bytes) : undefined;
    const roundMs = link?.bound ? link.ms : Math.max(c.factorFor(e.roundMs) * e.roundMs, link?.ms ?? 0);
    const findMs = this.findDirtyMs();
    const findAndRoundMs = Math.max(findMs, roundMs) + this.findDirtyLagShare() * Math.min(findMs, roundMs);
    return e.overheadMs + findAndRoundMs + e.handshakeMs;
  }

  /**
   * How long the link alone needs for a last round of `bytes` (dirty pages x page size) under
   * the bandwidth cap: its wire bytes at the cap. `bound` says whether the link set the pace of
   * the latest round (it went at LINK_BOUND_SHARE of the cap or more); then it sets the last
   * round's too, whatever the rounds' time per byte says. Rounds of different pages compress
   * differently, so a round's time per byte under a cap says little about another's (a first
   * pass and a last round can differ by half; docs/bench/README.md, "Figures behind the engine's
   * constants"). The cap saves up no idle time, so the last round gets no burst from the
   * acknowledgement wait before it. Undefined without a cap.
   */
  linkTime(bytes: number): { ms: number; bound: boolean } | undefined {
    const cap = this.capBytesPerSec;
    if (cap === undefined) return undefined;
    const last = this.rounds.findLast((r) => !r.stopAndCopy);
    const share = this.wireShare ?? (last && last.bytesRaw > 0 ? last.bytesWire / (last.bytesRaw + last.zeroPages * this.pageSize) : 1);
    return { ms: (bytes * share * 1000) / cap, bound: this.linkBound() };
  }

  /** Whether the latest pre-copy round went at LINK_BOUND_SHARE of the bandwidth cap or more. */
  linkBound(): boolean {
    const cap = this.capBytesPerSec;
    const last = this.rounds.findLast((r) => !r.stopAndCopy);
    return cap !== undefined && last !== undefined && last.durationMs > 0 && (last.bytesWire * 1000) / last.durationMs >= LINK_BOUND_SHARE * cap;
  }

  /**
   * How long a round of `bytes` would take: at the time per byte of the recent rounds like it in
   * size (the pre-copy rounds of the last second, and the round in progress if given; see
   * {@link paceOfRoundsLike}), times the latest round's {@link slowdown}. Zero pages count for
   * {@link ZERO_PAGE_COST_SHARE} of a data page: they are copied and compared but neither sent nor
   * written.
   */
  roundTimeModel(bytes: number, current?: RoundSample): RoundTimeModel | undefined {
    const samples = this.recentSamples(current);
    const like = paceOfRoundsLike(samples, bytes);
    return like && { fixedMs: like.fixedMs, msPerByte: like.msPerByte * this.slowdown(samples) };
  }

  /**
   * How much slower than the recent rounds like it in size the latest round went (the round in
   * progress if given): its time per byte over theirs, at least 1. The policy decides on what
   * that very round left dirty, so a pause follows a round that went slow (under `best`: it left
   * as much dirty as the one before) or fast (under `first-fit`: it left little enough to fit).
   * On a shared host a slow round is a spell of contention that outlasts it, and the last round
   * goes as slow; a fast one is a gap that does not, and the last round goes at the usual pace
   * again. Rounds like the latest in size, because a small round pays more per byte for the
   * pipeline filling and draining than a big one, contention or not.
   */
  private slowdown(samples: readonly RoundSample[]): number {
    const latest = samples[0];
    if (!latest || !(latest.bytes > 0 && latest.ms > 0 && Number.isFinite(latest.ms))) return 1;
    const usual = paceOfRoundsLike(samples, latest.bytes);
    return usual && usual.msPerByte > 0 ? Math.max(1, latest.ms / latest.bytes / usual.msPerByte) : 1;
  }

  /** The round in progress if given, then the pre-copy rounds of the last second (at least one), latest first. */
  private recentSamples(current?: RoundSample): RoundSample[] {
    const samples: RoundSample[] = current ? [current] : [];
    let ms = current?.ms ?? 0;
    for (let i = this.rounds.length - 1; i >= 0 && ms < 1000; i--) {
      const r = this.rounds[i]!;
      if (r.stopAndCopy) continue;
      samples.push(this.sampleOf(r));
      ms += r.durationMs;
    }
    return samples;
  }

  /**
   * What a finished round cost. The target's collection before the acknowledgement is not part of
   * it (at most the acknowledgement wait it was part of: a target cannot report more than that),
   * nor is the time its batches were held back while another migration of the host paused.
   */
  private sampleOf(r: RoundReport): RoundSample {
    return { bytes: this.workOf(r.bytesRaw, r.zeroPages), ms: r.durationMs - Math.min(r.targetGcMs, r.ackMs) - (r.heldMs ?? 0) };
  }

  /** What `bytesRaw` of data pages and `zeroPages` zero pages cost to send, in data bytes. */
  workOf(bytesRaw: number, zeroPages: number): number {
    return bytesRaw + zeroPages * this.pageSize * ZERO_PAGE_COST_SHARE;
  }
}
