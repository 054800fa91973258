/**
 * The books of an evacuation, per guest: what it knows of each guest it deals with (attempts,
 * hosts it failed on, migrations) and the one outcome it reports for each. The coordinator
 * (evacuation.ts) decides what happens; this keeps the record, and announces each outcome as it
 * is concluded.
 */

import type { EvacuatedGuest, MigrationInfo } from '../agent/control-types.js';
import type { EvacuationEvent, PlanEntry } from './pool-types.js';

/** One guest the evacuation has dealt with. */
export interface GuestTrack {
  id: string;
  name: string;
  memoryBytes: number;
  /** Migrations this run started for it (an adopted one of its own counts). */
  attempts: number;
  /** Hosts it failed on in this run. */
  tried: Set<string>;
  migrationIds: string[];
  lastError?: { code: string; message: string };
  /** Failed on the source's side and waiting for the next plan to place it elsewhere. */
  retry: boolean;
  result?: EvacuatedGuest;
}

/** Every guest an evacuation of `source` has dealt with, by id. */
export class EvacuationGuests {
  readonly #tracks = new Map<string, GuestTrack>();
  readonly #source: string;
  readonly #emit: (event: EvacuationEvent) => void;

  constructor(source: string, emit: (event: EvacuationEvent) => void) {
    this.#source = source;
    this.#emit = emit;
  }

  /** The guest's track, begun at its first mention. */
  track(id: string, name: string): GuestTrack {
    let track = this.#tracks.get(id);
    if (!track) {
      track = { id, name, memoryBytes: 0, attempts: 0, tried: new Set(), migrationIds: [], retry: false };
      this.#tracks.set(id, track);
    }
    return track;
  }

  /** The guest's track, if it has been mentioned. */
  get(id: string): GuestTrack | undefined {
    return this.#tracks.get(id);
  }

  /** Per guest that failed somewhere, the hosts it failed on: a new plan avoids them for it. */
  avoid(): Map<string, Set<string>> {
    return new Map([...this.#tracks.values()].filter((t) => t.tried.size > 0).map((t) => [t.id, t.tried]));
  }

  /** The fields every outcome row of the guest starts with. */
  base(track: GuestTrack): Pick<EvacuatedGuest, 'guestId' | 'guestName' | 'migrationIds'> {
    return { guestId: track.id, guestName: track.name, migrationIds: [...track.migrationIds] };
  }

  /** Sets the guest's outcome (a later one replaces it) and announces it. */
  conclude(track: GuestTrack, result: EvacuatedGuest): void {
    track.retry = false;
    track.result = result;
    this.#emit({ type: 'finished', guest: result });
  }

  /** The outcome of a guest the plan could not place (or, with `as`, one left for later). */
  unplaced(move: PlanEntry, as?: 'pending'): void {
    const track = this.track(move.guestId, move.guestName);
    const base = { ...this.base(track), runsOn: this.#source };
    if (as === 'pending') return this.conclude(track, { ...base, outcome: 'pending' });
    const reason = { code: move.code ?? 'ERR_INSUFFICIENT_CAPACITY', message: move.reason ?? 'no target host can take it' };
    if (track.lastError) return this.conclude(track, { ...base, outcome: 'failed', error: { code: track.lastError.code, message: `${track.lastError.message}; not retried: ${reason.message}` } });
    if (move.code !== 'ERR_CONFLICT') return this.conclude(track, { ...base, outcome: 'unplaced', error: reason });
    const paused = /^paused/.test(reason.message);
    this.conclude(track, { ...base, outcome: paused ? 'indeterminate' : 'pending', runsOn: paused ? undefined : base.runsOn, error: reason });
  }

  /**
   * Every guest's outcome, in the order of `plan` (guests it does not hold last). A guest still
   * without one is first concluded as it stands: failed if it waited for a retry, else pending.
   */
  outcomes(plan: readonly PlanEntry[]): EvacuatedGuest[] {
    for (const track of this.#tracks.values()) {
      if (!track.result) this.conclude(track, { ...this.base(track), outcome: track.retry ? 'failed' : 'pending', runsOn: this.#source, error: track.lastError });
    }
    const order = new Map(plan.map((m, i) => [m.guestId, i]));
    const rank = (t: GuestTrack): number => order.get(t.id) ?? order.size;
    return [...this.#tracks.values()].sort((a, b) => rank(a) - rank(b)).map((t) => t.result!);
  }
}

/** A completed guest's row with what the check of its paused copy found, once it has ended. */
export function withCheck(row: EvacuatedGuest, info: MigrationInfo, source: string): EvacuatedGuest {
  if (info.verifying === true || info.verified === undefined) return row;
  const checked: EvacuatedGuest = { ...row, verified: info.verified };
  if (info.verifyMs !== undefined) checked.verifyMs = info.verifyMs;
  if (!info.verified) {
    checked.error ??= {
      code: 'ERR_DIGEST_MISMATCH',
      message: `${row.guestName} runs on ${row.runsOn ?? info.to}, but the copy ${source} paused differs from what it resumed there (migration ${info.migrationId}); check the guest`,
    };
  }
  return checked;
}
