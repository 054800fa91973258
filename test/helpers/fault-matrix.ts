// One cell of the fault matrix: a migration through a fault proxy to a target agent in a process
// of its own, one fault at one point, and then what became of the guest, checked on both hosts.
//
// Every cell checks the same invariants, whatever its fault:
// - the fault struck where it was armed;
// - the guest never ran on both hosts, judged over the whole cell, not only its end: the source's
//   own record of pausing, resuming and destroying its copy beside the agent's events
//   (test/helpers/guest-timeline.ts);
// - at the end the guest runs on one host at most: when the report says source, the agent does
//   not say running, and the other way round; an indeterminate outcome leaves the source copy
//   paused and names the migration, and once the agent can be asked afresh, the source retires
//   or resumes its copy as the answer says; after a killed source, the target either runs the
//   guest or discarded it. A cell that ends with no copy running has only "never both" to hold;
//   its name and its table cell say so;
// - whichever copy runs (and a paused source copy) is exactly what the replay oracle says;
// - error codes are stable `ERR_...` codes.
// The test files then assert which of those outcomes each cell must have.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { queryAgent } from '../../dist/agent/agent-client.js';
import { checkAgainstOracle } from '../../dist/cli/oracle-check.js';
import type { SimGuestConfig } from '../../dist/domain/sim/config.js';
import { SimulatedGuest } from '../../dist/domain/sim/guest.js';
import { oracleDigest } from '../../dist/domain/sim/oracle.js';
import { migrate } from '../../dist/precopy/migration.js';
import { type MigrateOptions } from '../../dist/precopy/migrate-options.js';
import type { MigrationReport } from '../../dist/precopy/report.js';
import { digestBuffer } from '../../dist/protocol/page-digest.js';
import { connectWebSocket } from '../../dist/transport/ws-connect.js';
import { startAgentProcess, type AgentProcess } from './agent-process.js';
import { startFaultProxy, type Fault, type FaultPoint, type FaultProxy } from './fault-proxy.js';
import { agentMoments, neverBothProblems, targetRan, watchSourceCopy, type GuestMoment } from './guest-timeline.js';

const MiB = 1024 * 1024;

/** Small, busy enough that every round after the first has pages to send. */
export const GUEST: SimGuestConfig = {
  memoryBytes: 32 * MiB,
  vcpus: 1,
  workload: 'uniform',
  dirtyRateBytesPerSec: 24e6,
  hotSetBytes: 4 * MiB,
  seed: 11,
};

/**
 * Rounds 0, 1 and 2 run while the guest runs; the stop-and-copy round is round 3, or the first
 * round after it that has pages to send (on a loaded machine the vCPU may dirty none in time).
 */
export const FINAL_ROUND = 3;

/**
 * Short enough that a stalled link is noticed in seconds, long enough that a healthy exchange on
 * a loaded two-core machine never trips them (a round's acknowledgement takes well under 100 ms).
 */
export const TIMEOUTS = {
  handshakeTimeoutMs: 3000,
  switchoverTimeoutMs: 3000,
  resolveTimeoutMs: 3000,
  /** The source's keepalive: what notices a partition while the source is blocked sending. */
  sourceIdleTimeoutMs: 2500,
  agentGoTimeoutMs: 3000,
  agentIdleTimeoutMs: 2500,
  queryConnectTimeoutMs: 1000,
};

/** How long the agent may take to settle what it does with a migration after the source is done. */
const AGENT_SETTLE_MS = 20_000;

const SOURCE_SCRIPT = fileURLToPath(new URL('../fixtures/source-process.mjs', import.meta.url));

/** A row of the matrix: where the fault strikes. */
export interface Row {
  key: string;
  /** The phase, as the table shows it. */
  label: string;
  /** The record struck, as a test's name says it. */
  phrase: string;
  at: FaultPoint;
  deliver?: boolean;
}

