/**
 * What a host tells those who watch it: Prometheus metrics (`GET /metrics`, through prom-client,
 * on a registry of the host's own), `diagnostics_channel` events for programs that embed the
 * library, and one structured log line per migration phase.
 */

import diagnostics_channel from 'node:diagnostics_channel';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ProcessUsage } from './control-types.js';

/**
 * The `diagnostics_channel` a host publishes migration events on ({@link MigrationEvent}): each
 * phase a migration enters, in or out, and how it ended.
 */
export const MIGRATION_CHANNEL = 'livemig:migration';

const channel = diagnostics_channel.channel(MIGRATION_CHANNEL);

/** One migration event: published on {@link MIGRATION_CHANNEL} and logged. */
export interface MigrationEvent {
  /** ISO 8601. */
  time: string;
  /** The host that saw it. */
  host: string;
  migrationId: string;
  direction: 'in' | 'out';
  guestId?: string;
  guestName: string;
  /** Source and target host (names or URLs, as known). */
  from?: string;
  to?: string;
  /** The phase entered: the engine's (handshake, precopy, stop-and-copy, switchover, verify, done) or `receiving`, `resumed`, `discarded`. */
  phase: string;
  /** How it stands after the event. */
  state: string;
  downtimeMs?: number;
  bytesWire?: number;
  error?: { code: string; message: string };
}

/** What the gauges read from the host at each scrape. */
export interface HostGaugeSource {
  capacityBytes(): number;
  usedBytes(): number;
  reservedBytes(): number;
  freeBytes(): number;
  guests(): number;
  maintenance(): boolean;
  migrationsInFlight(direction: 'in' | 'out'): number;
}

/** Buckets of the downtime histogram, in seconds: 1 ms to 5 s. */
const DOWNTIME_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** A host's metrics and event outlets. */
export class HostMetrics {
  readonly registry = new Registry();
  private readonly migrations: Counter<'direction' | 'outcome'>;
  private readonly downtime: Histogram;
  private readonly bytes: Counter<'direction'>;

  constructor(
    private readonly hostName: string,
    source: HostGaugeSource,
    private readonly log: ((entry: MigrationEvent) => void) | undefined,
  ) {
    const registers = [this.registry];
    this.migrations = new Counter({
      name: 'livemig_migrations_total',
      help: 'Migrations ended, by direction (in, out) and outcome (completed, failed, cancelled, indeterminate; discarded for incoming copies)',
      labelNames: ['direction', 'outcome'],
      registers,
    });
    this.downtime = new Histogram({
      name: 'livemig_migration_downtime_seconds',
      help: 'Pause of each completed outgoing migration, from pause to the target running',
      buckets: DOWNTIME_BUCKETS_S,
      registers,
    });
    this.bytes = new Counter({
      name: 'livemig_migration_bytes_total',
      help: 'Migration bytes on the wire: sent (direction out) and received (direction in)',
      labelNames: ['direction'],
      registers,
    });
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({ name, help, registers, collect() { this.set(read()); } });
    };
    gauge('livemig_memory_capacity_bytes', 'Memory this host may give to guests', () => source.capacityBytes());
    gauge('livemig_memory_used_bytes', 'Memory held by the guests on this host', () => source.usedBytes());
    gauge('livemig_memory_reserved_bytes', 'Memory reserved by incoming migrations and starting guests', () => source.reservedBytes());
    gauge('livemig_memory_free_bytes', 'Capacity less used and reserved memory', () => source.freeBytes());
    gauge('livemig_guests', 'Guests on this host', () => source.guests());
    gauge('livemig_maintenance', '1 while the host is in maintenance', () => (source.maintenance() ? 1 : 0));
    new Gauge({
      name: 'livemig_migrations_in_flight',
      help: 'Migrations under way, by direction',
      labelNames: ['direction'],
      registers,
      collect() {
        this.set({ direction: 'in' }, source.migrationsInFlight('in'));
        this.set({ direction: 'out' }, source.migrationsInFlight('out'));
      },
    });
    new Gauge({
      name: 'livemig_process_active_resources',
      help: 'Handles and requests keeping the host process alive (process.getActiveResourcesInfo()), by type',
      labelNames: ['type'],
      registers,
      collect() {
        this.reset();
        for (const [type, count] of Object.entries(activeResources())) this.set({ type }, count);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Counts a migration that ended. */
  ended(direction: 'in' | 'out', outcome: string, downtimeMs: number | undefined, bytesWire: number): void {
    this.migrations.inc({ direction, outcome });
    if (bytesWire > 0) this.bytes.inc({ direction }, bytesWire);
    if (downtimeMs !== undefined) this.downtime.observe(downtimeMs / 1000);
  }

  /** Publishes `event` on the channel and logs it; neither a subscriber nor the log can throw into the host. */
  publish(event: Omit<MigrationEvent, 'time' | 'host'>): void {
    const full: MigrationEvent = { time: new Date().toISOString(), host: this.hostName, ...event };
    try {
      if (channel.hasSubscribers) channel.publish(full);
    } catch {
      // A subscriber's failure is its own.
    }
    try {
      this.log?.(full);
    } catch {
      // Nor may a failing log change what happens to a migration.
    }
  }

  /** The Prometheus text of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The content type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/** `process.getActiveResourcesInfo()`, counted by kind. */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

/** What this process holds now. */
export function processUsage(): ProcessUsage {
  const memory = process.memoryUsage();
  return { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, activeResources: activeResources() };
}
