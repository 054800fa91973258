/**
 * One guest leaving its host: the source role of a host agent. It connects to the target host's
 * agent, runs the engine (`migrate()`), asks the target what it did if the link breaks after
 * "go", and keeps a {@link MigrationInfo} that the control API reports while it runs and after.
 * Whatever happens, the guest ends in exactly one of three places: still running here (failed,
 * cancelled), on the target (completed; the copy here is destroyed), or paused here with the
 * outcome unknown (indeterminate).
 *
 * A completed migration ends when the engine releases the guest to the target (`onReleased`):
 * the info says `completed` then, with the engine's `totalMs`, while the paused copy here is still
 * checked (`verifying`) and destroyed; `verified` and `verifyMs` follow when that is done. The
 * copy's memory stays reserved here until then.
 */

import { asMigrationError } from '../errors.js';
import { migrate } from '../precopy/migration.js';
import { type MigrateOptions } from '../precopy/migrate-options.js';
import type { SwitchoverCalibration } from '../precopy/switchover-calibration.js';
import type { SwitchoverGate } from '../precopy/switchover-gate.js';
import { DEFAULT_CODEC, type CodecChoice } from '../precopy/codec-choice.js';
import type { MigrationProgress, MigrationReport } from '../precopy/report.js';
import type { TlsConnectOptions } from '../transport/tls.js';
import { connectToAgent } from './agent-client.js';
import type { MigrateGuestRequest, MigrationInfo } from './control-types.js';
import { isSourceDomain, type GuestRegistry, type HostGuest } from './guest-registry.js';
import type { HostMetrics } from './host-metrics.js';

/** What an outgoing migration needs from its host. */
export interface OutgoingContext {
  hostName: string;
  key: Uint8Array | undefined;
  tls: TlsConnectOptions | undefined;
  registry: GuestRegistry;
  metrics: HostMetrics;
  /** Engine options of the host, under those of the request. */
  engine: MigrateOptions;
  /** The host's switchover gate: one of its guests paused at a time, with the link to itself. */
  switchoverGate: SwitchoverGate;
  /** The host's pause calibrations, one per codec. */
  calibration: (codec: CodecChoice) => SwitchoverCalibration;
  /** Told of the report of every migration that ran the engine, whatever its outcome (the pause estimates learn from it). */
  observe?(guest: HostGuest, report: MigrationReport): void;
  /** Takes the guest back from whatever else may touch it (an inspection, the target agent's queries). */
  prepare(guest: HostGuest): Promise<void>;
}

/** A guest being migrated away, and then what became of it. */
export class OutgoingMigration {
  readonly info: MigrationInfo;
  /**
   * Settles once everything has ended: the guest is where the info says and, after a switchover,
   * the paused copy here was checked and destroyed. Never rejects.
   */
  readonly done: Promise<void>;
  /** Settles once the outcome is known: at the release of a completed migration, else with {@link done}. */
  readonly ended: Promise<void>;
  private readonly controller = new AbortController();
  private lastPhase = '';
  private released = false;
  private finished = false;
  private markEnded!: () => void;

  constructor(
    private readonly ctx: OutgoingContext,
    guest: HostGuest,
    private readonly request: MigrateGuestRequest,
    private readonly url: string,
    migrationId: string,
  ) {
    this.info = {
      migrationId,
      guestId: guest.id,
      guestName: guest.name,
      from: ctx.hostName,
      to: request.to,
      state: 'queued',
      startedAt: new Date().toISOString(),
      direction: 'out',
      guestRunningOn: 'source',
    };
    guest.state = 'migrating-out';
    guest.migrationId = migrationId;
    this.ended = new Promise((resolve) => (this.markEnded = resolve));
    // Only the run holds the guest: the history of ended migrations must not keep guests alive.
    this.done = this.run(guest);
  }

  /** True until its outcome is known (a completed one: until the guest was released to the target). */
  get running(): boolean {
    return this.info.endedAt === undefined;
  }

  /** True until it has ended and, after a switchover, the paused copy here is checked and destroyed. */
  get busy(): boolean {
    return !this.finished;
  }

  /**
   * Cancels it: honoured until "go" is sent; after that the migration completes (or is resolved)
   * by the switchover rules. Returns false if it had already ended.
   */
  cancel(): boolean {
    if (!this.running) return false;
    this.controller.abort(new Error('cancelled through the control API'));
    return true;
  }

  private async run(guest: HostGuest): Promise<void> {
    const started = performance.now();
    let report: MigrationReport | undefined;
    try {
      await this.ctx.prepare(guest);
      this.info.state = 'running';
      this.enter('connecting');
      report = await this.migrate(guest);
    } catch (err) {
      // Nothing was handed over (connecting or authenticating failed): the guest runs here.
      this.info.error = asMigrationError(err, 'ERR_CONNECT_FAILED').toJSON();
    }
    this.finish(guest, report, performance.now() - started);
    this.finished = true;
    this.markEnded();
  }

