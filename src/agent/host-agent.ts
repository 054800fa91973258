/**
 * A host agent: the long-lived process on a host that keeps its guests. It receives guests by
 * migration (a {@link TargetAgent} it is built around), starts and stops guests, migrates its own
 * guests out on request, knows its capacity and what it has promised, enforces its maintenance
 * flag, and answers its control API (docs/api.md) on the same port as the migrations.
 *
 * Admission: a `hello` reserves the guest's memory before anything is allocated, and is refused
 * with ERR_INSUFFICIENT_CAPACITY when it does not fit, or ERR_HOST_IN_MAINTENANCE in maintenance.
 * The reservation becomes used memory when the guest runs here, and is released on every other
 * path. A guest keeps its pool-wide id and priority from host to host (the `guest` record).
 */

import { DEFAULT_CODEC } from '../precopy/codec-choice.js';
import { calibrationsByCodec } from '../precopy/switchover-calibration.js';
import { SwitchoverGate } from '../precopy/switchover-gate.js';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { TargetDomain } from '../domain/backend.js';
import { ConflictError, HostInMaintenanceError, InvalidArgumentError, NotFoundError, UnknownBackendError } from '../errors.js';
import { digestMemory } from '../protocol/page-digest.js';
import type { HelloRecord } from '../protocol/records.js';
import type { IncomingResult } from '../precopy/incoming.js';
import type { Admission } from './agent-options.js';
import { ControlServer, NotAvailableError, type ControlApi } from './control-server.js';
import { migrationUrlOf } from './control-requests.js';
import type {
  EvacuateRequest,
  EvacuationInfo,
  GuestInfo,
  GuestInspection,
  HostStatus,
  MigrateGuestRequest,
  MigrationInfo,
  StartGuestRequest,
} from './control-types.js';
import { defaultLaunchers, type GuestAdopter, type GuestLauncher } from './guest-launcher.js';
import { GuestRegistry, guestInfo, isSourceDomain, type HostGuest } from './guest-registry.js';
import { HostMetrics, processUsage } from './host-metrics.js';
import { DEFAULT_MIGRATION_HISTORY, HOST_CLOSE_GRACE_MS, type HostAgentOptions } from './host-options.js';
import { OutgoingMigration } from './outgoing-migration.js';
import { PauseEstimator } from './pause-estimator.js';
import { consoleOf, TargetAgent } from './target-agent.js';

export { DEFAULT_MIGRATION_HISTORY, type HostAgentOptions } from './host-options.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** A running host agent. */
export class HostAgent implements ControlApi {
  readonly name: string;
  readonly registry: GuestRegistry;
  readonly metrics: HostMetrics;
  /** The target agent that receives migrations and answers queries. */
  target!: TargetAgent;
  private maintenance: boolean;
  private evacuationId: string | undefined;
  private readonly launchers: Map<string, GuestLauncher>;
  private readonly adopters: Map<string, GuestAdopter>;
  private readonly outgoing = new Map<string, OutgoingMigration>();
  /** What this host's switchovers taught its pause prediction, per codec. */
  private readonly calibration = calibrationsByCodec();
  /** Shared by the migrations leaving this host: one guest paused at a time, the others' pages held meanwhile. */
  private readonly switchoverGate = new SwitchoverGate();
  private readonly incoming = new Map<string, MigrationInfo>();
  /** Per guest, the last inspection queued; each waits for the one before it. */
  private readonly inspections = new WeakMap<HostGuest, Promise<unknown>>();
  private readonly history: number;
  /** The guest kinds the target agent receives (its backends'). */
  private readonly guestKinds: string[];
  /** Each guest's expected pause and total time, from what this host's migrations measured. */
  private readonly estimator: PauseEstimator;

