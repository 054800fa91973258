/**
 * Shapes of the pool library beyond the control API's (src/agent/control-types.ts), which they
 * extend with optional detail only, so that a report stays a valid `EvacuationInfo`.
 */

import type { EvacuatedGuest, EvacuationInfo, MigrationInfo, PlannedMove } from '../agent/control-types.js';
import type { MigrationErrorCode } from '../errors.js';

/** One guest's place in a plan; an unplaced guest carries the code of its reason. */
export interface PlanEntry extends PlannedMove {
  /** Why it cannot be placed, as a code: `ERR_INSUFFICIENT_CAPACITY`, `ERR_HOST_IN_MAINTENANCE`, `ERR_UNKNOWN_BACKEND`, `ERR_CONFLICT`. */
  code?: MigrationErrorCode;
}

/** A target host as the plan saw it. */
export interface PlanTarget {
  name: string;
  /** Free memory the plan started from: the host's free bytes less reservations it has not yet counted. */
  freeBytes: number;
  /** Free memory left once the plan's moves land. */
  leftBytes: number;
}

/** Where every guest of a host would go. */
export interface EvacuationPlan {
  source: string;
  /** Every guest to move, in the order they would start; unplaced ones have a `reason`. */
  moves: PlanEntry[];
  targets: PlanTarget[];
  /** True when every guest has a target. */
  fits: boolean;
}

/** What an evacuation ends with. */
export interface EvacuationReport extends EvacuationInfo {
  plan: PlanEntry[];
  /**
   * True when the plan did not fit and nothing was moved (no `moveWhatFits`); the unplaced guests
   * say why, the others are `pending`.
   */
  refused: boolean;
}

/** What an evacuation tells its caller as it goes: enough for one progress line per guest. */
export type EvacuationEvent =
  | { type: 'planned'; evacuationId: string; plan: EvacuationPlan }
  | { type: 'started'; guestId: string; guestName: string; migrationId: string; to: string; attempt: number }
  | { type: 'progress'; migration: MigrationInfo }
  | { type: 'retrying'; guestId: string; guestName: string; failedOn: string; error: { code: string; message: string } }
  | { type: 'replanned'; plan: EvacuationPlan }
  | { type: 'finished'; guest: EvacuatedGuest };
