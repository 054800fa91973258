/**
 * An evacuation's ledger: its id, its plan and every migration it started, with guest and
 * target, kept in a JSON file rewritten atomically after each change. The host agents remember
 * each migration by id, so a coordinator that dies leaves nothing ambiguous: a rerun given the
 * same ledger claims the host with the same evacuation id, asks the source about each recorded
 * migration, and plans what is still there.
 *
 * A migration is recorded once the source has given it an id. Should the coordinator die between
 * the two, the source still lists the guest as `migrating-out` with that id, and the rerun adopts
 * it from there.
 */

import { randomUUID } from 'node:crypto';

import type { EvacuatedGuest, EvacuationInfo, MigrationState } from '../agent/control-types.js';
import { InvalidArgumentError } from '../errors.js';
import { readJsonFile, writeJsonAtomically } from './json-file.js';
import type { PlanEntry } from './pool-types.js';

/** Version of the ledger file's shape. */
export const LEDGER_VERSION = 1;

/** One migration an evacuation started or adopted. */
export interface LedgerMigration {
  migrationId: string;
  guestId: string;
  guestName: string;
  /** Target host name. */
  to: string;
  /** 1 for the first try, 2 for the retry elsewhere; 0 for one adopted that this evacuation did not start. */
  attempt: number;
  startedAt: string;
  /** Its last known state; absent while it may still run. */
  state?: MigrationState;
}

/** The ledger file. */
export interface LedgerFile {
  version: typeof LEDGER_VERSION;
  evacuationId: string;
  source: string;
  startedAt: string;
  updatedAt: string;
  state: EvacuationInfo['state'];
  plan: PlanEntry[];
  migrations: LedgerMigration[];
  /** Outcomes per guest, once it ended. */
  guests?: EvacuatedGuest[];
}

const TERMINAL: ReadonlySet<MigrationState> = new Set(['completed', 'failed', 'cancelled', 'indeterminate']);

/** Whether a migration in this state has ended. */
export function isTerminal(state: MigrationState | undefined): boolean {
  return state !== undefined && TERMINAL.has(state);
}

/** The ledger of one evacuation; in memory only when no path is given. */
export class EvacuationLedger {
  readonly path: string | undefined;
  readonly data: LedgerFile;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(path: string | undefined, data: LedgerFile) {
    this.path = path;
    this.data = data;
  }

  /**
   * Reads the ledger at `path` if there is one (a rerun), or starts a new one.
   * @throws InvalidArgumentError if the file is not a ledger of an evacuation of `source`.
   */
  static async open(path: string | undefined, source: string, evacuationId?: string): Promise<EvacuationLedger> {
    const raw = path === undefined ? undefined : await readJsonFile(path, 'evacuation ledger');
    if (raw !== undefined) return new EvacuationLedger(path, checkLedger(raw, path!, source));
    const now = new Date().toISOString();
    const data: LedgerFile = {
      version: LEDGER_VERSION,
      evacuationId: evacuationId ?? randomUUID(),
      source,
      startedAt: now,
      updatedAt: now,
      state: 'planning',
      plan: [],
      migrations: [],
    };
    // Written from its first record on: an evacuation refused its claim leaves no ledger behind.
    return new EvacuationLedger(path, data);
  }

  /** Migrations recorded without an end. */
  unsettled(): LedgerMigration[] {
    return this.data.migrations.filter((m) => !isTerminal(m.state));
  }

  recordPlan(plan: PlanEntry[], state: EvacuationInfo['state']): Promise<void> {
    this.data.plan = plan;
    this.data.state = state;
    return this.#flush();
  }

  recordStart(migration: LedgerMigration): Promise<void> {
    this.data.migrations.push(migration);
    return this.#flush();
  }

  recordEnd(migrationId: string, state: MigrationState): Promise<void> {
    const entry = this.data.migrations.find((m) => m.migrationId === migrationId);
    if (entry) entry.state = state;
    return this.#flush();
  }

  recordFinish(state: EvacuationInfo['state'], guests: EvacuatedGuest[]): Promise<void> {
    this.data.state = state;
    this.data.guests = guests;
    return this.#flush();
  }

  /** Writes the ledger as it is now, after any write already under way. */
  #flush(): Promise<void> {
    if (this.path === undefined) return Promise.resolve();
    const path = this.path;
    const next = this.#queue.then(() => {
      this.data.updatedAt = new Date().toISOString();
      return writeJsonAtomically(path, this.data);
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }
}

function checkLedger(raw: unknown, path: string, source: string): LedgerFile {
  const data = raw as Partial<LedgerFile> | null;
  if (typeof data !== 'object' || data === null || data.version !== LEDGER_VERSION || typeof data.evacuationId !== 'string' || !Array.isArray(data.migrations)) {
    throw new InvalidArgumentError(`${path} is not an evacuation ledger of version ${LEDGER_VERSION}`);
  }
  if (data.source !== source) {
    throw new InvalidArgumentError(`the ledger ${path} records an evacuation of ${String(data.source)}, not of ${source}; give another ledger path`);
  }
  for (const m of data.migrations) {
    if (typeof m?.migrationId !== 'string' || typeof m.guestId !== 'string' || typeof m.to !== 'string') {
      throw new InvalidArgumentError(`the ledger ${path} has a migration without migrationId, guestId or to`);
    }
  }
  return { plan: [], state: 'running', startedAt: '', updatedAt: '', ...data } as LedgerFile;
}