  private async migrate(guest: HostGuest): Promise<MigrationReport> {
    const domain = guest.domain;
    // Checked before this migration was created; here for the type.
    if (!isSourceDomain(domain)) throw new Error(`guest ${guest.id} cannot be migrated out by its backend`);
    const connect = { key: this.ctx.key, tls: this.ctx.tls };
    const signal = this.controller.signal;
    const transport = await connectToAgent(this.url, connect);
    const options: MigrateOptions = {
      ...this.ctx.engine,
      migrationId: this.info.migrationId,
      guest: { id: guest.id, priority: guest.priority },
      targetName: this.request.to,
      signal,
      onProgress: (p) => this.progress(p),
      onReleased: (report) => this.release(guest, report),
    };
    if (this.request.downtimeBudgetMs !== undefined) options.downtimeBudgetMs = this.request.downtimeBudgetMs;
    if (this.request.maxBandwidthBytesPerSec !== undefined) options.maxBandwidthBytesPerSec = this.request.maxBandwidthBytesPerSec;
    if (this.request.codec !== undefined) options.codec = this.request.codec;
    // The host's calibration for the codec, unless its engine options name one: each pause it
    // predicts draws on the switchovers it made before.
    options.calibration ??= this.ctx.calibration(options.codec ?? DEFAULT_CODEC);
    options.switchoverGate ??= this.ctx.switchoverGate;
    return migrate(domain, transport, options);
  }

  private progress(p: MigrationProgress): void {
    this.info.bytesWire = p.bytesWire;
    if (this.released) {
      // The outcome is known: only the phase of the check still changes.
      if (p.phase === 'verify') this.enter(p.phase);
      return;
    }
    this.info.remainingBytes = p.remainingBytes;
    if (p.phase !== 'done') this.enter(p.phase);
  }

  /**
   * The guest runs on the target and was released here: the migration is completed, and the
   * window of whoever waits for it is free. The paused copy keeps its memory reserved until
   * {@link finish}, after its check.
   */
  private release(guest: HostGuest, report: Readonly<MigrationReport>): void {
    const info = this.info;
    this.released = true;
    info.state = 'completed';
    info.guestRunningOn = 'target';
    info.endedAt = new Date().toISOString();
    info.totalMs = report.totalMs;
    info.remainingBytes = undefined;
    info.verifying = true;
    if (report.downtimeMs !== undefined) info.downtimeMs = report.downtimeMs;
    guest.migrationId = undefined;
    this.ctx.registry.remove(guest);
    try {
      this.ctx.registry.reserve(this.copyKey, guest.memoryBytes, `the paused copy of guest "${guest.name}"`);
    } catch {
      // Only an overcommitted host lacks the room the guest just left: nothing to hold then.
    }
    // Counted now; the `verify` phase that follows is published with the state `completed`.
    this.ctx.metrics.ended('out', 'completed', info.downtimeMs, info.bytesWire ?? 0);
    this.markEnded();
  }

  /** The registry key of the paused copy's memory, from its release to its destruction. */
  private get copyKey(): string {
    return `out:${this.info.migrationId}`;
  }

  /** Records a new phase, and tells the watchers once per phase. */
  private enter(phase: string): void {
    if (phase === this.lastPhase) return;
    this.lastPhase = phase;
    this.info.phase = phase;
    this.ctx.metrics.publish(this.event(phase));
  }

  /**
   * Puts the guest where the report says and records the outcome; after a release, only adds
   * what the check of the paused copy found.
   */
  private finish(guest: HostGuest, report: MigrationReport | undefined, wallMs: number): void {
    const info = this.info;
    info.phase = 'done';
    if (report !== undefined) {
      this.ctx.observe?.(guest, report);
      info.bytesWire = report.bytesWire;
    }
    if (this.released && report !== undefined) {
      info.verifying = false;
      info.verified = report.verified;
      if (report.verifyMs !== undefined) info.verifyMs = report.verifyMs;
      if (report.sourceCleanupError !== undefined) info.error ??= report.sourceCleanupError;
      this.ctx.registry.unreserve(this.copyKey);
      this.ctx.metrics.publish(this.event('done'));
      return;
    }
    info.endedAt = new Date().toISOString();
    // The engine's own time when it ran (a completed one ends at the release); else the wall clock.
    info.totalMs = report?.totalMs ?? Math.round(wallMs * 1000) / 1000;
    info.remainingBytes = undefined;
    if (report === undefined) {
      info.state = this.controller.signal.aborted ? 'cancelled' : 'failed';
      if (info.state === 'cancelled') info.error ??= { code: 'ERR_CANCELLED', message: 'migration cancelled before it connected' };
    } else {
      info.state = report.outcome;
      info.guestRunningOn = report.guestRunningOn;
      if (report.downtimeMs !== undefined) info.downtimeMs = report.downtimeMs;
      if (report.outcome === 'completed') {
        info.verified = report.verified;
        if (report.verifyMs !== undefined) info.verifyMs = report.verifyMs;
      }
      if (report.error) info.error = { code: report.error.peerCode ?? report.error.code, message: report.error.message };
    }
    guest.migrationId = undefined;
    if (info.state === 'completed') {
      this.ctx.registry.remove(guest);
    } else if (info.state === 'indeterminate') {
      guest.state = 'paused';
    } else {
      guest.state = 'running';
    }
    this.ctx.metrics.ended('out', info.state, info.state === 'completed' ? info.downtimeMs : undefined, info.bytesWire ?? 0);
    this.ctx.metrics.publish(this.event('done'));
  }

  private event(phase: string): Parameters<HostMetrics['publish']>[0] {
    const info = this.info;
    const event: Parameters<HostMetrics['publish']>[0] = {
      migrationId: info.migrationId,
      direction: 'out',
      guestId: info.guestId,
      guestName: info.guestName,
      from: info.from,
      to: info.to,
      phase,
      state: info.state,
    };
    if (info.downtimeMs !== undefined) event.downtimeMs = info.downtimeMs;
    if (info.bytesWire !== undefined) event.bytesWire = info.bytesWire;
    if (info.error !== undefined) event.error = info.error;
    return event;
  }
}
