/**
 * Switchover priority among the migrations leaving one host. While one of them is paused
 * (stop-and-copy until its guest runs again somewhere), the others hand no page batch to the
 * link, so the pause has the link and the host's CPU to itself; and only one is paused at a time,
 * so two pauses never share them. A host agent shares one gate across its outgoing migrations
 * (`MigrateOptions.switchoverGate`); a migration without one behaves as if alone.
 *
 * The gate only knows who holds the pause. Each migration waits through its own
 * {@link GateSeat}, which wakes when the pause is released, when told to (a cancel), and every
 * GATE_RECHECK_MS, so that its own reasons to stop waiting (a cancel, a dead link, a deadline)
 * end any wait promptly, with that reason, however long the holder keeps the pause.
 */

/** How often a waiting migration looks at its own reasons to stop waiting, in milliseconds. */
export const GATE_RECHECK_MS = 20;

/** The pause of one host's outgoing migrations, held by at most one of them at a time. */
export class SwitchoverGate {
  private holderId: string | undefined;
  private readonly wakers = new Set<() => void>();

  /** The migration whose guest is paused now, if any. */
  get holder(): string | undefined {
    return this.holderId;
  }

  /** Takes the pause for `migrationId` if nobody holds it (or it already does); true if held. */
  tryHold(migrationId: string): boolean {
    if (this.holderId !== undefined && this.holderId !== migrationId) return false;
    this.holderId = migrationId;
    return true;
  }

  /** Gives the pause back if `migrationId` holds it; wakes every waiter. Idempotent. */
  release(migrationId: string): void {
    if (this.holderId !== migrationId) return;
    this.holderId = undefined;
    this.wake();
  }

  /** Whether a migration other than `migrationId` holds the pause. */
  heldByOther(migrationId: string): boolean {
    return this.holderId !== undefined && this.holderId !== migrationId;
  }

  /** Resolves at the next release or {@link wake}, or after `maxMs`, whichever comes first. */
  changed(maxMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, maxMs);
      this.wakers.add(done);
    });
  }

  /** Wakes every waiter, so that each looks at its reasons to stop waiting again. */
  wake(): void {
    for (const done of [...this.wakers]) done();
  }
}

/**
 * One migration's place at a {@link SwitchoverGate}: it holds the pause for the migration, holds
 * its page batches back while another is paused, and counts the time they were held.
 */
export class GateSeat {
  /** Milliseconds during which at least one of this migration's batches was held back. */
  heldMs = 0;
  private waiting = 0;
  private waitingSince = 0;

  /**
   * @param gate the host's gate
   * @param migrationId this migration
   * @param stopReason why this migration must not wait any more (cancelled, link gone, a
   *   deadline passed), once it must not; asked at each wake, and thrown
   */
  constructor(
    private readonly gate: SwitchoverGate,
    private readonly migrationId: string,
    private readonly stopReason: () => Error | undefined,
  ) {}

  /** Whether another migration of the host is paused now. */
  get otherPaused(): boolean {
    return this.gate.heldByOther(this.migrationId);
  }

  /** Takes the pause if it is free; true if this migration now holds it. */
  tryHold(): boolean {
    return this.gate.tryHold(this.migrationId);
  }

  /** Gives the pause back, if held. Idempotent. */
  release(): void {
    this.gate.release(this.migrationId);
  }

  /** Resolves once no other migration is paused; rejects with `stopReason`'s answer once there is one. */
  async whileOtherPaused(): Promise<void> {
    while (this.otherPaused) {
      const reason = this.stopReason();
      if (reason) throw reason;
      await this.gate.changed(GATE_RECHECK_MS);
    }
  }

  /**
   * Holds one page batch back while another migration is paused (a pacer: the page senders call
   * it before each batch goes to the link), or rejects as {@link whileOtherPaused}. Counts the
   * time held, once however many batches wait.
   */
  async take(): Promise<void> {
    if (!this.otherPaused) return;
    if (this.waiting++ === 0) this.waitingSince = performance.now();
    try {
      await this.whileOtherPaused();
    } finally {
      if (--this.waiting === 0) this.heldMs += performance.now() - this.waitingSince;
    }
  }

  /** Wakes this migration's waits (and the host's other ones) to ask `stopReason` again. */
  interrupt(): void {
    this.gate.wake();
  }
}
