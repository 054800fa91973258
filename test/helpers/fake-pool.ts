// An in-memory pool of hosts that answers as host agents do (PoolHosts), for testing the
// evacuation coordinator without processes: capacities and reservations, migrations that take
// time, injected failures, cancels, and hosts that die. It records what happened so tests can
// check outcomes: every migration started, the most migrations ever in flight, and where each
// guest is.
import type { GuestInfo, GuestState, HostStatus, MigrateGuestRequest, MigrationInfo, PauseEstimate } from '../../dist/agent/control-types.js';
import type { PoolHosts } from '../../dist/pool/pool-hosts.js';
import { ConflictError, ConnectFailedError, InvalidArgumentError, NotFoundError } from '../../dist/errors.js';

export const MiB = 1024 * 1024;

export interface FakeGuestSpec {
  name: string;
  memoryMiB: number;
  priority?: number;
  /** How long its migrations run, in milliseconds. @default 10 */
  durationMs?: number;
  state?: GuestState;
  migrationId?: string;
  /** What its host would list as its pause estimate. */
  pauseEstimate?: PauseEstimate;
  /** Its backend kind. @default 'sim' */
  kind?: string;
}

interface Guest extends GuestInfo {
  durationMs: number;
}

interface Host {
  name: string;
  url: string;
  capacityBytes: number;
  maintenance: boolean;
  dead: boolean;
  guests: Map<string, Guest>;
  evacuationId?: string;
  /** The guest kinds it receives; a guest of another kind is refused with ERR_UNKNOWN_BACKEND. */
  kinds?: string[];
}

interface Migration {
  info: MigrationInfo;
  guest: Guest;
  from: Host;
  to: Host;
  timer?: NodeJS.Timeout;
  /** The target reserved the guest's memory (its hello arrived). */
  reserved: boolean;
}

/** One migration as started, in start order. */
export interface StartedMigration {
  migrationId: string;
  guestId: string;
  from: string;
  to: string;
}

export class FakePool implements PoolHosts {
  readonly #hosts = new Map<string, Host>();
  readonly #migrations = new Map<string, Migration>();
  #nextId = 1;
  /** Every migration started, in order. */
  readonly started: StartedMigration[] = [];
  /** The most migrations in flight at once: overall, and into each host. */
  readonly peak = { overall: 0, perTarget: new Map<string, number>() };
  /** Makes a migration fail at its end with this code, the guest staying on its source. */
  failWhen: (m: { guestId: string; guestName: string; to: string }) => string | undefined = () => undefined;
  /** How a migration in flight ends when its target dies. @default 'failed' */
  onTargetLost: (guestId: string) => 'failed' | 'indeterminate' = () => 'failed';
  /** Whether a cancel comes after the switchover decision, so the migration completes at once anyway. */
  ignoresCancel: (guestId: string) => boolean = () => false;
  /** Called after each migration starts. */
  onStart: (m: StartedMigration) => void = () => undefined;

  constructor(hosts: Array<{ name: string; capacityMiB: number; maintenance?: boolean; kinds?: string[] }>) {
    for (const h of hosts) {
      this.#hosts.set(h.name, { name: h.name, url: `http://${h.name}.test:7070`, capacityBytes: h.capacityMiB * MiB, maintenance: h.maintenance ?? false, dead: false, guests: new Map(), kinds: h.kinds });
    }
  }

