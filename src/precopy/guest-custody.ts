/**
 * Custody of the guest on the source: the rules that decide where it runs when a migration ends.
 * Until "go" leaves, a failure resumes it here and tells the target ({@link GuestCustody.undo});
 * once the target confirms, the guest is released here, then the copy is verified and retired
 * ({@link GuestCustody.finishOnTarget});
 * if the link broke after "go", the target is asked what it did, and only an answer moves the
 * guest ({@link GuestCustody.resolveAfterGo}). The engine decides when; this decides what.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { SourceDomain } from '../domain/backend.js';
import { asMigrationError, CancelledError, MigrationError, PeerAbortedError, TimeoutError } from '../errors.js';
import type { PageDigest } from '../protocol/page-digest.js';
import type { StatusRecord } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { withDeadline } from '../util/deadline.js';
import { roundTo } from '../util/stats.js';
import { abortPeer } from './abort-peer.js';
import { PausedCopyCheck } from './copy-verification.js';
import type { DirtyTracker } from './dirty-tracker.js';
import { DEFAULT_RESOLVE_TIMEOUT_MS, RESOLVE_RETRY_MS, type MigrateOptions } from './migrate-options.js';
import type { MigrationPhase, MigrationReport } from './report.js';

/** What custody needs of the migration it serves. */
export interface CustodyContext {
  readonly id: string;
  readonly domain: SourceDomain;
  readonly transport: Transport;
  readonly options: MigrateOptions;
  readonly report: MigrationReport;
  readonly dirty: DirtyTracker;
  /** The hashes of what was sent, page by page (the `complete` digest's). */
  readonly sent: PageDigest;
  /** When the migration started (`performance.now()`): the start of `totalMs`. */
  readonly start: number;
  setPhase(phase: MigrationPhase): void;
}

export class GuestCustody {
  /** Whether the engine paused the guest here (and it has not been resumed since). */
  paused = false;
  /** Whether the dirty log runs and the throttle may be on: until {@link releaseGuest}. */
  holdingGuest = false;
  /**
   * When the guest ran on the target and was released here (`performance.now()`): the end of the
   * migration's `totalMs`. What follows, the check of the paused copy and its destruction, is
   * bookkeeping that no longer decides where the guest runs.
   */
  releasedAt: number | undefined;
  private readonly check: PausedCopyCheck;

  constructor(private readonly c: CustodyContext) {
    this.check = new PausedCopyCheck(c.domain, c.sent);
  }