export const ROWS: readonly Row[] = [
  { key: 'hello', label: 'handshake: `hello`', phrase: '"hello"', at: 'hello' },
  { key: 'first-pages', label: 'first round: a round 0 batch', phrase: 'a round 0 batch', at: 'first-pages' },
  { key: 'later-round', label: 'later round: a round 1 batch', phrase: 'a round 1 batch', at: 'later-round' },
  { key: 'stop-and-copy', label: 'stop-and-copy: a batch of the last round (guest paused)', phrase: 'a stop-and-copy batch', at: 'stop-and-copy' },
  { key: 'device-state', label: 'device state: `device-state`', phrase: '"device-state"', at: 'device-state' },
  { key: 'complete', label: 'before go: `complete`', phrase: '"complete"', at: 'complete' },
  { key: 'prepared', label: 'before go: `prepared`', phrase: '"prepared"', at: 'prepared' },
  { key: 'go-in-transit', label: 'go: `go` struck in transit', phrase: '"go" in transit', at: 'go' },
  { key: 'go-delivered', label: 'after go: `go` delivered, then struck', phrase: '"go" once delivered', at: 'go', deliver: true },
  { key: 'resumed', label: 'after go: `resumed` struck in transit', phrase: '"resumed"', at: 'resumed' },
];

/** Where the guest ended up. `lost`: it ran only on a source that was killed. */
export type Where = 'source' | 'target' | 'indeterminate' | 'lost';

/** What the agent says about the migration once it settled; `dead` if it was killed. */
export type AgentView = 'running' | 'discarded' | 'unknown' | 'dead';

/** Where a copy of the guest runs when the cell ends; `none`: the cell is judged by "never both" alone. */
export type RunsAtEnd = 'source' | 'target' | 'none';

export interface Observation {
  row: string;
  fault: Fault;
  where: Where;
  agent: AgentView;
  /** The report's error code, if any (none for a killed source, which wrote no report). */
  code?: string;
  /** With ERR_PEER_ABORTED: the code the peer sent. */
  peerCode?: string;
  /** When the source learned the outcome by asking after a link failure: why it had to ask. */
  resolvedAfter?: string;
  /** After an indeterminate outcome: where the guest runs once the agent was asked afresh. */
  resolvedLater?: 'source' | 'target';
  /** Whether the guest ran on the target at any time in the cell. */
  targetRan: boolean;
  runsAtEnd: RunsAtEnd;
  /** Invariants that did not hold; empty when the guarantee held. */
  problems: string[];
  /** What the table shows. */
  summary: string;
  millis: number;
}

/**
 * Rounds 0 to `rounds - 1` while the guest runs, then stop-and-copy as soon as a page is dirty:
 * the stop-and-copy round is the first from round `rounds` on that sends pages, so a fault can be
 * aimed at it (test/fixtures/source-process.mjs has the same policy).
 */
export function stopAfterRounds(rounds: number): NonNullable<MigrateOptions['policy']> {
  return (stats) => (stats.round >= rounds && stats.dirtyPages > 0 ? 'stop-and-copy' : 'continue');
}

/** `livemig listen`, with the matrix's timeouts. */
export async function startMatrixAgent(): Promise<AgentProcess> {
  return startAgentProcess(['--go-timeout', `${TIMEOUTS.agentGoTimeoutMs}ms`, '--idle-timeout', `${TIMEOUTS.agentIdleTimeoutMs}ms`]);
}

/** Migration options every in-process cell uses. */
export function matrixMigrateOptions(proxy: FaultProxy, migrationId: string): MigrateOptions {
  return {
    migrationId,
    policy: stopAfterRounds(FINAL_ROUND),
    // Keep the source copy after a switchover, so the test can check it stayed paused.
    destroySource: false,
    handshakeTimeoutMs: TIMEOUTS.handshakeTimeoutMs,
    switchoverTimeoutMs: TIMEOUTS.switchoverTimeoutMs,
    resolveTimeoutMs: TIMEOUTS.resolveTimeoutMs,
    // The source asks over the same network path it migrated over: a partition hides the
    // target from the question too.
    resolveOutcome: async (id) => (await queryAgent(proxy.url, id, { connectTimeoutMs: TIMEOUTS.queryConnectTimeoutMs })).state,
  };
}

/**
 * A cell whose source runs in this process: any fault but `kill-source`. Adds what it observed to
 * `observed` (a broken invariant included, so that the table shows it), then asserts that every
 * invariant held.
 */
