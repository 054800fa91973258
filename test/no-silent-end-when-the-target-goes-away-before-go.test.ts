// At every point where the source waits on the network before "go", the target going away (its
// agent killed, or the connection cut) ends the migration with a report and a code, and the guest
// runs on the source: through the library, where the guest is checked against its oracle, and
// through `livemig migrate`, which must print its report and exit 1, never 0.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { writeKeyFile } from '../dist/agent/key-file.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import { migrate } from '../dist/precopy/migration.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { BIN, sleep, startAgentProcess, type AgentProcess } from './helpers/agent-process.js';
import { startTripwireProxy, type Passing, type Tripwire } from './helpers/tripwire-proxy.js';

const MiB = 1024 * 1024;
const GUEST: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 20e6, hotSetBytes: 8 * MiB, seed: 7 };
/**
 * A budget the guest never fits and three rounds: rounds 0 to 2 are pre-copy rounds whatever the
 * machine's speed, so there is a later round's acknowledgement to strike at as well as round 0's.
 */
const MAX_ROUNDS = 3;
const BUDGET_MS = 5;

const agentSent =
  (type: string, round?: number) =>
  (p: Passing): boolean =>
    p.kind === 'record' && p.from === 'agent' && p.record.type === type && (round === undefined || (p.record as { round?: number }).round === round);

interface Point {
  name: string;
  /** A fresh tripwire per run (it may keep state, such as whether `complete` went by). */
  wire: () => Omit<Tripwire, 'kill'>;
  /** Reached through `migrate()` (after connecting and authenticating), not before it. */
  inMigrate: boolean;
  /** Pages go on two page channels, each its own connection (docs/protocol.md §15). */
  channels?: true;
}

const POINTS: Point[] = [
  { name: 'connect: the agent dies as the upgrade request arrives', wire: () => ({ at: (p) => p.kind === 'upgrade-request', action: 'kill', after: false }), inMigrate: false },
  { name: 'auth: the agent dies instead of sending its challenge', wire: () => ({ at: agentSent('auth-challenge'), action: 'kill', after: false }), inMigrate: false },
  { name: 'auth: the connection is cut instead of auth-ok', wire: () => ({ at: agentSent('auth-ok'), action: 'cut', after: false }), inMigrate: false },
  { name: 'ready: the agent dies instead of sending it', wire: () => ({ at: agentSent('ready'), action: 'kill', after: false }), inMigrate: true },
  { name: 'ready: the agent dies the moment it has sent it', wire: () => ({ at: agentSent('ready'), action: 'kill', after: true }), inMigrate: true },
  { name: 'ready: the connection is cut the moment it has left', wire: () => ({ at: agentSent('ready'), action: 'cut', after: true }), inMigrate: true },
  { name: 'round trip: the connection is cut at the first ping', wire: () => ({ at: (p) => p.kind === 'ping' && p.from === 'source', action: 'cut', after: false }), inMigrate: true },
  { name: 'round trip: the agent dies as the first ping arrives', wire: () => ({ at: (p) => p.kind === 'ping' && p.from === 'source', action: 'kill', after: false }), inMigrate: true },
  { name: 'round-ack of round 0: the agent dies instead', wire: () => ({ at: agentSent('round-ack', 0), action: 'kill', after: false }), inMigrate: true },
  { name: 'round-ack of round 1: the connection is cut instead', wire: () => ({ at: agentSent('round-ack', 1), action: 'cut', after: false }), inMigrate: true },
  // The last pre-copy round is followed by "pause-soon": the agent collects its garbage and says
  // so before it acknowledges the round.
  { name: 'collected: the agent dies instead of sending it', wire: () => ({ at: agentSent('collected'), action: 'kill', after: false }), inMigrate: true },
  { name: 'collected: the connection is cut the moment it has left', wire: () => ({ at: agentSent('collected'), action: 'cut', after: true }), inMigrate: true },
  { name: 'round-ack of the paused round: the agent dies instead', wire: afterComplete(agentSent('round-ack'), 'kill'), inMigrate: true },
  { name: 'channel-ready: the agent dies instead of sending it', wire: () => ({ at: agentSent('channel-ready'), action: 'kill', after: false }), inMigrate: true, channels: true },
  { name: 'channel-ready: the connections are cut instead', wire: () => ({ at: agentSent('channel-ready'), action: 'cut', after: false }), inMigrate: true, channels: true },
  { name: 'prepared: the agent dies instead of sending it', wire: () => ({ at: agentSent('prepared'), action: 'kill', after: false }), inMigrate: true },
  { name: 'prepared: the connection is cut instead', wire: () => ({ at: agentSent('prepared'), action: 'cut', after: false }), inMigrate: true },
];

