/**
 * Planning an evacuation: where each guest of a host goes, decided up front from the targets'
 * free memory. Pure functions; the coordinator feeds them what the hosts answered.
 *
 * Placement order: higher `priority` first, then larger guests first (they are the hardest to
 * place, and the first-fit-decreasing rule places them while there is most room), then by name
 * and id so that one input always yields one plan. Start order: priority first, then, within a
 * priority, by each guest's pause estimate, busy guests moving alone (evacuation-order.ts).
 *
 * Eligibility: a target takes a guest only if it accepts the guest's kind (`HostStatus.guestKinds`;
 * a host that does not say is taken to accept any). A guest no target accepts is refused with
 * ERR_UNKNOWN_BACKEND, as one without room is with ERR_INSUFFICIENT_CAPACITY.
 *
 * Placement: each guest goes to the eligible target with the most memory left ("worst fit"),
 * which spreads guests over the targets so the window's per-target limit finds work for each of
 * them. Worst fit can strand a guest that tighter packing would place, so when it leaves any
 * guest out the plan is made again by best fit (the target with the least room that holds the
 * guest), and whichever places more guests wins. Bin packing is NP-hard; both are heuristics, and
 * a guest left out is reported, never silently dropped.
 */

import type { GuestInfo, HostStatus } from '../agent/control-types.js';
import { InvalidArgumentError, NotFoundError } from '../errors.js';
import { orderMoves } from './evacuation-order.js';
import type { EvacuationPlan, PlanEntry, PlanTarget } from './pool-types.js';

/** What a plan is made from. */
export interface PlanInput {
  /** The host to empty. */
  source: string;
  /** Its guests, as it listed them (any state). */
  guests: readonly GuestInfo[];
  /** The pool's hosts that answered, the source included or not. */
  hosts: readonly HostStatus[];
  /** Only these hosts may take guests (`--to`); every enabled host but the source otherwise. */
  to?: readonly string[];
  /**
   * Per target, bytes of migrations in flight to it that its `reservedBytes` does not count yet
   * (a target reserves on the migration's `hello`).
   */
  pendingBytes?: ReadonlyMap<string, number>;
  /** Per guest id, hosts it must not go to (it failed there). */
  avoid?: ReadonlyMap<string, ReadonlySet<string>>;
  /** Guests already migrating out under the caller's watch: neither planned nor reported. */
  inFlight?: ReadonlySet<string>;
  /** The budget of the evacuation's migrations, in milliseconds; each guest's estimate's own (its host's default) when absent. */
  downtimeBudgetMs?: number;
  /** Start order by pause estimate within a priority, busy guests alone (evacuation-order.ts). @default true */
  orderByPause?: boolean;
}

const MiB = 1024 * 1024;

/** Plans the evacuation of `input.source`; see the module comment for the rules. */
export function planEvacuation(input: PlanInput): EvacuationPlan {
  const targets = eligibleTargets(input);
  const guests = input.guests.filter((g) => !input.inFlight?.has(g.id)).sort(byEvacuationOrder);
  const blocked = new Map<string, PlanEntry>();
  for (const g of guests) {
    const why = notMovable(g, input.source);
    if (why) blocked.set(g.id, why);
  }
  const movable = guests.filter((g) => !blocked.has(g.id));
  let placed = place(movable, targets, input, 'worst');
  if (placed.entries.some((e) => !e.to)) {
    const packed = place(movable, targets, input, 'best');
    if (countPlaced(packed.entries) > countPlaced(placed.entries)) placed = packed;
  }
  const byId = new Map(placed.entries.map((e) => [e.guestId, e]));
  const placedOrder = guests.map((g) => blocked.get(g.id) ?? byId.get(g.id)!);
  const moves = orderMoves(placedOrder, guests, { downtimeBudgetMs: input.downtimeBudgetMs, byPause: input.orderByPause ?? true });
  return { source: input.source, moves, targets: placed.targets, fits: moves.every((m) => m.to !== undefined) };
}

/** Higher priority first, then larger first, then by name and id. */
export function byEvacuationOrder(a: GuestInfo, b: GuestInfo): number {
  return (b.priority ?? 0) - (a.priority ?? 0) || b.memoryBytes - a.memoryBytes || a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
}

interface Candidate {
  name: string;
  freeBytes: number;
  /** The guest kinds it accepts; undefined if it does not say (any). */
  kinds?: ReadonlySet<string>;
}

interface TargetView {
  candidates: Candidate[];
  /** Why hosts that are not candidates were left out, for the reasons of unplaced guests. */
  excluded: string[];
}

/**
 * The hosts that may take guests.
 * @throws NotFoundError if `to` names a host that did not answer; InvalidArgumentError if it
 *   names the source.
 */
