// Where the guest ran during one cell of the fault matrix, from start to end: the source's own
// record of when it paused, resumed and destroyed its copy, beside the agent's events, on the one
// wall clock that the test and the agent's process share. From it, the rule every cell is judged
// by: the guest never ran on both hosts.

export type Host = 'source' | 'target';

/** A copy of the guest started (`runs`) or stopped running, at `at` ms since the epoch. */
export interface GuestMoment {
  at: number;
  host: Host;
  runs: boolean;
  what: string;
}

/** The three methods by which the source's copy stops and starts, as the engine calls them. */
export interface SourceCopy {
  pause(): Promise<void>;
  resume(): Promise<void>;
  destroy(): Promise<void>;
}

/**
 * Records, from now on, when `guest` (the source's copy, running) pauses, resumes and is
 * destroyed, by wrapping those methods. It counts as running until a pause or destroy has
 * finished, and from the moment a resume is asked for: the record errs towards overlap.
 */
export function watchSourceCopy(guest: SourceCopy, moments: GuestMoment[]): void {
  moments.push({ at: Date.now(), host: 'source', runs: true, what: 'booted' });
  const pause = guest.pause.bind(guest);
  const resume = guest.resume.bind(guest);
  const destroy = guest.destroy.bind(guest);
  guest.pause = async () => {
    await pause();
    moments.push({ at: Date.now(), host: 'source', runs: false, what: 'paused' });
  };
  guest.resume = async () => {
    moments.push({ at: Date.now(), host: 'source', runs: true, what: 'resumed' });
    await resume();
  };
  guest.destroy = async () => {
    await destroy();
    moments.push({ at: Date.now(), host: 'source', runs: false, what: 'destroyed' });
  };
}

/**
 * The moments of `migrationId` in an agent's JSON event lines: the guest runs there from
 * `migration-resumed` (printed the moment it runs) until `migration-discarded`.
 */
export function agentMoments(events: ReadonlyArray<Record<string, unknown>>, migrationId: string): GuestMoment[] {
  const moments: GuestMoment[] = [];
  for (const e of events) {
    if (e.migrationId !== migrationId) continue;
    const at = Date.parse(e.time as string);
    if (e.type === 'migration-resumed') moments.push({ at, host: 'target', runs: true, what: 'resumed' });
    if (e.type === 'migration-discarded') moments.push({ at, host: 'target', runs: false, what: 'discarded' });
  }
  return moments;
}

interface Run {
  host: Host;
  from: GuestMoment;
  /** Absent while the copy still runs. */
  to?: GuestMoment;
}

/** The stretches during which each copy ran, in order; a copy still running has one left open. */
function runsOf(moments: readonly GuestMoment[]): Run[] {
  // Stable: a stop and a start in the same millisecond keep the order in which they were noted.
  const sorted = [...moments].sort((a, b) => a.at - b.at);
  const runs: Run[] = [];
  const open = new Map<Host, Run>();
  for (const m of sorted) {
    const run = open.get(m.host);
    if (m.runs && !run) {
      const started: Run = { host: m.host, from: m };
      runs.push(started);
      open.set(m.host, started);
    } else if (!m.runs && run) {
      run.to = m;
      open.delete(m.host);
    }
  }
  return runs;
}

/** Whether the guest ran on the target at any time. */
export function targetRan(moments: readonly GuestMoment[]): boolean {
  return runsOf(moments).some((r) => r.host === 'target');
}

/**
 * What breaks the rule that the guest never ran on both hosts, judged at `now`:
 * - both copies ran at the same time;
 * - the target ran the guest, and the source ran its copy again after pausing it to hand it over
 *   (in either order): two histories of one guest, though never at once.
 */
export function neverBothProblems(moments: readonly GuestMoment[], now = Date.now()): string[] {
  const runs = runsOf(moments);
  const t0 = Math.min(...moments.map((m) => m.at));
  const span = (r: Run): string => `${r.from.what} at +${r.from.at - t0} ms until ${r.to ? `${r.to.what} at +${r.to.at - t0} ms` : 'the end'}`;
  const source = runs.filter((r) => r.host === 'source');
  const target = runs.filter((r) => r.host === 'target');
  const problems: string[] = [];
  for (const s of source) {
    for (const t of target) {
      const overlapMs = Math.min(s.to?.at ?? now, t.to?.at ?? now) - Math.max(s.from.at, t.from.at);
      if (overlapMs > 0) problems.push(`the guest ran on both hosts at once for ${overlapMs} ms (source: ${span(s)}; target: ${span(t)})`);
    }
  }
  const again = source[1];
  if (problems.length === 0 && again && target[0]) {
    problems.push(`the guest ran on the target (${span(target[0])}) and again on the source from the state it handed over (${span(again)})`);
  }
  return problems;
}