export async function runInProcessCell(r: Row, fault: Exclude<Fault, 'kill-source'>, observed: Observation[]): Promise<Observation> {
  const started = performance.now();
  const [agent, guest] = await Promise.all([startMatrixAgent(), SimulatedGuest.boot(GUEST, 'fault-matrix')]);
  const moments: GuestMoment[] = [];
  watchSourceCopy(guest, moments);
  let proxy: FaultProxy | undefined;
  try {
    proxy = await startFaultProxy({ targetUrl: agent.url, finalRound: FINAL_ROUND });
    const kill = (): void => {
      agent.child.kill('SIGKILL');
      moments.push({ at: Date.now(), host: 'target', runs: false, what: 'agent killed' });
    };
    proxy.arm({ at: r.at, fault, deliver: r.deliver, kill });
    const migrationId = randomUUID();
    const transport = await connectWebSocket(proxy.url, { idleTimeoutMs: TIMEOUTS.sourceIdleTimeoutMs });
    const report = await migrate(guest, transport, matrixMigrateOptions(proxy, migrationId));
    const context = `${r.key} x ${fault}: report ${JSON.stringify(brief(report))}, relayed ${JSON.stringify(proxy.seen)}`;
    expect(proxy.struck, `the fault never struck; ${context}`).toMatchObject({ at: r.at, fault });
    const agentView = await settledAgentView(agent, migrationId);
    const { where, problems } = await judgeInProcess(report, guest, agent, agentView);
    const resolvedLater = where === 'indeterminate' && agentView !== 'dead' ? await resolveLater(guest, agent, migrationId, problems) : undefined;
    const timeline = [...moments, ...(await agentTimeline(agent, migrationId, agentView, problems))];
    problems.push(...neverBothProblems(timeline));
    const o = observe(r, fault, { where, agentView, resolvedLater, targetRan: targetRan(timeline) }, report, problems, started);
    observed.push(o);
    expect(problems, `an invariant broke; ${context}; the guest ran: ${JSON.stringify(timeline)}`).toEqual([]);
    return o;
  } finally {
    await proxy?.close();
    await agent.stop();
    await guest.destroy();
  }
}

/**
 * A cell whose source is a process of its own, killed with SIGKILL when the proxy sees the armed
 * record. Nothing of the source survives it: no report, no copy; the target decides alone.
 */
export async function runKilledSourceCell(r: Row, observed: Observation[]): Promise<Observation> {
  const started = performance.now();
  const agent = await startMatrixAgent();
  let proxy: FaultProxy | undefined;
  let source: SourceProcess | undefined;
  try {
    proxy = await startFaultProxy({ targetUrl: agent.url, finalRound: FINAL_ROUND });
    const migrationId = randomUUID();
    source = startSourceProcess(proxy.url, migrationId);
    const child = source.child;
    let killedAt: number | undefined;
    const kill = (): void => {
      child.kill('SIGKILL');
      killedAt = Date.now();
    };
    proxy.arm({ at: r.at, fault: 'kill-source', deliver: r.deliver, kill });
    const [code, signal] = await source.exited;
    const context = `${r.key} x kill-source: source printed ${JSON.stringify(source.lines)}, relayed ${JSON.stringify(proxy.seen)}`;
    expect(proxy.struck, `the fault never struck; ${context}`).toMatchObject({ at: r.at, fault: 'kill-source' });
    expect({ code, signal }, context).toEqual({ code: null, signal: 'SIGKILL' });
    expect(source.lines.some((l) => l.type === 'report'), context).toBe(false);
    const agentView = await settledAgentView(agent, migrationId);
    const problems: string[] = [];
    let where: Where = 'lost';
    if (agentView === 'running') {
      where = 'target';
      problems.push(...(await targetProblems(agent, migrationId)));
    } else if (agentView === 'dead') {
      problems.push('the agent died too');
    }
    const timeline = [...sourceProcessMoments(source.lines, killedAt), ...(await agentTimeline(agent, migrationId, agentView, problems))];
    problems.push(...neverBothProblems(timeline));
    const runsAtEnd: RunsAtEnd = where === 'target' ? 'target' : 'none';
    const summary = where === 'target' ? 'target (the source died after handing over)' : `lost with the source host (agent: ${agentView})`;
    const o: Observation = {
      row: r.key,
      fault: 'kill-source',
      where,
      agent: agentView,
      targetRan: targetRan(timeline),
      runsAtEnd,
      problems,
      summary: withProblems(labelled(summary, runsAtEnd), problems),
      millis: Math.round(performance.now() - started),
    };
    observed.push(o);
    expect(problems, `an invariant broke; ${context}; the guest ran: ${JSON.stringify(timeline)}`).toEqual([]);
    return o;
  } finally {
    source?.child.kill('SIGKILL');
    await proxy?.close();
    await agent.stop();
  }
}