function eligibleTargets(input: PlanInput): TargetView {
  const known = new Map(input.hosts.map((h) => [h.name, h]));
  if (input.to) {
    for (const name of input.to) {
      if (name === input.source) throw new InvalidArgumentError(`the host being evacuated (${name}) cannot be a target`);
      if (!known.has(name)) throw new NotFoundError(`no host named "${name}" answered; the pool has ${[...known.keys()].join(', ') || 'no host'}`);
    }
  }
  const named = input.to ? new Set(input.to) : undefined;
  const candidates: Candidate[] = [];
  const excluded: string[] = [];
  for (const h of input.hosts) {
    if (h.name === input.source || (named && !named.has(h.name))) continue;
    if (h.maintenance) {
      excluded.push(`${h.name} is in maintenance`);
      continue;
    }
    const pending = input.pendingBytes?.get(h.name) ?? 0;
    const candidate: Candidate = { name: h.name, freeBytes: Math.max(0, h.freeBytes - pending) };
    if (h.guestKinds !== undefined) candidate.kinds = new Set(h.guestKinds);
    candidates.push(candidate);
  }
  return { candidates, excluded };
}

/** Why a guest cannot be moved at all, whatever the room; undefined if it can. */
function notMovable(g: GuestInfo, source: string): PlanEntry | undefined {
  const entry = { guestId: g.id, guestName: g.name, memoryBytes: g.memoryBytes, priority: g.priority ?? 0, code: 'ERR_CONFLICT' as const };
  const by = g.migrationId ? ` (migration ${g.migrationId})` : '';
  switch (g.state) {
    case 'running':
      return undefined;
    case 'migrating-out':
      return { ...entry, reason: `already migrating away from ${source}${by}` };
    case 'migrating-in':
      return { ...entry, reason: `still arriving on ${source}${by}; evacuate again once it has landed` };
    case 'paused':
      return { ...entry, reason: `paused after a switchover whose outcome is unknown${by}; resolve that migration first` };
  }
}

function place(guests: readonly GuestInfo[], view: TargetView, input: PlanInput, fit: 'worst' | 'best'): { entries: PlanEntry[]; targets: PlanTarget[] } {
  const left = new Map(view.candidates.map((c) => [c.name, c.freeBytes]));
  const entries: PlanEntry[] = [];
  for (const g of guests) {
    const entry: PlanEntry = { guestId: g.id, guestName: g.name, memoryBytes: g.memoryBytes, priority: g.priority ?? 0 };
    const avoid = input.avoid?.get(g.id);
    let best: string | undefined;
    for (const c of view.candidates) {
      if (avoid?.has(c.name) || !accepts(c, g)) continue;
      const room = left.get(c.name)!;
      if (room < g.memoryBytes) continue;
      const current = best === undefined ? undefined : left.get(best)!;
      if (current === undefined || (fit === 'worst' ? room > current : room < current)) best = c.name;
    }
    if (best === undefined) {
      entries.push({ ...entry, ...unplacedReason(g, view, left, avoid) });
    } else {
      left.set(best, left.get(best)! - g.memoryBytes);
      entries.push({ ...entry, to: best });
    }
  }
  const targets = view.candidates.map((c) => ({ name: c.name, freeBytes: c.freeBytes, leftBytes: left.get(c.name)! }));
  return { entries, targets };
}

function unplacedReason(g: GuestInfo, view: TargetView, left: ReadonlyMap<string, number>, avoid: ReadonlySet<string> | undefined): Pick<PlanEntry, 'reason' | 'code'> {
  const tried = avoid && avoid.size > 0 ? `; already failed on ${[...avoid].sort().join(', ')}` : '';
  const untried = view.candidates.filter((c) => !avoid?.has(c.name));
  const open = untried.filter((c) => accepts(c, g));
  if (untried.length > 0 && open.length === 0) {
    const kinds = untried.map((c) => `${c.name} takes ${[...(c.kinds ?? [])].sort().join(', ') || 'none'}`).join('; ');
    return { code: 'ERR_UNKNOWN_BACKEND', reason: `no target host accepts guests of kind ${g.kind} (${kinds})${tried}` };
  }
  if (open.length === 0) {
    const why = view.excluded.length > 0 ? ` (${view.excluded.join('; ')})` : '';
    const code = view.excluded.length > 0 && !tried ? 'ERR_HOST_IN_MAINTENANCE' : 'ERR_INSUFFICIENT_CAPACITY';
    return { code, reason: `no target host can take it${why}${tried}` };
  }
  const roomiest = open.reduce((a, b) => (left.get(b.name)! > left.get(a.name)! ? b : a));
  const before = roomiest.freeBytes > left.get(roomiest.name)! ? ` after the guests placed before it (${mib(roomiest.freeBytes)} before the plan)` : '';
  return {
    code: 'ERR_INSUFFICIENT_CAPACITY',
    reason: `needs ${mib(g.memoryBytes)}; the most free on any target is ${mib(left.get(roomiest.name)!)} on ${roomiest.name}${before}${tried}`,
  };
}

/** Whether `c` accepts a guest of `g`'s kind. */
function accepts(c: Candidate, g: GuestInfo): boolean {
  return c.kinds === undefined || c.kinds.has(g.kind);
}

function countPlaced(entries: readonly PlanEntry[]): number {
  return entries.filter((e) => e.to !== undefined).length;
}

function mib(bytes: number): string {
  return `${Math.round((bytes / MiB) * 10) / 10} MiB`;
}
