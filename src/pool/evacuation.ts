/**
 * Evacuating a host: the coordinator. It claims the host's evacuation, puts the host in
 * maintenance, plans every guest up front (evacuation-plan.ts), then migrates in a sliding window
 * of `parallel` migrations, at most `perTarget` into any one host, in the plan's order (a busy
 * guest alone: see evacuation-order.ts), keeping a ledger of every migration it starts
 * (evacuation-ledger.ts) and the books of each guest's outcome (evacuation-guests.ts).
 * docs/pool.md gives the rules; in short:
 *
 * - a plan with a guest that has no room moves nothing unless `moveWhatFits` is set; guests that
 *   are busy (paused after an unknown switchover, still arriving) never block the rest and are
 *   reported;
 * - a guest whose migration fails with the guest still on the source is retried once on another
 *   host, placed by a fresh plan; then it is left running on the source and reported;
 * - every migration that ends other than completed re-plans the guests not yet started with
 *   fresh capacities, so those bound for a host that died or went into maintenance go elsewhere;
 * - the abort signal stops new migrations and cancels those in flight; a guest past its
 *   switchover decision completes on its target (the engine's rule), the others stay on the source;
 * - each guest's outcome is what the source reports for its migration id; the coordinator never
 *   guesses: a migration it cannot learn the end of is reported `indeterminate` with its id;
 * - a completed migration frees its place in the window as soon as the guest runs on its target;
 *   the source's check of its paused copy is followed apart, and the evacuation ends once every
 *   check has (a failed one stays `completed`, with `verified: false` and ERR_DIGEST_MISMATCH).
 */

import type { GuestInfo, HostStatus, MigrationInfo } from '../agent/control-types.js';
import { asMigrationError, ConnectFailedError, TimeoutError, type MigrationError } from '../errors.js';
import { withDeadline } from '../util/deadline.js';
import { EvacuationLedger, isTerminal } from './evacuation-ledger.js';
import { checkEvacuateOptions, EVACUATION_ATTEMPTS_PER_GUEST, type CheckedEvacuateOptions, type EvacuateOptions } from './evacuation-options.js';
import { EvacuationGuests, withCheck, type GuestTrack } from './evacuation-guests.js';
import { planEvacuation } from './evacuation-plan.js';
import type { PoolHosts } from './pool-hosts.js';
import type { EvacuationEvent, EvacuationPlan, EvacuationReport, PlanEntry } from './pool-types.js';

/**
 * Evacuates `source`: moves every guest off it, or reports why not, per guest.
 * @throws ConflictError if another evacuation of `source` holds its claim; InvalidArgumentError
 *   for unacceptable options or a ledger of another host; NotFoundError if `to` names a host that
 *   did not answer. Nothing has moved when it throws.
 */
export async function evacuate(hosts: PoolHosts, source: string, options: EvacuateOptions = {}): Promise<EvacuationReport> {
  const opts = checkEvacuateOptions(options);
  const ledger = await EvacuationLedger.open(opts.ledgerPath, source, opts.evacuationId);
  return new Evacuation(hosts, source, opts, ledger).run();
}

/** The plan an evacuation of `source` would start from now (`--dry-run`); changes nothing. */
export async function planHostEvacuation(hosts: PoolHosts, source: string, options: Pick<EvacuateOptions, 'to' | 'orderByPause' | 'migration'> = {}): Promise<EvacuationPlan> {
  const [all, guests] = await Promise.all([hosts.hosts(), hosts.guests(source)]);
  return planEvacuation({ source, guests, hosts: all, to: options.to, orderByPause: options.orderByPause, downtimeBudgetMs: options.migration?.downtimeBudgetMs });
}

/** A completed migration whose source still checks its paused copy. */
interface Check {
  migrationId: string;
  guestId: string;
  pollFailures: number;
}

/** A plan entry with a target. */
type PlacedMove = PlanEntry & { to: string };