/** A clean migration through the proxy, nothing armed: the relay must be transparent. */
export async function runCleanInProcess(): Promise<{ report: MigrationReport; proxy: Readonly<Record<string, number>> }> {
  const [agent, guest] = await Promise.all([startMatrixAgent(), SimulatedGuest.boot(GUEST, 'fault-matrix')]);
  const moments: GuestMoment[] = [];
  watchSourceCopy(guest, moments);
  let proxy: FaultProxy | undefined;
  try {
    proxy = await startFaultProxy({ targetUrl: agent.url, finalRound: FINAL_ROUND });
    const migrationId = randomUUID();
    const transport = await connectWebSocket(proxy.url, { idleTimeoutMs: TIMEOUTS.sourceIdleTimeoutMs });
    const report = await migrate(guest, transport, matrixMigrateOptions(proxy, migrationId));
    const context = `clean: report ${JSON.stringify(brief(report))}, relayed ${JSON.stringify(proxy.seen)}`;
    expect(report, context).toMatchObject({ outcome: 'completed', guestRunningOn: 'target', verified: true });
    expect(report.resolvedAfterLinkFailure, context).toBeUndefined();
    expect(report.rounds.length, context).toBeGreaterThan(FINAL_ROUND);
    expect(report.rounds.at(-1), context).toMatchObject({ stopAndCopy: true });
    expect(guest.paused).toBe(true);
    expect(pausedSourceProblems(guest), context).toEqual([]);
    expect(await settledAgentView(agent, migrationId)).toBe('running');
    expect(await targetProblems(agent, migrationId, guest.stepCounts()[0]), context).toEqual([]);
    const problems: string[] = [];
    const timeline = [...moments, ...(await agentTimeline(agent, migrationId, 'running', problems))];
    expect(problems, context).toEqual([]);
    expect(neverBothProblems(timeline), context).toEqual([]);
    expect(targetRan(timeline), context).toBe(true);
    return { report, proxy: { ...proxy.seen } };
  } finally {
    await proxy?.close();
    await agent.stop();
    await guest.destroy();
  }
}

/** The source in a process of its own, migrating through the proxy with nothing armed. */
export async function runCleanSourceProcess(): Promise<MigrationReport> {
  const agent = await startMatrixAgent();
  let proxy: FaultProxy | undefined;
  let source: SourceProcess | undefined;
  try {
    proxy = await startFaultProxy({ targetUrl: agent.url, finalRound: FINAL_ROUND });
    const migrationId = randomUUID();
    source = startSourceProcess(proxy.url, migrationId);
    const [code] = await source.exited;
    const last = source.lines.find((l) => l.type === 'report') as { report: MigrationReport } | undefined;
    expect(code, JSON.stringify(source.lines)).toBe(0);
    expect(last?.report).toMatchObject({ migrationId, outcome: 'completed', guestRunningOn: 'target', verified: true });
    expect(await targetProblems(agent, migrationId)).toEqual([]);
    return last!.report;
  } finally {
    source?.child.kill('SIGKILL');
    await proxy?.close();
    await agent.stop();
  }
}