  addGuest(host: string, spec: FakeGuestSpec): string {
    const id = `id-${spec.name}`;
    this.#host(host).guests.set(id, {
      id,
      name: spec.name,
      kind: spec.kind ?? 'sim',
      memoryBytes: spec.memoryMiB * MiB,
      vcpus: 1,
      state: spec.state ?? 'running',
      since: new Date().toISOString(),
      priority: spec.priority ?? 0,
      migrationId: spec.migrationId,
      pauseEstimate: spec.pauseEstimate,
      durationMs: spec.durationMs ?? 10,
    });
    return id;
  }

  /** The hosts a guest is on (running, migrating away or paused), dead ones included. */
  placesOf(guestId: string): string[] {
    return [...this.#hosts.values()].filter((h) => { const g = h.guests.get(guestId); return g !== undefined && g.state !== 'migrating-in'; }).map((h) => h.name);
  }

  /** Names of the guests on a host, dead or alive, in any state but arriving. */
  guestNames(host: string): string[] {
    return [...this.#hosts.get(host)!.guests.values()].filter((g) => g.state !== 'migrating-in').map((g) => g.name).sort();
  }

  /** A migration as its source last saw it, whatever became of the host. */
  migrationState(migrationId: string): MigrationInfo | undefined {
    const m = this.#migrations.get(migrationId);
    return m && { ...m.info };
  }

  /** Makes a host die: every call to it fails; migrations into it end by `onTargetLost`. */
  kill(name: string): void {
    const host = this.#host(name);
    host.dead = true;
    for (const m of this.#migrations.values()) {
      if (m.to !== host || !this.#running(m)) continue;
      if (this.onTargetLost(m.guest.id) === 'failed') this.#fail(m, 'ERR_CONNECTION_CLOSED', `lost the connection to ${name}`);
      else this.#end(m, 'indeterminate', 'unknown', { code: 'ERR_INDETERMINATE', message: `${name} went away during the switchover` }, 'paused');
    }
  }

  /** Makes a source forget a migration that has ended (as an agent does after a while). */
  forget(migrationId: string): void {
    this.#migrations.delete(migrationId);
  }

  /** Lets a migration run that another caller started (a user, or a coordinator that died). */
  async startForeign(host: string, guestId: string, to: string): Promise<MigrationInfo> {
    return this.migrate(host, guestId, { to });
  }

  /** Sets an evacuation claim as a coordinator that died would have left it. */
  setClaim(host: string, evacuationId: string | undefined): void {
    this.#host(host).evacuationId = evacuationId;
  }

  isInMaintenance(host: string): boolean {
    return this.#host(host).maintenance;
  }

  claimOf(host: string): string | undefined {
    return this.#host(host).evacuationId;
  }

  async hosts(): Promise<HostStatus[]> {
    await tick();
    return [...this.#hosts.values()].filter((h) => !h.dead).map((h) => this.#status(h));
  }

  async guests(host: string): Promise<GuestInfo[]> {
    const h = await this.#alive(host);
    return [...h.guests.values()].map(({ durationMs: _, ...g }) => ({ ...g }));
  }

  async migrate(host: string, guestId: string, req: MigrateGuestRequest): Promise<MigrationInfo> {
    const from = await this.#alive(host);
    const guest = from.guests.get(guestId);
    if (!guest) throw new NotFoundError(`no guest ${guestId} on ${host}`);
    if (guest.state !== 'running') throw new ConflictError(`guest ${guest.name} is ${guest.state}`);
    const to = [...this.#hosts.values()].find((h) => h.name === req.to || h.url === req.to);
    if (!to) throw new NotFoundError(`no host ${req.to}`);
    if (to === from) throw new InvalidArgumentError('a guest cannot migrate to its own host');
    const info: MigrationInfo = { migrationId: `m${this.#nextId++}`, guestId, guestName: guest.name, from: from.name, to: to.name, state: 'running', phase: 'handshake', startedAt: new Date().toISOString(), guestRunningOn: 'source' };
    const m: Migration = { info, guest, from, to, reserved: false };
    this.#migrations.set(info.migrationId, m);
    guest.state = 'migrating-out';
    guest.migrationId = info.migrationId;
    const start = { migrationId: info.migrationId, guestId, from: from.name, to: to.name };
    this.started.push(start);
    this.#hello(m);
    this.#notePeaks();
    this.onStart(start);
    return { ...info };
  }

  async migration(host: string, migrationId: string): Promise<MigrationInfo> {
    await this.#alive(host);
    const m = this.#migrations.get(migrationId);
    if (!m || m.from.name !== host) throw new NotFoundError(`${host} has no migration ${migrationId}`);
    return { ...m.info };
  }

  async cancel(host: string, migrationId: string): Promise<MigrationInfo> {
    const m = this.#migrations.get(migrationId);
    await this.#alive(host);
    if (!m || m.from.name !== host) throw new NotFoundError(`${host} has no migration ${migrationId}`);
    if (this.#running(m) && this.ignoresCancel(m.guest.id)) {
      // Past its switchover decision: it finishes moving the guest, as the engine does after `go`.
      clearTimeout(m.timer);
      m.timer = setTimeout(() => this.#complete(m), 1);
    } else if (this.#running(m)) {
      this.#end(m, 'cancelled', 'source', { code: 'ERR_CANCELLED', message: 'migration cancelled' });
    }
    return { ...m.info };
  }

  async setMaintenance(host: string, on: boolean): Promise<HostStatus> {
    const h = await this.#alive(host);
    h.maintenance = on;
    return this.#status(h);
  }

  async claimEvacuation(host: string, evacuationId: string): Promise<void> {
    const h = await this.#alive(host);
    if (h.evacuationId !== undefined && h.evacuationId !== evacuationId) throw new ConflictError(`${host} is already being evacuated (${h.evacuationId})`);
    h.evacuationId = evacuationId;
  }

  async releaseEvacuation(host: string, evacuationId: string): Promise<void> {
    const h = await this.#alive(host);
    if (h.evacuationId !== undefined && h.evacuationId !== evacuationId) throw new ConflictError(`${host}'s evacuation is ${h.evacuationId}`);
    h.evacuationId = undefined;
  }

  /** The target's admission, as at a `hello`: refuse with a code, or reserve and run. */
  #hello(m: Migration): void {
    const { to, guest } = m;
    const refusal = to.dead
      ? ['ERR_CONNECT_FAILED', `cannot reach ${to.name}`]
      : to.maintenance
        ? ['ERR_HOST_IN_MAINTENANCE', `${to.name} is in maintenance`]
        : to.kinds !== undefined && !to.kinds.includes(guest.kind)
          ? ['ERR_UNKNOWN_BACKEND', `${to.name} has no backend for kind ${guest.kind}`]
          : this.#status(to).freeBytes < guest.memoryBytes
          ? ['ERR_INSUFFICIENT_CAPACITY', `${to.name} cannot hold ${guest.name}`]
          : undefined;
    if (refusal) {
      m.timer = setTimeout(() => this.#fail(m, refusal[0]!, refusal[1]!), 1);
      return;
    }
    m.reserved = true;
    to.guests.set(guest.id, { ...guest, state: 'migrating-in', migrationId: m.info.migrationId });
    m.info.phase = 'precopy';
    m.timer = setTimeout(() => {
      const code = this.failWhen({ guestId: guest.id, guestName: guest.name, to: to.name });
      if (code) this.#fail(m, code, `injected failure into ${to.name}`);
      else this.#complete(m);
    }, guest.durationMs);
  }

  #complete(m: Migration): void {
    m.from.guests.delete(m.guest.id);
    m.to.guests.set(m.guest.id, { ...m.guest, state: 'running', migrationId: undefined, since: new Date().toISOString() });
    m.reserved = false;
    m.info = { ...m.info, state: 'completed', phase: undefined, endedAt: new Date().toISOString(), downtimeMs: 3, totalMs: m.guest.durationMs, guestRunningOn: 'target' };
  }

  #fail(m: Migration, code: string, message: string): void {
    this.#end(m, 'failed', 'source', { code, message });
  }

  /** Ends a migration with the guest back on (or paused on) its source. */
  #end(m: Migration, state: MigrationInfo['state'], on: MigrationInfo['guestRunningOn'], error: { code: string; message: string }, guestState: GuestState = 'running'): void {
    clearTimeout(m.timer);
    if (m.reserved && m.to.guests.get(m.guest.id)?.state === 'migrating-in') m.to.guests.delete(m.guest.id);
    m.reserved = false;
    m.guest.state = guestState;
    if (guestState === 'running') m.guest.migrationId = undefined;
    m.info = { ...m.info, state, phase: undefined, endedAt: new Date().toISOString(), guestRunningOn: on, error };
  }

  #running(m: Migration): boolean {
    return m.info.state === 'running' || m.info.state === 'queued';
  }

  #notePeaks(): void {
    const running = [...this.#migrations.values()].filter((m) => this.#running(m));
    this.peak.overall = Math.max(this.peak.overall, running.length);
    for (const h of this.#hosts.keys()) {
      const into = running.filter((m) => m.to.name === h).length;
      this.peak.perTarget.set(h, Math.max(this.peak.perTarget.get(h) ?? 0, into));
    }
  }

  #status(h: Host): HostStatus {
    const guests = [...h.guests.values()];
    const usedBytes = guests.filter((g) => g.state !== 'migrating-in').reduce((s, g) => s + g.memoryBytes, 0);
    const reservedBytes = guests.filter((g) => g.state === 'migrating-in').reduce((s, g) => s + g.memoryBytes, 0);
    const flights = [...this.#migrations.values()].filter((m) => this.#running(m));
    return {
      name: h.name,
      url: h.url,
      capacityBytes: h.capacityBytes,
      usedBytes,
      reservedBytes,
      freeBytes: h.capacityBytes - usedBytes - reservedBytes,
      maintenance: h.maintenance,
      guests: guests.filter((g) => g.state !== 'migrating-in').length,
      migrationsIn: flights.filter((m) => m.to === h).length,
      migrationsOut: flights.filter((m) => m.from === h).length,
      evacuationId: h.evacuationId,
      ...(h.kinds !== undefined ? { guestKinds: [...h.kinds] } : {}),
      version: 'fake',
    };
  }

  #host(name: string): Host {
    const h = this.#hosts.get(name);
    if (!h) throw new NotFoundError(`no host ${name}`);
    return h;
  }

  async #alive(name: string): Promise<Host> {
    await tick();
    const h = this.#host(name);
    if (h.dead) throw new ConnectFailedError(`cannot connect to ${name}`);
    return h;
  }
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