/** One migration being watched. */
interface Flight {
  migrationId: string;
  guestId: string;
  /** Target host name; empty until the source has said. */
  to: string;
  /** Started by this evacuation (or recorded in its ledger): cancelled on abort. */
  own: boolean;
  pollFailures: number;
  cancelSent: boolean;
  /** Settles when the source says, unasked, that it has ended (`PoolHosts.settled`). */
  ended?: Promise<void>;
  /** That has happened: the next polls come at the interval again. */
  endSeen?: boolean;
  /** A busy guest's: nothing else starts while it flies. */
  alone?: boolean;
}

class Evacuation {
  readonly #hosts: PoolHosts;
  readonly #source: string;
  readonly #opts: CheckedEvacuateOptions;
  readonly #ledger: EvacuationLedger;
  readonly #guests: EvacuationGuests;
  readonly #flights = new Map<string, Flight>();
  readonly #checks = new Map<string, Check>();
  #queue: PlacedMove[] = [];
  #plan: PlanEntry[] = [];
  #aborted = false;
  #halted: MigrationError | undefined;
  #needReplan = false;
  #wake: (() => void) | undefined;

  constructor(hosts: PoolHosts, source: string, opts: CheckedEvacuateOptions, ledger: EvacuationLedger) {
    this.#hosts = hosts;
    this.#source = source;
    this.#opts = opts;
    this.#ledger = ledger;
    this.#guests = new EvacuationGuests(source, (event) => this.#emit(event));
  }