interface SourceProcess {
  child: ReturnType<typeof spawn>;
  lines: Array<Record<string, unknown>>;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

/** The source process's own record of its copy (its `booted` and `guest` lines), ended by its kill. */
function sourceProcessMoments(lines: ReadonlyArray<Record<string, unknown>>, killedAt: number | undefined): GuestMoment[] {
  const moments: GuestMoment[] = [];
  for (const l of lines) {
    if (l.type === 'booted') moments.push({ at: l.at as number, host: 'source', runs: true, what: 'booted' });
    if (l.type === 'guest') moments.push({ at: l.at as number, host: 'source', runs: l.runs as boolean, what: l.what as string });
  }
  if (killedAt !== undefined) moments.push({ at: killedAt, host: 'source', runs: false, what: 'killed' });
  return moments;
}

/**
 * The agent's record of the migration, once its events agree with what it said when asked: a
 * guest running there was announced by `migration-resumed`, a discarded one by
 * `migration-discarded`; a killed agent's record is whatever it printed before it died.
 */
async function agentTimeline(agent: AgentProcess, migrationId: string, agentView: AgentView, problems: string[]): Promise<GuestMoment[]> {
  if (agentView === 'dead') {
    await agent.closed;
  } else if (agentView === 'running' || agentView === 'discarded') {
    const type = agentView === 'running' ? 'migration-resumed' : 'migration-discarded';
    await agent.waitFor((e) => e.type === type && e.migrationId === migrationId, 5000).catch(() => {
      problems.push(`the agent says ${agentView} but printed no ${type} event`);
    });
  }
  return agentMoments(agent.events, migrationId);
}

/**
 * An indeterminate outcome followed through as its message tells the operator to: ask the agent
 * afresh, then retire the paused copy here if the guest runs there, or resume it if the agent
 * discarded its copy. Says where the guest runs then, after checking that copy against the oracle.
 */
async function resolveLater(guest: SimulatedGuest, agent: AgentProcess, migrationId: string, problems: string[]): Promise<'source' | 'target' | undefined> {
  const { state } = await queryAgent(agent.url, migrationId, { connectTimeoutMs: 2000 });
  if (state === 'running') {
    const handedOver = guest.stepCounts()[0];
    await guest.destroy();
    problems.push(...(await targetProblems(agent, migrationId, handedOver)));
    return 'target';
  }
  if (state === 'discarded' || state === 'unknown') {
    await guest.resume();
    problems.push(...(await runningSourceProblems(guest)));
    return 'source';
  }
  problems.push(`asked afresh, the agent says ${state}`);
  return undefined;
}

function startSourceProcess(url: string, migrationId: string): SourceProcess {
  const child = spawn(
    process.execPath,
    [
      SOURCE_SCRIPT,
      '--to', url,
      '--id', migrationId,
      '--guest', JSON.stringify(GUEST),
      '--stop-after-rounds', String(FINAL_ROUND),
      '--handshake-timeout', String(TIMEOUTS.handshakeTimeoutMs),
      '--switchover-timeout', String(TIMEOUTS.switchoverTimeoutMs),
      '--resolve-timeout', String(TIMEOUTS.resolveTimeoutMs),
      '--idle-timeout', String(TIMEOUTS.sourceIdleTimeoutMs),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  // `close`, not `exit`: every line the source printed has been read by then.
  const exited = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, lines, exited };
}

/**
 * What the agent says once the migration is no longer in flight there (`receiving` and
 * `prepared` are passing states); `dead` if the agent process is gone.
 */
export async function settledAgentView(agent: AgentProcess, migrationId: string): Promise<AgentView> {
  const deadline = performance.now() + AGENT_SETTLE_MS;
  let last = 'no answer';
  for (;;) {
    if (agent.child.exitCode !== null || agent.child.signalCode !== null) return 'dead';
    try {
      const status = await queryAgent(agent.url, migrationId, { connectTimeoutMs: 2000 });
      if (status.state === 'running' || status.state === 'discarded' || status.state === 'unknown') return status.state;
      last = status.state;
    } catch (err) {
      last = String(err);
    }
    if (performance.now() > deadline) throw new Error(`the agent did not settle migration ${migrationId} within ${AGENT_SETTLE_MS} ms: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Checks the invariants of an in-process cell; says where the guest runs and what broke. */
async function judgeInProcess(
  report: MigrationReport,
  guest: SimulatedGuest,
  agent: AgentProcess,
  agentView: AgentView,
): Promise<{ where: Where; problems: string[] }> {
  const id = report.migrationId;
  const problems: string[] = [];
  for (const error of [report.error, report.resolvedAfterLinkFailure]) {
    if (error && !/^ERR_[A-Z_]+$/.test(error.code)) problems.push(`"${error.code}" is not a stable error code`);
  }
  switch (report.guestRunningOn) {
    case 'source':
      if (report.outcome !== 'failed' && report.outcome !== 'cancelled') problems.push(`the outcome is ${report.outcome}, with the guest on the source`);
      if (agentView === 'running') problems.push('the agent runs the guest too');
      if (guest.paused) problems.push('the report says source, but the source copy is paused');
      else problems.push(...(await runningSourceProblems(guest)));
      return { where: 'source', problems };
    case 'target':
      if (report.outcome !== 'completed') problems.push(`the outcome is ${report.outcome}, with the guest on the target`);
      if (agentView !== 'running') problems.push(`the report says target, the agent says ${agentView}`);
      // The source copy was kept (destroySource: false) and must never have run again.
      if (!guest.paused) problems.push('the source copy runs too');
      else problems.push(...pausedSourceProblems(guest));
      if (agentView === 'running') problems.push(...(await targetProblems(agent, id, guest.stepCounts()[0])));
      return { where: 'target', problems };
    case 'unknown':
      if (report.outcome !== 'indeterminate') problems.push(`the outcome is ${report.outcome}, with the guest nowhere known`);
      if (report.error?.code !== 'ERR_INDETERMINATE') problems.push(`an indeterminate outcome reports ${report.error?.code}`);
      if (!report.error?.message.includes(id)) problems.push('the indeterminate outcome does not name the migration');
      if (!guest.paused) problems.push('an indeterminate outcome left the source copy running');
      else problems.push(...pausedSourceProblems(guest));
      // A target that runs the guest is checked once the outcome is resolved (resolveLater).
      return { where: 'indeterminate', problems };
    default:
      problems.push(`the report says the guest runs on "${report.guestRunningOn}"`);
      return { where: 'source', problems };
  }
}

/** The source copy runs: its vCPU moves on, and a pause shows exactly what the oracle says. */
async function runningSourceProblems(guest: SimulatedGuest): Promise<string[]> {
  const before = guest.stepCounts()[0]!;
  const deadline = performance.now() + 10_000;
  while (guest.stepCounts()[0]! <= before) {
    if (performance.now() > deadline) return ['the source copy does not run'];
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await guest.pause();
  const problems = pausedSourceProblems(guest);
  await guest.resume();
  return problems;
}

/** A paused source copy holds exactly the oracle's memory and registers. */
function pausedSourceProblems(guest: SimulatedGuest): string[] {
  const states = guest.vcpuStates();
  const oracle = oracleDigest(GUEST, states.map((s) => s.steps));
  const problems: string[] = [];
  if (digestBuffer(guest.bytes, 4096) !== oracle.digest) problems.push('the source memory differs from its oracle');
  if (JSON.stringify(states) !== JSON.stringify(oracle.vcpus)) problems.push('the source registers differ from their oracle');
  return problems;
}

/** The guest on the target runs and is exactly what the oracle says, from where the source left off. */
async function targetProblems(agent: AgentProcess, migrationId: string, sourceSteps?: number): Promise<string[]> {
  const there = await checkAgainstOracle(agent.url, migrationId, GUEST);
  const problems: string[] = [];
  if (there.state !== 'running') problems.push(`the agent says ${there.state} when inspected`);
  if (!there.memoryMatches) problems.push('the memory on the target differs from its oracle');
  if (!there.registersMatch) problems.push('the registers on the target differ from their oracle');
  if (sourceSteps !== undefined && there.steps[0]! < sourceSteps) problems.push('the target runs from an older state than the source handed over');
  return problems;
}

interface Outcome {
  where: Where;
  agentView: AgentView;
  resolvedLater: 'source' | 'target' | undefined;
  targetRan: boolean;
}

function observe(r: Row, fault: Fault, outcome: Outcome, report: MigrationReport, problems: string[], started: number): Observation {
  const { where, agentView: agent, resolvedLater } = outcome;
  const code = report.error?.code;
  const peerCode = code === 'ERR_PEER_ABORTED' ? /^peer aborted the migration: (ERR_[A-Z_]+)/.exec(report.error!.message)?.[1] : undefined;
  const resolvedAfter = report.resolvedAfterLinkFailure?.code;
  let summary: string;
  switch (where) {
    case 'source':
      summary = resolvedAfter
        ? `source (asked after ${resolvedAfter}: the target discarded it)`
        : `source (${code}${peerCode ? ` ← ${peerCode}` : ''})`;
      break;
    case 'target':
      summary = resolvedAfter ? `target (asked after ${resolvedAfter})` : 'target';
      break;
    default:
      summary = `indeterminate, paused on source (agent: ${agent})`;
      if (resolvedLater) summary += `; asked afresh: ${resolvedLater}`;
  }
  const runsAtEnd: RunsAtEnd = where === 'source' || where === 'target' ? where : (resolvedLater ?? 'none');
  summary = labelled(summary, runsAtEnd);
  return {
    row: r.key,
    fault,
    where,
    agent,
    code,
    peerCode,
    resolvedAfter,
    resolvedLater,
    targetRan: outcome.targetRan,
    runsAtEnd,
    problems,
    summary: withProblems(problems.length === 0 ? summary : `${summary}, reported ${report.outcome}${report.verified ? ' and verified' : ''}`, problems),
    millis: Math.round(performance.now() - started),
  };
}

/** A cell that ends with no copy running holds only "never both", and says so. */
function labelled(summary: string, runsAtEnd: RunsAtEnd): string {
  return runsAtEnd === 'none' ? `never both: ${summary}` : summary;
}

/**
 * A test's name for a cell: `what happens`, and for a cell that ends with no copy running, that
 * it is judged by "never both" alone.
 */
export function cellTitle(title: string, outcome: Partial<Observation>): string {
  return outcome.runsAtEnd === 'none' ? `${title} (no copy runs at the end: never both)` : title;
}

function withProblems(summary: string, problems: string[]): string {
  return problems.length === 0 ? summary : `${summary}, **broken**: ${problems.join('; ')}`;
}

function brief(report: MigrationReport): Record<string, unknown> {
  return {
    outcome: report.outcome,
    guestRunningOn: report.guestRunningOn,
    error: report.error,
    resolvedAfterLinkFailure: report.resolvedAfterLinkFailure,
    verified: report.verified,
    rounds: report.rounds.map((x) => x.pages),
  };
}

/** Where the observed columns, and the table made of them, are written. */
export const MATRIX_DIR = process.env.LIVEMIG_FAULT_MATRIX_DIR ?? join(tmpdir(), 'livemig-fault-matrix');

/**
 * Writes one column of observations, then the markdown table of every column written so far
 * (`fault-matrix.md` in {@link MATRIX_DIR}): docs/testing.md's table is copied from there.
 */
export function writeMatrixColumn(fault: Fault, observations: Observation[]): void {
  if (observations.length === 0) return;
  mkdirSync(MATRIX_DIR, { recursive: true });
  writeFileSync(join(MATRIX_DIR, `${fault}.json`), `${JSON.stringify(observations, null, 2)}\n`);
  const columns = new Map<string, Observation[]>();
  for (const name of readdirSync(MATRIX_DIR)) {
    if (!name.endsWith('.json')) continue;
    columns.set(name.slice(0, -'.json'.length), JSON.parse(readFileSync(join(MATRIX_DIR, name), 'utf8')) as Observation[]);
  }
  const faults = ['cut', 'stall', 'corrupt', 'kill-target', 'kill-source'].filter((f) => columns.has(f));
  const lines = [`| phase | ${faults.join(' | ')} |`, `| --- | ${faults.map(() => '---').join(' | ')} |`];
  for (const r of ROWS) {
    const cells = faults.map((f) => columns.get(f)!.find((o) => o.row === r.key)?.summary ?? '—');
    lines.push(`| ${r.label} | ${cells.join(' | ')} |`);
  }
  writeFileSync(join(MATRIX_DIR, 'fault-matrix.md'), `${lines.join('\n')}\n`);
}