  /** The guest runs on the target: release it here, then verify and retire the paused copy. */
  async finishOnTarget(): Promise<void> {
    this.c.report.outcome = 'completed';
    this.c.report.guestRunningOn = 'target';
    // The guest runs on the target whatever happens below; a failure here is only reported.
    this.releaseGuest();
    this.releasedAt = performance.now();
    this.c.report.totalMs = roundTo(this.releasedAt - this.c.start, 3);
    try {
      this.c.options.onReleased?.(this.c.report);
    } catch {
      // An observer that throws must not change what happens to the paused copy.
    }
    try {
      if ((this.c.options.verify ?? true) && this.c.report.targetDigest !== undefined) {
        this.c.setPhase('verify');
        // Not earlier, at "go": the threads would compete for the cores with the target's resume,
        // lengthening the pause to save the few milliseconds the go/resumed exchange takes.
        const check = await this.check.start();
        this.c.report.verifyMs = roundTo(check.ms, 3);
        this.c.report.sourceDigest = check.digest;
        this.c.report.verified = check.digest === this.c.report.targetDigest;
        if (!this.c.report.verified) this.c.report.missedPages = check.missedPages;
      }
      if (this.c.options.destroySource ?? true) await this.c.domain.destroy();
    } catch (err) {
      const error = asMigrationError(err);
      this.c.report.sourceCleanupError = {
        code: error.code,
        message: `the guest runs on the target, but retiring the paused copy here failed: ${error.message}`,
      };
    }
  }
  /**
   * The link failed after "go": the target may or may not have resumed. Ask it over a new
   * connection until it says, keeping the copy here paused meanwhile.
   */
  async resolveAfterGo(linkError: MigrationError, pauseStart: number): Promise<void> {
    const ask = this.c.options.resolveOutcome ?? this.c.transport.resolveOutcome;
    const deadline = performance.now() + (this.c.options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS);
    let lastAnswer = 'no answer';
    const signal = this.c.options.signal;
    while (ask && performance.now() < deadline && !signal?.aborted) {
      let state: StatusRecord['state'] | undefined;
      try {
        // An agent that takes the question and never answers must not keep this copy paused for ever.
        state = await withDeadline(ask(this.c.id), deadline - performance.now(), () => new TimeoutError('the target agent did not answer before the deadline'));
      } catch (err) {
        lastAnswer = asMigrationError(err, 'ERR_CONNECT_FAILED').message;
      }
      if (state === 'running') {
        this.c.report.resolvedAfterLinkFailure = linkError.toJSON();
        this.c.report.downtimeUpperBoundMs = roundTo(performance.now() - pauseStart, 3);
        await this.finishOnTarget();
        return;
      }
      if (state === 'discarded' || state === 'unknown') {
        // The target destroyed its copy (or, restarted, holds none): this one is the only one.
        this.c.report.resolvedAfterLinkFailure = linkError.toJSON();
        await this.undo(
          new MigrationError(linkError.code, `${linkError.message}; the target then reported the migration ${state}, so the guest resumed here`),
        );
        return;
      }
      if (state !== undefined) lastAnswer = `the target still reports "${state}"`;
      await sleep(RESOLVE_RETRY_MS, undefined, { signal }).catch(() => undefined);
    }
    if (signal?.aborted) lastAnswer += '; asking was given up when the migration was cancelled';
    // The copy here stays paused, but whoever resumes it by hand must get it at full speed.
    this.releaseGuest();
    this.c.report.outcome = 'indeterminate';
    this.c.report.guestRunningOn = 'unknown';
    this.c.report.error = {
      code: 'ERR_INDETERMINATE',
      message:
        `the link failed after "go" (${linkError.code}: ${linkError.message}) and the target could not be asked ` +
        `(${ask ? lastAnswer : 'no way to ask it was configured'}). The guest is kept paused here and may be running on the target. ` +
        `Ask the target agent about migration ${this.c.id} ("livemig status --id ${this.c.id}"): if it is running there, ` +
        `destroy this paused copy; if it was discarded or is unknown there, resume this one.`,
    };
  }
  /**
   * Undo: resume the guest here, tell the target, and say why in the report. Resuming comes
   * first: before "go" the target never resumes its copy, so the guest need not stay paused
   * while a failing link takes its time to deliver the abort.
   */
  async undo(error: MigrationError, resumeError?: MigrationError): Promise<void> {
    this.c.report.outcome = error instanceof CancelledError ? 'cancelled' : 'failed';
    // A target's refusal keeps its own code beside ERR_PEER_ABORTED, for programs to act on.
    this.c.report.error = error instanceof PeerAbortedError ? { ...error.toJSON(), peerCode: error.peerCode } : error.toJSON();
    const failedToResume = resumeError ?? (await this.resumeHere());
    this.c.report.guestRunningOn = failedToResume ? 'none' : 'source';
    if (failedToResume) {
      this.c.report.error = {
        code: error.code,
        message: `${error.message}; resuming the guest on the source then failed too: ${failedToResume.message}`,
      };
    }
    // Best effort: the target discards its copy whether or not the abort arrives.
    await abortPeer(this.c.transport, error, error.code !== 'ERR_PEER_ABORTED');
  }
  /**
   * Resumes the guest here if it is paused, throttle lifted first; returns why resuming failed,
   * if it did. A throttle or dirty log that cannot be ended does not keep the guest paused: that
   * is reported beside the outcome.
   */
  async resumeHere(): Promise<MigrationError | undefined> {
    this.check.cancel();
    this.releaseGuest();
    if (!this.paused) return undefined;
    try {
      await this.c.domain.resume();
      this.paused = false;
      return undefined;
    } catch (err) {
      return asMigrationError(err);
    }
  }
  /**
   * Lifts the throttle and ends the dirty log, once whatever the outcome (the backend contract),
   * each tried even if the other fails. A failure changes no outcome: the report says what it was.
   */
  releaseGuest(): void {
    if (!this.holdingGuest) return;
    this.holdingGuest = false;
    for (const step of [() => this.c.domain.setThrottle(0), () => this.c.dirty.stop()]) {
      try {
        step();
      } catch (err) {
        const error = asMigrationError(err);
        this.c.report.sourceCleanupError ??= { code: error.code, message: `lifting the throttle or ending the dirty log here failed: ${error.message}` };
      }
    }
  }
}