/** Strikes at the first `at` after the source sent `complete`: the guest is paused then. */
function afterComplete(at: (p: Passing) => boolean, action: Tripwire['action']): Point['wire'] {
  return () => {
    let completeSent = false;
    return {
      at: (p) => {
        if (p.kind === 'record' && p.from === 'source' && p.record.type === 'complete') completeSent = true;
        return completeSent && at(p);
      },
      action,
      after: false,
    };
  };
}

// Not ERR_TIMEOUT: each wait must end because the far end went away, not at its deadline.
const FAILURE_CODES = /^ERR_(CONNECTION_CLOSED|CONNECT_FAILED)$/;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function keyFile(): Promise<{ path: string; key: Uint8Array }> {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-silent-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'pool.key');
  return { path, key: await writeKeyFile(path) };
}

async function agentAndTripwire(point: Point, keyPath: string): Promise<{ agent: AgentProcess; url: string; struck: () => Passing | undefined }> {
  const agent = await startAgentProcess(['--key-file', keyPath]);
  cleanups.push(() => agent.stop());
  const proxy = await startTripwireProxy(agent.url, { ...point.wire(), kill: () => agent.child.kill('SIGKILL') });
  cleanups.push(() => proxy.close());
  return { agent, url: proxy.url, struck: () => proxy.struck };
}

/** The guest still runs here, and a pause shows exactly what its oracle says. */
async function expectRunningIntact(guest: InstanceType<typeof SimulatedGuest>): Promise<void> {
  expect(guest.paused).toBe(false);
  // It runs: its vCPU keeps stepping (waited for, as a loaded machine may schedule it late).
  const before = guest.stepCounts()[0]!;
  for (let waited = 0; guest.stepCounts()[0]! <= before && waited < 10_000; waited += 20) await sleep(20);
  await guest.pause();
  const states = guest.vcpuStates();
  expect(states[0]!.steps).toBeGreaterThan(before);
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(GUEST, states.map((s) => s.steps)).digest);
  await guest.resume();
}

describe('through the library, the guest keeps running here', () => {
  test.each(POINTS)('$name', async (point) => {
    const { path, key } = await keyFile();
    const { url, struck } = await agentAndTripwire(point, path);
    const guest = await SimulatedGuest.boot(GUEST, 'silent-end');
    cleanups.push(() => guest.destroy());
    await sleep(100);
    let transport;
    try {
      transport = await connectToAgent(url, { key });
    } catch (err) {
      expect(point.inMigrate).toBe(false);
      expect((err as { code?: string }).code).toMatch(FAILURE_CODES);
      expect(struck()).toBeDefined();
      await expectRunningIntact(guest);
      return;
    }
    expect(point.inMigrate).toBe(true);
    const channels = point.channels ? { channels: 2, openChannel: () => connectToAgent(url, { key }) } : {};
    const report = await migrate(guest, transport, { codec: 'none', maxRounds: MAX_ROUNDS, downtimeBudgetMs: BUDGET_MS, handshakeTimeoutMs: 10_000, ...channels });
    expect(struck()).toBeDefined();
    expect(report.outcome).toBe('failed');
    expect(report.guestRunningOn).toBe('source');
    expect(report.error?.code).toMatch(FAILURE_CODES);
    await expectRunningIntact(guest);
  }, 40_000);
});

describe('through livemig migrate: a report and exit status 1', () => {
  test.each(POINTS)('$name', async (point) => {
    const { path } = await keyFile();
    const { url, struck } = await agentAndTripwire(point, path);
    const child = spawn(
      process.execPath,
      [BIN, 'migrate', '--to', url, '--key-file', path, '--json', '--memory', '64MiB', '--dirty-rate', '20MB/s', '--warmup', '100ms', '--max-rounds', String(MAX_ROUNDS), '--downtime-budget', `${BUDGET_MS}ms`, '--compress', 'none', ...(point.channels ? ['--channels', '2'] : [])],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const status = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    expect(struck()).toBeDefined();
    expect(status, `stderr: ${stderr}`).toBe(1);
    const report = JSON.parse(stdout) as { outcome: string; guestRunningOn: string; error?: { code: string } };
    expect(report.outcome).toBe('failed');
    expect(report.guestRunningOn).toBe('source');
    expect(report.error?.code).toMatch(FAILURE_CODES);
  }, 40_000);
});