  get #stopped(): boolean {
    return this.#aborted || this.#halted !== undefined;
  }

  async run(): Promise<EvacuationReport> {
    const id = this.#ledger.data.evacuationId;
    await this.#call(this.#hosts.claimEvacuation(this.#source, id));
    const onAbort = (): void => {
      this.#aborted = true;
      this.#wake?.();
    };
    this.#opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (this.#opts.signal?.aborted) onAbort();
    try {
      return await this.#runClaimed();
    } finally {
      this.#opts.signal?.removeEventListener('abort', onAbort);
      await this.#call(this.#hosts.releaseEvacuation(this.#source, id)).catch(() => undefined);
    }
  }

  async #runClaimed(): Promise<EvacuationReport> {
    const status = (await this.#call(this.#hosts.hosts())).find((h) => h.name === this.#source);
    if (!status) throw new ConnectFailedError(`host ${this.#source} did not answer; it cannot be evacuated now`);
    await this.#call(this.#hosts.setMaintenance(this.#source, true));
    let plan: EvacuationPlan;
    try {
      await this.#resume();
      plan = await this.#makePlan();
    } catch (err) {
      await this.#restoreMaintenance(status);
      throw err;
    }
    this.#plan = plan.moves;
    this.#emit({ type: 'planned', evacuationId: this.#ledger.data.evacuationId, plan });
    const blocking = plan.moves.filter((m) => m.to === undefined && m.code !== 'ERR_CONFLICT');
    if (blocking.length > 0 && !this.#opts.moveWhatFits) {
      for (const m of plan.moves) this.#guests.unplaced(m, m.to === undefined ? undefined : 'pending');
      await this.#ledger.recordPlan(plan.moves, 'failed');
      await this.#restoreMaintenance(status);
      return this.#finish(true);
    }
    await this.#ledger.recordPlan(plan.moves, 'running');
    this.#applyPlan(plan);
    await this.#loop();
    return this.#finish(false);
  }

  /** Leaves maintenance again if the evacuation entered it and moved nothing. */
  async #restoreMaintenance(before: HostStatus): Promise<void> {
    if (!before.maintenance) await this.#call(this.#hosts.setMaintenance(this.#source, false)).catch(() => undefined);
  }

  /** Picks up the migrations a ledger from an earlier run records. */
  async #resume(): Promise<void> {
    const completed = new Map(this.#ledger.data.guests?.filter((g) => g.outcome === 'completed').map((g) => [g.guestId, g]));
    for (const m of this.#ledger.data.migrations) {
      const track = this.#guests.track(m.guestId, m.guestName);
      track.migrationIds.push(m.migrationId);
      if (m.state === 'completed') this.#guests.conclude(track, completed.get(m.guestId) ?? { ...this.#guests.base(track), outcome: 'completed', runsOn: m.to });
    }
    for (const m of this.#ledger.unsettled()) {
      this.#guests.track(m.guestId, m.guestName).attempts = 1;
      await this.#adopt(m.migrationId, m.guestId, true, false, m.to);
    }
  }

  /**
   * Watches a migration this run did not start, and settles it if it has ended. One found on the
   * source's guest list (`record`) is written to the ledger first, with its target if the source
   * says.
   */
  async #adopt(migrationId: string, guestId: string, own: boolean, record: boolean, to = ''): Promise<void> {
    const track = this.#guests.get(guestId)!;
    if (!track.migrationIds.includes(migrationId)) track.migrationIds.push(migrationId);
    if (record) {
      const target = await this.#call(this.#hosts.migration(this.#source, migrationId)).then((info) => info.to, () => to);
      await this.#ledger.recordStart({ migrationId, guestId, guestName: track.name, to: target, attempt: 0, startedAt: new Date().toISOString() });
      to = target;
    }
    const flight: Flight = { migrationId, guestId, to, own, pollFailures: 0, cancelSent: false };
    this.#flights.set(migrationId, flight);
    await this.#poll(flight);
  }

  /**
   * A plan, from fresh capacities, for every guest on the source that has no outcome yet and is
   * not migrating. Guests migrating out that nobody watches are adopted first.
   */
  async #makePlan(): Promise<EvacuationPlan> {
    const [all, onSource] = await Promise.all([this.#call(this.#hosts.hosts()), this.#call(this.#hosts.guests(this.#source))]);
    for (const g of onSource) {
      this.#guests.track(g.id, g.name).memoryBytes = g.memoryBytes;
      if (g.state === 'migrating-out' && g.migrationId && !this.#flights.has(g.migrationId)) await this.#adopt(g.migrationId, g.id, false, true);
    }
    const inFlight = new Set([...this.#flights.values()].map((f) => f.guestId));
    const open = onSource.filter((g) => !this.#guests.get(g.id)?.result && !inFlight.has(g.id));
    const avoid = this.#guests.avoid();
    return planEvacuation({
      source: this.#source,
      guests: open,
      hosts: all,
      to: this.#opts.to,
      pendingBytes: await this.#pendingBytes(all),
      avoid,
      orderByPause: this.#opts.orderByPause,
      downtimeBudgetMs: this.#opts.migration?.downtimeBudgetMs,
    });
  }

  /**
   * Per target, the memory of this evacuation's migrations that the target does not count yet: a
   * target reserves, and lists the guest, once the migration's `hello` arrives.
   */
  async #pendingBytes(all: readonly HostStatus[]): Promise<Map<string, number>> {
    const pending = new Map<string, number>();
    for (const host of all) {
      const flights = [...this.#flights.values()].filter((f) => f.to === host.name);
      if (flights.length === 0) continue;
      const listed = await this.#call(this.#hosts.guests(host.name)).then(
        (guests) => new Set(guests.map((g) => g.id)),
        () => new Set<string>(),
      );
      for (const f of flights) {
        if (!listed.has(f.guestId)) pending.set(host.name, (pending.get(host.name) ?? 0) + this.#guests.get(f.guestId)!.memoryBytes);
      }
    }
    return pending;
  }

  /** Makes the plan's placed moves the queue; reports the guests it could not place. */
  #applyPlan(plan: EvacuationPlan): void {
    this.#queue = [];
    for (const move of plan.moves) {
      const track = this.#guests.track(move.guestId, move.guestName);
      track.retry = false;
      if (move.to !== undefined) this.#queue.push(move as PlacedMove);
      else this.#guests.unplaced(move);
    }
  }

  async #loop(): Promise<void> {
    for (;;) {
      if (this.#aborted) await this.#cancelInFlight();
      else if (this.#needReplan && !this.#halted) await this.#replan();
      if (!this.#stopped) await this.#fillWindow();
      const over = this.#flights.size === 0 && (this.#stopped || (this.#queue.length === 0 && !this.#needReplan));
      if (over && this.#checks.size === 0) return;
      if (this.#flights.size > 0 || this.#checks.size > 0) {
        await this.#sleepUntilAnEnd();
        await Promise.all([...[...this.#flights.values()].map((f) => this.#poll(f)), ...[...this.#checks.values()].map((c) => this.#pollCheck(c))]);
      }
    }
  }

  /** Asks the source whether its check of a completed migration's paused copy has ended. */
  async #pollCheck(check: Check): Promise<void> {
    let info: MigrationInfo | undefined;
    try {
      info = await this.#call(this.#hosts.migration(this.#source, check.migrationId));
    } catch (err) {
      // A source that forgot it, or stays silent, leaves the check unknown; the guest moved all the same.
      const gone = asMigrationError(err, 'ERR_CONNECT_FAILED').code === 'ERR_NOT_FOUND';
      if (gone || ++check.pollFailures >= this.#opts.maxPollFailures) this.#checks.delete(check.migrationId);
      return;
    }
    check.pollFailures = 0;
    if (info.verifying === true) return;
    this.#checks.delete(check.migrationId);
    const track = this.#guests.get(check.guestId);
    if (track?.result !== undefined) this.#guests.conclude(track, withCheck(track.result, info, this.#source));
  }

  async #replan(): Promise<void> {
    this.#needReplan = false;
    let plan: EvacuationPlan;
    try {
      plan = await this.#makePlan();
    } catch (err) {
      this.#halted = asMigrationError(err, 'ERR_CONNECT_FAILED');
      return;
    }
    this.#emit({ type: 'replanned', plan });
    this.#applyPlan(plan);
  }

  /**
   * Starts queued moves, in order, while the window and each target's limit allow. A move that
   * must go alone waits for the window to empty, and nothing behind it starts meanwhile (it would
   * keep the window from ever emptying); while it flies, nothing starts.
   */
  async #fillWindow(): Promise<void> {
    for (let i = 0; i < this.#queue.length && this.#flights.size < this.#opts.parallel && !this.#stopped; ) {
      const move = this.#queue[i]!;
      if ([...this.#flights.values()].some((f) => f.alone) || (move.alone && this.#flights.size > 0)) return;
      const into = [...this.#flights.values()].filter((f) => f.to === move.to).length;
      if (into >= this.#opts.perTarget) {
        i += 1;
        continue;
      }
      this.#queue.splice(i, 1);
      await this.#start(move);
    }
  }

  async #start(move: PlacedMove): Promise<void> {
    const track = this.#guests.track(move.guestId, move.guestName);
    track.attempts += 1;
    let info: MigrationInfo;
    try {
      info = await this.#call(this.#hosts.migrate(this.#source, move.guestId, { ...this.#opts.migration, to: move.to }));
    } catch (err) {
      const error = asMigrationError(err, 'ERR_CONNECT_FAILED');
      if (error.code === 'ERR_CONNECT_FAILED' || error.code === 'ERR_TIMEOUT') {
        // The source may or may not have started it: the final listing of the source tells.
        this.#halted = error;
        this.#queue.unshift(move);
        return;
      }
      return this.#failedAttempt(track, move.to, error.toJSON(), error.code === 'ERR_NOT_FOUND' ? undefined : this.#source);
    }
    const flight: Flight = { migrationId: info.migrationId, guestId: move.guestId, to: move.to, own: true, pollFailures: 0, cancelSent: false, alone: move.alone };
    this.#flights.set(info.migrationId, flight);
    track.migrationIds.push(info.migrationId);
    await this.#ledger.recordStart({ migrationId: info.migrationId, guestId: move.guestId, guestName: move.guestName, to: move.to, attempt: track.attempts, startedAt: info.startedAt });
    this.#emit({ type: 'started', guestId: move.guestId, guestName: move.guestName, migrationId: info.migrationId, to: move.to, attempt: track.attempts });
    if (isTerminal(info.state)) await this.#settle(flight, info);
  }

  /** Asks the source how a migration stands; settles it if it has ended. */
  async #poll(flight: Flight): Promise<void> {
    let info: MigrationInfo;
    try {
      info = await this.#call(this.#hosts.migration(this.#source, flight.migrationId));
    } catch (err) {
      const error = asMigrationError(err, 'ERR_CONNECT_FAILED');
      if (error.code === 'ERR_NOT_FOUND') return this.#locate(flight);
      flight.pollFailures += 1;
      if (flight.pollFailures >= this.#opts.maxPollFailures) await this.#settle(flight, this.#synthetic(flight, 'indeterminate', 'unknown', error.toJSON()));
      return;
    }
    flight.pollFailures = 0;
    if (flight.to === '') flight.to = info.to;
    if (isTerminal(info.state)) await this.#settle(flight, info);
    else this.#emit({ type: 'progress', migration: info });
  }

  /** The source no longer knows the migration: where the guest runs tells how it ended. */
  async #locate(flight: Flight): Promise<void> {
    const on = async (host: string): Promise<boolean> =>
      host !== '' &&
      (await this.#call(this.#hosts.guests(host)).then(
        (guests) => guests.some((g: GuestInfo) => g.id === flight.guestId && g.state === 'running'),
        () => false,
      ));
    const error = { code: 'ERR_NOT_FOUND', message: `${this.#source} no longer knows migration ${flight.migrationId}` };
    if (await on(this.#source)) return this.#settle(flight, this.#synthetic(flight, 'failed', 'source', error));
    if (await on(flight.to)) return this.#settle(flight, this.#synthetic(flight, 'completed', 'target'));
    return this.#settle(flight, this.#synthetic(flight, 'indeterminate', 'unknown', error));
  }

  /** Records how a migration ended and what becomes of its guest. */
  async #settle(flight: Flight, info: MigrationInfo): Promise<void> {
    if (!this.#flights.delete(flight.migrationId)) return;
    await this.#ledger.recordEnd(flight.migrationId, info.state);
    const track = this.#guests.track(flight.guestId, info.guestName);
    const to = flight.to || info.to;
    const base = { ...this.#guests.base(track), downtimeMs: info.downtimeMs, totalMs: info.totalMs, error: info.error };
    const where = info.guestRunningOn;
    if (info.state === 'completed' || (info.state === 'failed' && where === 'target')) {
      if (info.verifying === true) this.#checks.set(flight.migrationId, { migrationId: flight.migrationId, guestId: track.id, pollFailures: 0 });
      return this.#guests.conclude(track, withCheck({ ...base, outcome: 'completed', runsOn: to }, info, this.#source));
    }
    // Any other end may mean a target is lost or full: the guests not yet started are placed again.
    this.#needReplan = true;
    if (info.state === 'indeterminate' || where === 'unknown' || where === 'none') {
      const error = info.error ?? { code: 'ERR_INDETERMINATE', message: `the outcome of migration ${flight.migrationId} is unknown` };
      return this.#guests.conclude(track, { ...base, outcome: 'indeterminate', error });
    }
    if (info.state === 'cancelled' || info.error?.code === 'ERR_CANCELLED') return this.#guests.conclude(track, { ...base, outcome: 'cancelled', runsOn: this.#source });
    this.#failedAttempt(track, to, info.error ?? { code: 'ERR_DOMAIN_FAILED', message: `migration ${flight.migrationId} failed` }, this.#source);
  }

  /** A try that left the guest where it was: retry elsewhere once, or report it. */
  #failedAttempt(track: GuestTrack, to: string, error: { code: string; message: string }, runsOn: string | undefined): void {
    track.lastError = error;
    track.tried.add(to);
    if (runsOn !== undefined && !this.#stopped && track.attempts < EVACUATION_ATTEMPTS_PER_GUEST) {
      track.retry = true;
      this.#needReplan = true;
      this.#emit({ type: 'retrying', guestId: track.id, guestName: track.name, failedOn: to, error });
      return;
    }
    this.#guests.conclude(track, { ...this.#guests.base(track), outcome: 'failed', runsOn, error });
  }

  async #cancelInFlight(): Promise<void> {
    const flights = [...this.#flights.values()].filter((f) => f.own && !f.cancelSent);
    for (const f of flights) f.cancelSent = true;
    // A cancel that fails changes nothing: the migration's end is still learnt by polling.
    await Promise.all(flights.map((f) => this.#call(this.#hosts.cancel(this.#source, f.migrationId)).catch(() => undefined)));
  }

  async #finish(refused: boolean): Promise<EvacuationReport> {
    const leftover = { runsOn: this.#source, error: this.#halted?.toJSON() };
    for (const move of this.#queue) {
      const track = this.#guests.track(move.guestId, move.guestName);
      this.#guests.conclude(track, { ...this.#guests.base(track), outcome: 'pending', ...leftover });
    }
    this.#queue = [];
    let hostEmpty = false;
    try {
      const left = await this.#call(this.#hosts.guests(this.#source));
      hostEmpty = left.length === 0;
      for (const g of left) {
        const track = this.#guests.track(g.id, g.name);
        if (g.migrationId && !track.migrationIds.includes(g.migrationId)) track.migrationIds.push(g.migrationId);
        if (!track.result) this.#guests.conclude(track, { ...this.#guests.base(track), outcome: 'pending', ...leftover });
      }
    } catch {
      // The source does not answer: it cannot be said to be empty.
    }
    const state = refused ? 'failed' : this.#aborted ? 'cancelled' : hostEmpty ? 'completed' : 'failed';
    const guests = this.#guests.outcomes(this.#plan);
    await this.#ledger.recordFinish(state, guests);
    const { evacuationId, startedAt } = this.#ledger.data;
    return { evacuationId, host: this.#source, state, startedAt, endedAt: new Date().toISOString(), plan: this.#plan, guests, hostEmpty, refused };
  }

  #synthetic(flight: Flight, state: MigrationInfo['state'], guestRunningOn: MigrationInfo['guestRunningOn'], error?: { code: string; message: string }): MigrationInfo {
    const track = this.#guests.get(flight.guestId);
    return { migrationId: flight.migrationId, guestId: flight.guestId, guestName: track?.name ?? flight.guestId, from: this.#source, to: flight.to, state, startedAt: '', guestRunningOn, error };
  }

  #emit(event: EvacuationEvent): void {
    try {
      this.#opts.onEvent?.(event);
    } catch {
      // A listener's failure is its own; the evacuation goes on.
    }
  }

  /** Sleeps a poll interval, or less if the source says a migration in flight has ended. */
  #sleepUntilAnEnd(): Promise<void> {
    const nap = this.#sleep();
    const settled = this.#hosts.settled?.bind(this.#hosts);
    if (settled !== undefined) {
      const ends = [...this.#flights.values()]
        .filter((f) => !f.endSeen)
        .map((f) => (f.ended ??= settled(this.#source, f.migrationId).then(() => void (f.endSeen = true), () => new Promise<void>(() => undefined))));
      void Promise.race(ends).then(() => this.#wake?.());
    }
    return nap;
  }

  #sleep(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.#opts.pollIntervalMs);
      this.#wake = done;
    });
  }

  /** A call to a host, bounded by the call timeout, failing with a coded error. */
  #call<T>(promise: Promise<T>): Promise<T> {
    const ms = this.#opts.callTimeoutMs;
    return withDeadline(promise, ms, () => new TimeoutError(`a host did not answer within ${ms} ms`)).catch((err: unknown) => {
      throw asMigrationError(err, 'ERR_CONNECT_FAILED');
    });
  }
}