  private constructor(private readonly options: HostAgentOptions<HostAgent>) {
    this.name = options.name ?? os.hostname();
    const capacity = options.capacityBytes ?? Math.floor(os.totalmem() / 2);
    if (!Number.isSafeInteger(capacity) || capacity < 0) throw new InvalidArgumentError(`capacityBytes must be a whole number of bytes, got ${capacity}`);
    this.registry = new GuestRegistry(capacity);
    this.maintenance = options.maintenance ?? false;
    this.launchers = options.launchers ?? defaultLaunchers();
    this.adopters = options.adopters ?? new Map();
    this.history = options.migrationHistory ?? DEFAULT_MIGRATION_HISTORY;
    // Without backends named, the target agent receives simulated guests only.
    this.guestKinds = [...new Set(options.backends?.map((b) => b.kind) ?? ['sim'])].sort();
    const engine = options.engine ?? {};
    this.estimator = new PauseEstimator({
      configuredLinkBytesPerSec: options.linkBytesPerSec ?? engine.maxBandwidthBytesPerSec,
      downtimeBudgetMs: engine.downtimeBudgetMs,
      overheadMs: () => this.calibration(engine.codec ?? DEFAULT_CODEC).overheadMs,
    });
    const registry = this.registry;
    this.metrics = new HostMetrics(
      this.name,
      {
        capacityBytes: () => registry.capacityBytes,
        usedBytes: () => registry.usedBytes,
        reservedBytes: () => registry.reservedBytes,
        freeBytes: () => registry.freeBytes,
        guests: () => registry.size,
        maintenance: () => this.maintenance,
        migrationsInFlight: (direction) => this.inFlight(direction),
      },
      options.log,
    );
  }

  /**
   * Starts the host: listens for migrations and control requests on one port.
   * @throws as `TargetAgent.start`, and InvalidArgumentError for a capacity that is not a byte count.
   */
  static async start(options: HostAgentOptions<HostAgent> = {}): Promise<HostAgent> {
    const host = new HostAgent(options);
    const server = new ControlServer(host, { key: options.key, maxBodyBytes: options.maxControlBodyBytes, clockSkewMs: options.clockSkewMs });
    host.target = await TargetAgent.start({
      ...options,
      admit: (hello, from) => host.admit(hello, from),
      onHttpRequest: (req, res) => server.handle(req, res),
    });
    return host;
  }

  /** The control URL (`http://` or `https://`); migrations go to the same port as `ws://` or `wss://`. */
  get url(): string {
    return this.target.url.replace(/^ws/, 'http');
  }

  get port(): number {
    return this.target.port;
  }

  status(): HostStatus {
    const r = this.registry;
    const status: HostStatus = {
      name: this.name,
      url: this.url,
      capacityBytes: r.capacityBytes,
      usedBytes: r.usedBytes,
      reservedBytes: r.reservedBytes,
      freeBytes: r.freeBytes,
      maintenance: this.maintenance,
      guestKinds: [...this.guestKinds],
      guests: r.size,
      migrationsIn: this.inFlight('in'),
      migrationsOut: this.inFlight('out'),
      version: VERSION,
      process: processUsage(),
    };
    if (this.evacuationId !== undefined) status.evacuationId = this.evacuationId;
    return status;
  }

  /** Enters or leaves maintenance; guests already here and migrations under way are not touched. */
  setMaintenance(enabled: boolean): HostStatus {
    this.maintenance = enabled;
    return this.status();
  }

  get inMaintenance(): boolean {
    return this.maintenance;
  }

  /**
   * Marks this host as being evacuated by `evacuationId`, for the coordinator that runs it.
   * Claiming again under the same id is allowed (a coordinator resuming its ledger).
   * @throws ConflictError if another evacuation of this host is under way.
   */
  claimEvacuation(evacuationId: string): void {
    if (this.evacuationId !== undefined && this.evacuationId !== evacuationId) {
      throw new ConflictError(`host ${this.name} is already being evacuated (evacuation ${this.evacuationId}); wait for it or cancel it`);
    }
    this.evacuationId = evacuationId;
  }

  /** Ends the claim of `evacuationId`; a claim by another id is left alone. */
  releaseEvacuation(evacuationId: string): void {
    if (this.evacuationId === evacuationId) this.evacuationId = undefined;
  }

  guests(): GuestInfo[] {
    return this.registry.list().map((g) => guestInfo(g, this.estimator.estimate(g)));
  }

  guest(id: string): GuestInfo {
    const g = this.registry.get(id);
    return guestInfo(g, this.estimator.estimate(g));
  }

