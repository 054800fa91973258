/**
 * The evacuations of one host, run inside that host's agent: the hooks behind
 * `POST /v1/host/evacuate`, `GET /v1/evacuations/:id` and `DELETE /v1/evacuations/:id`. The
 * coordinator (evacuation.ts) lives in the process of the host it empties, so it goes on when the
 * operator's terminal goes away, and it reaches every host, this one included, through the
 * control API (`ControlPoolHosts`) with the pool key.
 *
 * One ledger per host, `<stateDir>/evacuation-<name>.json`. A new evacuation resumes the ledger
 * left by one that did not complete (its coordinator died, it failed, or it was cancelled), under
 * the same evacuation id; the ledger of a completed evacuation is replaced by the next one.
 */

import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { EvacuatedGuest, EvacuateRequest, EvacuationInfo } from '../agent/control-types.js';
import { asMigrationError, ConflictError, NotFoundError } from '../errors.js';
import type { TlsConnectOptions } from '../transport/tls.js';
import { ControlPoolHosts } from './control-pool-hosts.js';
import { evacuate, planHostEvacuation } from './evacuation.js';
import { EvacuationLedger } from './evacuation-ledger.js';
import type { EvacuateOptions } from './evacuation-options.js';
import type { PoolHosts } from './pool-hosts.js';
import type { PoolStore } from './pool-store.js';
import type { EvacuationEvent, EvacuationPlan, EvacuationReport } from './pool-types.js';

/** How long `POST /v1/host/evacuate` waits for the plan before it answers, in milliseconds. */
export const DEFAULT_PLAN_WAIT_MS = 5_000;

/** Ended evacuations a host remembers for `GET /v1/evacuations/:id`. */
export const EVACUATION_HISTORY = 100;

/** The host an evacuation empties, as its agent offers it (`HostAgent`). */
export interface EvacuatedHost {
  readonly name: string;
  claimEvacuation(evacuationId: string): void;
  releaseEvacuation(evacuationId: string): void;
  /** Settles once its outgoing migration `migrationId` has ended in full (its check included). */
  settled?(migrationId: string): Promise<unknown>;
  /**
   * Settles once that migration has its outcome: a completed one when the guest runs on its
   * target, before the check of its paused copy. Preferred to `settled` when present.
   */
  ended?(migrationId: string): Promise<unknown>;
}

/** Options of {@link HostEvacuations}. */
export interface HostEvacuationsOptions {
  /** The pool: host names and control URLs. */
  store: PoolStore;
  /** Where ledgers are kept (created if missing). */
  stateDir: string;
  /** The pool key, to sign the calls to the hosts. */
  key?: Uint8Array;
  /** Trust for `https://` hosts. */
  tls?: TlsConnectOptions;
  /** The hosts; a {@link ControlPoolHosts} over `store` by default. */
  hosts?: PoolHosts;
  /** @default DEFAULT_PLAN_WAIT_MS */
  planWaitMs?: number;
  /** Passed to the coordinator (`pollIntervalMs`, `callTimeoutMs`, `maxPollFailures`). */
  coordinator?: Pick<EvacuateOptions, 'pollIntervalMs' | 'callTimeoutMs' | 'maxPollFailures'>;
}

/** One evacuation as it goes. */
interface Run {
  info: EvacuationInfo;
  controller: AbortController;
  done: boolean;
}

/** The evacuations of the host whose agent runs them. */
export class HostEvacuations {
  readonly #options: HostEvacuationsOptions;
  readonly #hosts: PoolHosts;
  readonly #runs = new Map<string, Run>();

  constructor(options: HostEvacuationsOptions) {
    this.#options = options;
    this.#hosts = options.hosts ?? new ControlPoolHosts(options.store, { key: options.key, tls: options.tls });
  }

