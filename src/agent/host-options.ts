/** What a host agent can be told (`HostAgent.start`), beside the options of its target agent. */

import type { MigrateOptions } from '../precopy/migrate-options.js';
import type { TlsConnectOptions } from '../transport/tls.js';
import type { TargetAgentOptions } from './agent-options.js';
import type { EvacuateRequest, EvacuationInfo } from './control-types.js';
import type { GuestAdopter, GuestLauncher } from './guest-launcher.js';
import type { MigrationEvent } from './host-metrics.js';

/** Finished migrations a host remembers for `GET /v1/migrations/:id`, in and out together. */
export const DEFAULT_MIGRATION_HISTORY = 1000;

/** How long `close()` waits for outgoing migrations to end once cancelled, in milliseconds. */
export const HOST_CLOSE_GRACE_MS = 15_000;

/** Runs an evacuation of `host` (the pool's coordinator); see `POST /v1/host/evacuate`. */
export type EvacuateHook<H> = (request: EvacuateRequest, host: H) => Promise<EvacuationInfo>;

/** Reports an evacuation by id; `undefined` if unknown. See `GET /v1/evacuations/:id`. */
export type EvacuationStatusHook<H> = (evacuationId: string, host: H) => Promise<EvacuationInfo | undefined>;

/** Cancels an evacuation by id; `undefined` if unknown. See `DELETE /v1/evacuations/:id`. */
export type EvacuationCancelHook<H> = (evacuationId: string, host: H) => Promise<EvacuationInfo | undefined>;

/** Options of `HostAgent.start`. */
export interface HostAgentOptions<H = unknown> extends Omit<TargetAgentOptions, 'admit' | 'onHttpRequest'> {
  /** The host's name in its pool and in every report. @default the machine's host name */
  name?: string;
  /**
   * Memory this host may give to guests, in bytes: guests running here and incoming migrations
   * (reserved from their `hello`) together never exceed it.
   * @default half of the machine's memory (`os.totalmem() / 2`)
   */
  capacityBytes?: number;
  /** Start in maintenance: no new guests, no incoming migrations. @default false */
  maintenance?: boolean;
  /** How guests of each kind are started. @default the simulated guest (`sim`) only */
  launchers?: Map<string, GuestLauncher>;
  /**
   * How guests of each kind that arrived here are made ready to move on, for kinds whose target
   * domain cannot be migrated out as it is (QEMU: `adoptQemuGuest`). Give the matching target
   * backend in `backends`. @default none: the simulated guest needs none
   */
  adopters?: Map<string, GuestAdopter>;
  /** Engine options of the migrations this host sends, under those each request sets. @default the engine's */
  engine?: MigrateOptions;
  /**
   * Raw bytes per second this host expects to migrate at, for its guests' pause estimates until
   * its own migrations have measured the link. @default the engine's `maxBandwidthBytesPerSec`, if any
   */
  linkBytesPerSec?: number;
  /** TLS trust for connecting to `wss://` targets. @default the system's CAs */
  connectTls?: TlsConnectOptions;
  /**
   * Turns a target host's name (in a migrate request) into its URL; without it, or when it
   * answers `undefined`, a target must be given as a URL.
   */
  resolveHost?: (name: string) => string | undefined;
  /** Runs `POST /v1/host/evacuate`. @default none: the route answers 501 */
  onEvacuate?: EvacuateHook<H>;
  /** Answers `GET /v1/evacuations/:id`. @default none: the route answers 501 */
  onEvacuationStatus?: EvacuationStatusHook<H>;
  /** Answers `DELETE /v1/evacuations/:id`. @default none: the route answers 501 */
  onEvacuationCancel?: EvacuationCancelHook<H>;
  /** Receives one structured entry per migration phase, in and out (the CLI prints each as a JSON line). */
  log?: (entry: MigrationEvent) => void;
  /** @default DEFAULT_MAX_CONTROL_BODY_BYTES (64 KiB) */
  maxControlBodyBytes?: number;
  /** How far a signed request's clock may be off, in milliseconds. @default DEFAULT_CONTROL_CLOCK_SKEW_MS (60 s) */
  clockSkewMs?: number;
  /** @default DEFAULT_MIGRATION_HISTORY */
  migrationHistory?: number;
}
