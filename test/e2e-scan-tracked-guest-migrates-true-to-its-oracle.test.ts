// A backend that keeps no dirty log (dirtyTracking "scan") migrates live: the engine finds the
// changed pages itself by hashing guest memory against what it sent. The guest here is a
// simulated one whose log is hidden behind a wrapper, so the replay oracle can check the result.
import { expect, test } from 'vitest';
import type { SourceDomain } from '../dist/domain/backend.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { defaultPolicy, FLOOR_OVER_BUDGET_ROUNDS } from '../dist/precopy/policy.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { agentProcessForFile, sleep } from './helpers/agent-process.js';
import { expectAgentGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;
const LOG_HOOKS = new Set(['enableDirtyLog', 'disableDirtyLog', 'readDirtyLog', 'peekDirtyCount']);

/**
 * `guest` declaring a scan: its dirty-log hooks throw if called, and every hook call is counted.
 */
function scanTracked(guest: SimulatedGuest): { domain: SourceDomain; calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const domain = new Proxy(guest, {
    get(target, key) {
      if (key === 'dirtyTracking') return 'scan';
      const value = Reflect.get(target, key, target);
      if (typeof key !== 'string' || typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls[key] = (calls[key] ?? 0) + 1;
        if (LOG_HOOKS.has(key)) throw new Error(`${key} called on a domain that keeps no dirty log`);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as unknown as SourceDomain;
  return { domain, calls };
}

const agent = agentProcessForFile();

test.each(['none', 'lz4'] as const)('a guest dirtying 40 MB/s arrives intact over codec %s and runs on true to its oracle', async (codec) => {
  const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 2, workload: 'uniform', dirtyRateBytesPerSec: 40e6, hotSetBytes: 8 * MiB, seed: 17 };
  const guest = await SimulatedGuest.boot(config, 'e2e-scan');
  try {
    await sleep(100);
    const { domain, calls } = scanTracked(guest);
    const transport = await connectWebSocket(agent.url);
    // Three rounds while the guest runs, so that scans find pages it dirtied meanwhile.
    const report = await migrate(domain, transport, {
      codec,
      destroySource: false,
      targetName: agent.url,
      policy: (s) => (s.round >= 3 ? 'stop-and-copy' : 'continue'),
    });

    expect(report.error).toBeUndefined();
    expect(report.outcome).toBe('completed');
    expect(report.verified).toBe(true);
    expect(report.rounds.map((r) => r.stopAndCopy)).toEqual([false, false, false, true]);
    expect(report.rounds[0]!.pages).toBe(config.memoryBytes / 4096);
    // Each later round sent what a scan found the guest had changed since it was sent.
    for (const round of report.rounds.slice(1, 3)) expect(round.pages, `round ${round.round}`).toBeGreaterThan(0);
    for (const hook of LOG_HOOKS) expect(calls[hook] ?? 0, hook).toBe(0);
    expect(calls.readPages).toBeGreaterThan(0);

    const { atPause, oracle, later } = await expectAgentGuestMatchesOracle(agent.url, report, guest, config);
    expect(oracle.vcpus).toEqual(atPause);
    expect(later.state).toBe('running');
    for (let i = 0; i < config.vcpus; i++) expect(later.steps[i]!).toBeGreaterThan(atPause[i]!.steps);
  } finally {
    await guest.destroy();
  }
});

test('a domain that asks for a scan but whose memory cannot be read from here is refused before anything happens', async () => {
  const guest = await SimulatedGuest.boot({ memoryBytes: 8 * MiB, vcpus: 1, workload: 'idle', dirtyRateBytesPerSec: 0, hotSetBytes: MiB, seed: 2 });
  try {
    const { domain } = scanTracked(guest);
    const hidden = new Proxy(domain, {
      get: (target, key) => (key === 'memory' ? () => ({ kind: 'none' }) : Reflect.get(target, key)),
    });
    const transport = await connectWebSocket(agent.url);
    try {
      await expect(migrate(hidden, transport)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    } finally {
      transport.destroy();
    }
    expect(guest.paused).toBe(false);
  } finally {
    await guest.destroy();
  }
});

// A budget no scan can meet: the default policy gives up once the fastest scan has stayed over it
// for FLOOR_OVER_BUDGET_ROUNDS rounds and FLOOR_OVER_BUDGET_MS, long before the stall deadline.
test.each(['abort', 'force-switchover'] as const)('a guest whose scan alone overruns the budget ends early with ERR_NO_PROGRESS naming the floor (%s)', async (timeoutAction) => {
  const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 2, workload: 'uniform', dirtyRateBytesPerSec: 40e6, hotSetBytes: 8 * MiB, seed: 5 };
  const guest = await SimulatedGuest.boot(config, `e2e-scan-floor-${timeoutAction}`);
  try {
    await sleep(100);
    const { domain } = scanTracked(guest);
    const transport = await connectWebSocket(agent.url);
    // The default policy, told of at least one dirty page: on a busy host the guest's threads may
    // miss a short round altogether, and a round with nothing dirty switches over at once.
    const policy = defaultPolicy();
    const report = await migrate(domain, transport, {
      destroySource: false,
      targetName: agent.url,
      policy: (stats) => policy({ ...stats, dirtyPages: Math.max(1, stats.dirtyPages) }),
      // Far below what a scan of 64 MiB costs, and a stall deadline the test would not wait for.
      downtimeBudgetMs: 0.01,
      stallTimeoutMs: 600_000,
      // Unthrottled, the guest keeps pages dirty: a pause then never has nothing left to send.
      autoConverge: 'off',
      timeoutAction,
    });
    if (timeoutAction === 'abort') {
      expect(report.outcome).toBe('failed');
      expect(report.guestRunningOn).toBe('source');
      expect(report.error?.code).toBe('ERR_NO_PROGRESS');
      expect(report.error?.message).toMatch(/^finding dirty pages takes at least \d+ ms per pause, over the 0 ms the pause aims at/);
      expect(guest.paused).toBe(false);
    } else {
      expect(report.outcome).toBe('completed');
      expect(report.verified).toBe(true);
      expect(report.switchoverReason).toBe('forced-by-deadline');
      expect(report.forcedSwitchover?.code).toBe('ERR_NO_PROGRESS');
    }
    expect(report.rounds.filter((r) => !r.stopAndCopy).length).toBeGreaterThanOrEqual(FLOOR_OVER_BUDGET_ROUNDS);
  } finally {
    await guest.destroy();
  }
});