  /**
   * Starts a guest here, its memory reserved while it boots.
   * @throws HostInMaintenanceError, InsufficientCapacityError, ConflictError (id in use),
   *   UnknownBackendError (no launcher of that kind), InvalidArgumentError (bad configuration).
   */
  async startGuest(request: StartGuestRequest): Promise<GuestInfo> {
    if (this.maintenance) throw new HostInMaintenanceError(`host ${this.name} is in maintenance and starts no new guests; start it elsewhere, or end maintenance`);
    const kind = request.kind ?? 'sim';
    const launcher = this.launchers.get(kind);
    if (launcher === undefined) throw new UnknownBackendError(kind, [...this.launchers.keys()]);
    const id = request.id ?? randomUUID();
    if (this.registry.find(id) !== undefined) throw new ConflictError(`a guest with id ${id} already runs on this host`);
    const key = `start:${id}`;
    this.registry.reserve(key, request.memoryBytes, `guest "${request.name}"`);
    let launched;
    try {
      launched = await launcher(request);
    } finally {
      this.registry.unreserve(key);
    }
    const d = launched.domain.descriptor;
    const guest = this.registry.add({
      id,
      name: request.name,
      kind: d.kind,
      memoryBytes: d.memoryBytes,
      vcpus: d.vcpus,
      priority: request.priority ?? 0,
      config: launched.config,
      domain: launched.domain,
      state: 'running',
      since: new Date().toISOString(),
      ...(launched.console !== undefined ? { console: launched.console } : {}),
    });
    return guestInfo(guest, this.estimator.estimate(guest));
  }

  /**
   * Stops a guest and frees its memory.
   * @throws NotFoundError; ConflictError while it migrates.
   */
  async stopGuest(id: string): Promise<GuestInfo> {
    const guest = this.registry.get(id);
    if (guest.state === 'migrating-out' || guest.state === 'migrating-in') {
      throw new ConflictError(`guest ${id} is migrating (${guest.migrationId}); cancel the migration first`);
    }
    const info = guestInfo(guest);
    this.registry.remove(guest);
    await this.inspections.get(guest);
    await this.detach(guest);
    await guest.domain.destroy();
    return info;
  }

  /**
   * Pauses a running guest a moment to read its state and memory digest (for checks such as the
   * simulated guest's replay oracle), and resumes it.
   * @throws NotFoundError; ConflictError unless it is running.
   */
  inspectGuest(id: string): Promise<GuestInspection> {
    const guest = this.registry.get(id);
    const turn = (this.inspections.get(guest) ?? Promise.resolve()).then(async () => {
      await this.detach(guest);
      if (guest.state !== 'running' || this.registry.find(id) !== guest) {
        throw new ConflictError(`guest ${id} is ${guest.state}, not running here; only a running guest is inspected`);
      }
      const d = guest.domain;
      await d.pause();
      try {
        const state = await d.saveState();
        const digest = await digestMemory(d.pageCount, d.descriptor.pageSize, (pfns, dst) => d.readPages(pfns, dst));
        return { guestId: id, digest, domainState: Buffer.from(state).toString('base64') };
      } finally {
        // Also after a failed pause: an inspection never leaves the guest paused.
        await d.resume();
      }
    });
    this.inspections.set(guest, turn.catch(() => undefined));
    return turn;
  }

  /**
   * Starts migrating a guest to another host; returns at once with the migration's id.
   * @throws NotFoundError; ConflictError unless the guest is running; InvalidArgumentError for a
   *   target that is not a URL (nor a name `resolveHost` knows), or a guest its backend cannot send.
   */
  migrateGuest(id: string, request: MigrateGuestRequest): MigrationInfo {
    const guest = this.registry.get(id);
    if (guest.state !== 'running') throw new ConflictError(`guest ${id} is ${guest.state}${guest.migrationId ? ` (${guest.migrationId})` : ''}; only a running guest is migrated`);
    if (!isSourceDomain(guest.domain) && !this.adopters.has(guest.kind)) {
      throw new InvalidArgumentError(`guest ${id} runs on a backend (${guest.kind}) that cannot migrate it onward`);
    }
    const resolved = /^[a-z]+:\/\//i.test(request.to) ? request.to : this.options.resolveHost?.(request.to);
    if (resolved === undefined) throw new InvalidArgumentError(`"${request.to}" is not a URL, and this host knows no host by that name; give http://HOST:PORT`);
    const url = migrationUrlOf(resolved);
    const migration = new OutgoingMigration(
      {
        hostName: this.name,
        key: this.options.key,
        tls: this.options.connectTls,
        registry: this.registry,
        metrics: this.metrics,
        engine: this.options.engine ?? {},
        calibration: this.calibration,
        switchoverGate: this.switchoverGate,
        observe: (g, report) => this.estimator.observe(g, report, this.inFlight('out')),
        prepare: async (g) => {
          await this.inspections.get(g);
          await this.detach(g);
          await this.adopt(g);
        },
      },
      guest,
      request,
      url,
      randomUUID(),
    );
    this.outgoing.set(migration.info.migrationId, migration);
    void migration.done.then(() => this.trimHistory());
    return migration.info;
  }

