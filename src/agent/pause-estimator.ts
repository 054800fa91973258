/**
 * What a host knows for its guests' pause estimates (pause-estimate.ts): the link, from what its
 * own migrations measured (the median of the last few, so that one slow run does not set it) or,
 * before any, the bandwidth it was configured with; and per guest, what the guest's last migration
 * from here measured of its dirtying, which wins over what its backend declares.
 *
 * The estimates are for a migration alone, so the link is taken from migrations that ran alone
 * (no other migration out of this host during theirs) when there are any: two migrations sharing
 * the link each measure a part of it, and an evacuation's window makes most of them share.
 */

import type { MigrationReport } from '../precopy/report.js';
import { median } from '../util/stats.js';
import type { PauseEstimate } from './control-types.js';
import type { HostGuest } from './guest-registry.js';
import { declaredDirtying, estimatePause, measuredDirtying, measuredLink, type GuestDirtying, type LinkFigure } from './pause-estimate.js';

/** Migrations whose measured link a host remembers, of those that ran alone and of the others; the estimate takes their median. */
export const LINK_HISTORY = 8;

/** Migrations whose time span a host remembers, to tell whether a later one overlapped them. */
const SPAN_HISTORY = 32;

/** What a {@link PauseEstimator} is told of its host. */
export interface PauseEstimatorOptions {
  /** The host's configured bandwidth, raw bytes per second, used until a migration has measured the link. */
  configuredLinkBytesPerSec?: number;
  /** The budget estimates are played against: the host's default, in milliseconds. */
  downtimeBudgetMs?: number;
  /** What a pause costs beyond its last round, now (the host's calibration learns it), in milliseconds. */
  overheadMs: () => number;
}

/** A host's pause estimates of its guests. */
export class PauseEstimator {
  readonly #alone: LinkFigure[] = [];
  readonly #shared: LinkFigure[] = [];
  /** Start and end of the migrations observed lately, in milliseconds since the epoch. */
  readonly #spans: Array<[number, number]> = [];
  readonly #measured = new WeakMap<HostGuest, GuestDirtying>();

  constructor(private readonly options: PauseEstimatorOptions) {}

  /**
   * Learns from a migration of `guest` out of this host that has ended, whatever its outcome.
   * `othersRunning`: migrations out of this host still running as it ends.
   */
  observe(guest: HostGuest, report: MigrationReport, othersRunning = 0): void {
    const dirtying = measuredDirtying(report);
    if (dirtying !== undefined) this.#measured.set(guest, dirtying);
    const start = Date.parse(report.startedAt);
    const span: [number, number] = [start, start + report.totalMs];
    const overlapped = Number.isNaN(start) || this.#spans.some(([s, e]) => s < span[1] && span[0] < e);
    if (!Number.isNaN(start)) {
      this.#spans.push(span);
      if (this.#spans.length > SPAN_HISTORY) this.#spans.shift();
    }
    const link = measuredLink(report);
    if (link === undefined) return;
    const list = othersRunning === 0 && !overlapped ? this.#alone : this.#shared;
    list.push(link);
    if (list.length > LINK_HISTORY) list.shift();
  }

  /** The link as this host knows it now; undefined if it knows nothing of it. */
  link(): LinkFigure | undefined {
    const links = this.#alone.length > 0 ? this.#alone : this.#shared;
    if (links.length > 0) {
      const trips = links.flatMap((l) => (l.roundTripMs === undefined ? [] : [l.roundTripMs]));
      const link: LinkFigure = { bytesPerSec: median(links.map((l) => l.bytesPerSec))!, source: 'measured' };
      if (trips.length > 0) link.roundTripMs = median(trips)!;
      return link;
    }
    const configured = this.options.configuredLinkBytesPerSec;
    return configured !== undefined && configured > 0 ? { bytesPerSec: configured, source: 'configured' } : undefined;
  }

  /** The estimate of `guest`'s next migration from here, alone on the link. */
  estimate(guest: HostGuest): PauseEstimate {
    const dirtying = this.#measured.get(guest) ?? declaredDirtying(guest.kind, guest.config, guest.memoryBytes, guest.vcpus);
    return estimatePause({ memoryBytes: guest.memoryBytes, dirtying, link: this.link(), downtimeBudgetMs: this.options.downtimeBudgetMs, overheadMs: this.options.overheadMs() });
  }
}