  /** `POST /v1/host/evacuate`: plans, starts, and answers with the plan once it is made. */
  start = async (request: EvacuateRequest, host: EvacuatedHost): Promise<EvacuationInfo> => {
    const source = host.name;
    if (!(await this.#options.store.list()).some((m) => m.name === source)) {
      throw new NotFoundError(`host ${source} is not in its pool file; add it (name ${source}, its control URL) to evacuate it`);
    }
    if (request.dryRun) return this.#dryRun(request, source);
    const live = [...this.#runs.values()].find((r) => !r.done && r.info.host === source);
    if (live !== undefined) throw new ConflictError(`host ${source} is already being evacuated (evacuation ${live.info.evacuationId}); wait for it or cancel it`);
    await mkdir(this.#options.stateDir, { recursive: true });
    const ledgerPath = join(this.#options.stateDir, `evacuation-${source}.json`);
    const previous = await EvacuationLedger.open(ledgerPath, source);
    if (previous.data.state === 'completed') await rm(ledgerPath, { force: true });
    const id = previous.data.state === 'completed' ? randomUUID() : previous.data.evacuationId;
    host.claimEvacuation(id);
    const run: Run = { info: { evacuationId: id, host: source, state: 'planning', startedAt: new Date().toISOString(), plan: [], guests: [], hostEmpty: false }, controller: new AbortController(), done: false };
    this.#remember(run);
    let planned!: () => void;
    const plan = new Promise<void>((resolve) => (planned = resolve));
    const finished = evacuate(withLocalEnds(this.#hosts, host), source, {
      ...this.#options.coordinator,
      to: request.to,
      parallel: request.parallel,
      perTarget: request.perTarget,
      moveWhatFits: request.moveWhatFits,
      orderByPause: request.orderByPause,
      migration: migrationOptions(request),
      ledgerPath,
      evacuationId: id,
      signal: run.controller.signal,
      onEvent: (event) => {
        apply(run.info, event);
        // A plan that does not fit ends the evacuation at once: the answer is then its report.
        if (event.type === 'planned' && (request.moveWhatFits || !event.plan.moves.some((m) => m.to === undefined && m.code !== 'ERR_CONFLICT'))) planned();
      },
    }).then(
      (report) => this.#end(run, report),
      (err: unknown) => {
        this.#end(run, undefined, asMigrationError(err, 'ERR_CONNECT_FAILED').toJSON());
        throw err;
      },
    );
    void finished.catch(() => undefined).finally(() => host.releaseEvacuation(id));
    let timer: NodeJS.Timeout | undefined;
    const wait = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#options.planWaitMs ?? DEFAULT_PLAN_WAIT_MS)));
    try {
      await Promise.race([plan, finished, wait]);
    } catch (err) {
      this.#runs.delete(id);
      throw asMigrationError(err, 'ERR_CONNECT_FAILED');
    } finally {
      clearTimeout(timer);
    }
    return snapshot(run.info);
  };

  /** `GET /v1/evacuations/:id`. */
  status = async (id: string): Promise<EvacuationInfo | undefined> => {
    const run = this.#runs.get(id);
    return run && snapshot(run.info);
  };

  /**
   * `DELETE /v1/evacuations/:id`: no new migrations; those in flight are cancelled.
   * @throws ConflictError if it has ended.
   */
  cancel = async (id: string): Promise<EvacuationInfo | undefined> => {
    const run = this.#runs.get(id);
    if (run === undefined) return undefined;
    if (run.done) throw new ConflictError(`evacuation ${id} has already ended (${run.info.state})`);
    run.info.cancelRequested = true;
    run.controller.abort();
    return snapshot(run.info);
  };

  async #dryRun(request: EvacuateRequest, source: string): Promise<EvacuationInfo> {
    const plan = await planHostEvacuation(this.#hosts, source, { to: request.to, orderByPause: request.orderByPause, migration: migrationOptions(request) });
    const now = new Date().toISOString();
    const info: EvacuationInfo = { evacuationId: randomUUID(), host: source, state: 'planning', startedAt: now, endedAt: now, plan: [], guests: [], hostEmpty: plan.moves.length === 0, dryRun: true };
    applyPlan(info, plan);
    return info;
  }

  #end(run: Run, report?: EvacuationReport, error?: { code: string; message: string }): void {
    run.done = true;
    const cancelRequested = run.info.cancelRequested;
    if (report !== undefined) run.info = cancelRequested ? { ...report, cancelRequested } : { ...report };
    else run.info = { ...run.info, state: 'failed', endedAt: new Date().toISOString(), error };
  }

  #remember(run: Run): void {
    this.#runs.set(run.info.evacuationId, run);
    for (const [id, r] of this.#runs) {
      if (this.#runs.size <= EVACUATION_HISTORY) break;
      if (r.done) this.#runs.delete(id);
    }
  }
}

/** The pool, told at once by the source's own agent when one of its migrations ends. */
function withLocalEnds(hosts: PoolHosts, local: EvacuatedHost): PoolHosts {
  const settled = local.ended?.bind(local) ?? local.settled?.bind(local);
  if (settled === undefined) return hosts;
  const never = new Promise<void>(() => undefined);
  return {
    hosts: () => hosts.hosts(),
    guests: (host) => hosts.guests(host),
    migrate: (host, guestId, req) => hosts.migrate(host, guestId, req),
    migration: (host, id) => hosts.migration(host, id),
    cancel: (host, id) => hosts.cancel(host, id),
    setMaintenance: (host, on) => hosts.setMaintenance(host, on),
    claimEvacuation: (host, id) => hosts.claimEvacuation(host, id),
    releaseEvacuation: (host, id) => hosts.releaseEvacuation(host, id),
    settled: async (host, id) => (host === local.name ? void (await settled(id)) : never),
  };
}

function migrationOptions(request: EvacuateRequest): EvacuateOptions['migration'] {
  const options: NonNullable<EvacuateOptions['migration']> = {};
  if (request.downtimeBudgetMs !== undefined) options.downtimeBudgetMs = request.downtimeBudgetMs;
  if (request.maxBandwidthBytesPerSec !== undefined) options.maxBandwidthBytesPerSec = request.maxBandwidthBytesPerSec;
  if (request.codec !== undefined) options.codec = request.codec;
  return options;
}

/** A copy to hand out: the run goes on changing its own. */
function snapshot(info: EvacuationInfo): EvacuationInfo {
  return structuredClone(info);
}

/** Every guest of a plan, as pending on the source (with its target) or unplaced (with its reason). */
function applyPlan(info: EvacuationInfo, plan: EvacuationPlan): void {
  info.plan = plan.moves;
  for (const move of plan.moves) {
    const known = info.guests.find((g) => g.guestId === move.guestId);
    if (known !== undefined && known.outcome !== 'pending') continue;
    const guest: EvacuatedGuest = { guestId: move.guestId, guestName: move.guestName, outcome: move.to === undefined ? 'unplaced' : 'pending', runsOn: plan.source, migrationIds: known?.migrationIds ?? [] };
    if (move.to !== undefined) guest.to = move.to;
    else guest.error = { code: move.code ?? 'ERR_INSUFFICIENT_CAPACITY', message: move.reason ?? 'no target host can take it' };
    upsert(info, guest);
  }
}

/** Follows an evacuation's events in its info: one entry per guest, as it stands now. */
function apply(info: EvacuationInfo, event: EvacuationEvent): void {
  switch (event.type) {
    case 'planned':
      info.state = 'running';
      return applyPlan(info, event.plan);
    case 'replanned':
      return applyPlan(info, event.plan);
    case 'started': {
      const known = info.guests.find((g) => g.guestId === event.guestId);
      const ids = [...(known?.migrationIds ?? []).filter((id) => id !== event.migrationId), event.migrationId];
      return upsert(info, { guestId: event.guestId, guestName: event.guestName, outcome: 'migrating', runsOn: info.host, to: event.to, migrationIds: ids });
    }
    case 'progress': {
      const guest = info.guests.find((g) => g.guestId === event.migration.guestId);
      if (guest === undefined || guest.outcome !== 'migrating') return;
      guest.phase = event.migration.phase ?? event.migration.state;
      if (event.migration.remainingBytes !== undefined) guest.remainingBytes = event.migration.remainingBytes;
      return;
    }
    case 'retrying': {
      const guest = info.guests.find((g) => g.guestId === event.guestId);
      if (guest === undefined) return;
      guest.outcome = 'pending';
      guest.error = event.error;
      delete guest.phase;
      delete guest.remainingBytes;
      return;
    }
    case 'finished':
      return upsert(info, event.guest);
  }
}

function upsert(info: EvacuationInfo, guest: EvacuatedGuest): void {
  const at = info.guests.findIndex((g) => g.guestId === guest.guestId);
  if (at < 0) info.guests.push(guest);
  else info.guests[at] = guest;
}