  migrations(): MigrationInfo[] {
    return [...[...this.outgoing.values()].map((m) => m.info), ...this.incoming.values()];
  }

  /** @throws NotFoundError if this host has no record of it (never had, or forgot). */
  migration(id: string): MigrationInfo {
    const info = this.outgoing.get(id)?.info ?? this.incoming.get(id);
    if (info === undefined) throw new NotFoundError(`this host knows no migration ${id} (it never ran here, or was forgotten)`);
    return info;
  }

  /**
   * Cancels an outgoing migration (honoured until "go").
   * @throws NotFoundError; ConflictError if it has ended or is incoming.
   */
  cancelMigration(id: string): MigrationInfo {
    const migration = this.outgoing.get(id);
    if (migration === undefined) {
      if (this.incoming.has(id)) throw new ConflictError(`migration ${id} comes into this host; cancel it on its source`);
      throw new NotFoundError(`this host knows no migration ${id}`);
    }
    if (!migration.cancel()) throw new ConflictError(`migration ${id} has already ended (${migration.info.state})`);
    return migration.info;
  }

  /**
   * Settles once outgoing migration `id` has ended in full, a completed one with the check of its
   * paused copy; at once if unknown or ended.
   */
  async settled(id: string): Promise<MigrationInfo | undefined> {
    const migration = this.outgoing.get(id);
    await migration?.done;
    return migration?.info ?? this.incoming.get(id);
  }

  /**
   * Settles once outgoing migration `id` has its outcome: a completed one as soon as the guest
   * runs on the target, while its paused copy may still be checked (`verifying`); at once if
   * unknown or ended.
   */
  async ended(id: string): Promise<MigrationInfo | undefined> {
    const migration = this.outgoing.get(id);
    await migration?.ended;
    return migration?.info ?? this.incoming.get(id);
  }

  async evacuate(request: EvacuateRequest): Promise<EvacuationInfo> {
    const hook = this.options.onEvacuate;
    if (hook === undefined) throw new NotAvailableError(`host ${this.name} runs no evacuation coordinator; evacuation is not available here`);
    return hook(request, this);
  }

  async evacuation(id: string): Promise<EvacuationInfo> {
    const hook = this.options.onEvacuationStatus;
    if (hook === undefined) throw new NotAvailableError(`host ${this.name} runs no evacuation coordinator; evacuation is not available here`);
    const info = await hook(id, this);
    if (info === undefined) throw new NotFoundError(`this host knows no evacuation ${id}`);
    return info;
  }

  async cancelEvacuation(id: string): Promise<EvacuationInfo> {
    const hook = this.options.onEvacuationCancel;
    if (hook === undefined) throw new NotAvailableError(`host ${this.name} runs no evacuation coordinator; evacuation is not available here`);
    const info = await hook(id, this);
    if (info === undefined) throw new NotFoundError(`this host knows no evacuation ${id}`);
    return info;
  }

  async metricsText(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.metrics.contentType, text: await this.metrics.text() };
  }

  /**
   * Cancels outgoing migrations, waits for them to settle (a switchover under way completes),
   * stops every guest here, and stops listening.
   */
  async close(): Promise<void> {
    for (const m of this.outgoing.values()) if (m.running) m.cancel();
    // Those past their switchover too: the paused copy each checks is destroyed when it is done.
    const busy = [...this.outgoing.values()].filter((m) => m.busy);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, HOST_CLOSE_GRACE_MS)));
    await Promise.race([Promise.allSettled(busy.map((m) => m.done)), grace]);
    clearTimeout(timer);
    for (const guest of this.registry.all()) {
      this.registry.remove(guest);
      await this.detach(guest);
      await guest.domain.destroy().catch(() => undefined);
    }
    await this.target.close();
  }

  private inFlight(direction: 'in' | 'out'): number {
    let n = 0;
    if (direction === 'out') for (const m of this.outgoing.values()) n += m.running ? 1 : 0;
    else for (const m of this.incoming.values()) n += m.endedAt === undefined ? 1 : 0;
    return n;
  }

  /** Takes a received guest back from the target agent, which then no longer inspects or destroys it. */
  private async detach(guest: HostGuest): Promise<void> {
    const migrationId = guest.arrivedBy;
    if (migrationId === undefined) return;
    guest.arrivedBy = undefined;
    await this.target.release(migrationId);
  }

  /** Makes a guest that arrived here a source domain, by its kind's adopter, if it is not one already. */
  private async adopt(guest: HostGuest): Promise<void> {
    if (isSourceDomain(guest.domain)) return;
    const adopter = this.adopters.get(guest.kind);
    if (adopter === undefined) throw new InvalidArgumentError(`guest ${guest.id} runs on a backend (${guest.kind}) that cannot migrate it onward`);
    guest.domain = await adopter(guest.domain);
  }

  /** The target agent's admission of a `hello`: maintenance, then capacity, reserved until it ends. */
  private admit(hello: HelloRecord, from: string): Admission {
    const d = hello.domain;
    if (this.maintenance) {
      throw new HostInMaintenanceError(`host ${this.name} is in maintenance and takes no incoming migrations; choose another host`);
    }
    const key = `in:${hello.migrationId}`;
    this.registry.reserve(key, d.memoryBytes, `guest "${d.name}"`);
    const info: MigrationInfo = {
      migrationId: hello.migrationId,
      guestId: '',
      guestName: d.name,
      from,
      to: this.name,
      state: 'running',
      phase: 'receiving',
      startedAt: new Date().toISOString(),
      direction: 'in',
      guestRunningOn: 'source',
    };
    this.incoming.set(hello.migrationId, info);
    this.metrics.publish({ migrationId: info.migrationId, direction: 'in', guestName: d.name, from, to: this.name, phase: 'receiving', state: 'running' });
    return {
      resumed: (domain, result) => {
        this.registry.unreserve(key);
        this.received(info, domain, result);
      },
      discarded: (error) => {
        this.registry.unreserve(key);
        this.endIncoming(info, 'failed', 'discarded', 0, error);
      },
    };
  }

  /** A guest that arrived runs here now: it joins the guests under the id it came with. */
  private received(info: MigrationInfo, domain: TargetDomain, result: IncomingResult): void {
    const d = domain.descriptor;
    const guest = this.registry.add({
      id: result.guest?.id ?? randomUUID(),
      name: d.name,
      kind: d.kind,
      memoryBytes: d.memoryBytes,
      vcpus: d.vcpus,
      priority: result.guest?.priority ?? 0,
      config: { ...d.config },
      domain,
      state: 'running',
      since: new Date().toISOString(),
      arrivedBy: info.migrationId,
      ...(consoleOf(domain) !== undefined ? { console: consoleOf(domain) } : {}),
    });
    info.guestId = guest.id;
    info.guestRunningOn = 'target';
    this.endIncoming(info, 'completed', 'resumed', result.bytesWire);
  }

  private endIncoming(info: MigrationInfo, state: 'completed' | 'failed', phase: string, bytesWire: number, error?: { code: string; message: string }): void {
    info.state = state;
    info.phase = phase;
    info.endedAt = new Date().toISOString();
    info.totalMs = Date.parse(info.endedAt) - Date.parse(info.startedAt);
    info.bytesWire = bytesWire;
    if (error !== undefined) info.error = error;
    this.metrics.ended('in', phase === 'resumed' ? 'completed' : 'discarded', undefined, bytesWire);
    const event = { migrationId: info.migrationId, direction: 'in' as const, guestName: info.guestName, from: info.from, to: info.to, phase, state, bytesWire };
    this.metrics.publish(info.guestId === '' ? { ...event, ...(error ? { error } : {}) } : { ...event, guestId: info.guestId });
    this.trimHistory();
  }

  /** Forgets the oldest ended migrations beyond the history bound. */
  private trimHistory(): void {
    for (const [id, m] of this.outgoing) {
      if (this.outgoing.size <= this.history) break;
      if (!m.busy) this.outgoing.delete(id);
    }
    for (const [id, info] of this.incoming) {
      if (this.incoming.size <= this.history) break;
      if (info.endedAt !== undefined) this.incoming.delete(id);
    }
  }
}
