// A guest that dirties memory faster than the link sends it: auto-converge brings the pause
// within budget; without it the migration ends as its timeout action says, and an abort leaves
// the guest running on the source, intact; a domain that cannot be throttled is reported as such.
// Real WebSockets, a capped link.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { type MigrateOptions } from '../dist/precopy/migrate-options.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { checkAgainstOracle } from '../dist/cli/oracle-check.js';
import { formatReport, progressLine } from '../dist/cli/render.js';
import type { MigrationProgress } from '../dist/precopy/report.js';
import { expectGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;
// 40 MB/s of writes over a 4 MiB working set, through a 20 MB/s link: every round leaves the
// whole working set dirty again, which alone would take ~210 ms to send.
const config: SimGuestConfig = { memoryBytes: 32 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 40e6, hotSetBytes: 4 * MiB, seed: 11 };
const link: MigrateOptions = { codec: 'none', maxBandwidthBytesPerSec: 20e6, downtimeBudgetMs: 100, maxRounds: 1000 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup() {
  const agent = await TargetAgent.start();
  cleanups.push(() => agent.close());
  const guest = await SimulatedGuest.boot(config, 'outruns-the-link');
  cleanups.push(() => guest.destroy());
  await new Promise((r) => setTimeout(r, 100));
  return { agent, guest };
}

test('auto-converge throttles the guest until the pause fits the budget', async () => {
  const { agent, guest } = await setup();
  const report = await migrate(guest, await connectWebSocket(agent.url), { ...link, autoConverge: 'auto', destroySource: false });
  expect(report.error).toBeUndefined();
  expect(report.outcome).toBe('completed');
  expect(report.maxThrottlePercent).toBeGreaterThanOrEqual(20);
  expect(report.throttleUnavailable).toBeUndefined();
  expect(formatReport(report)).toContain(`auto-converge slowed the guest by up to ${report.maxThrottlePercent}%`);
  expect(report.rounds.some((r) => r.throttlePercent > 0)).toBe(true);
  expect(report.forcedSwitchover).toBeUndefined();
  // It stopped because the predicted pause fitted, not because it ran out of rounds.
  expect(report.predictedDowntimeMs!).toBeLessThanOrEqual(report.downtimeBudgetMs);
  expect(report.verified).toBe(true);
  // The throttle stays here with the paused copy; the guest on the target runs true to its oracle.
  const atPause = await expectGuestMatchesOracle(guest, config);
  await expectGuestMatchesOracle(agent.migrations.get(report.migrationId)?.domain, config, atPause);
  const later = await checkAgainstOracle(agent.url, report.migrationId, config);
  expect(later.matches).toBe(true);
});

test('without auto-converge, a stall with timeout action abort leaves the guest running on the source', async () => {
  const { agent, guest } = await setup();
  const report = await migrate(guest, await connectWebSocket(agent.url), {
    ...link,
    autoConverge: 'off',
    stallTimeoutMs: 1000,
    timeoutAction: 'abort',
  });
  expect(report.outcome).toBe('failed');
  expect(report.error?.code).toBe('ERR_NO_PROGRESS');
  expect(report.guestRunningOn).toBe('source');
  expect(report.maxThrottlePercent).toBe(0);
  expect(guest.paused).toBe(false);
  await guest.pause();
  const states = guest.vcpuStates();
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, states.map((s) => s.steps)).digest);
  await guest.resume();
  // The target hears of the abort on its own time; its copy must end discarded.
  for (let i = 0; i < 100 && [...agent.migrations.values()][0]?.state !== 'discarded'; i++) await new Promise((r) => setTimeout(r, 50));
  expect([...agent.migrations.values()].map((m) => m.state)).toEqual(['discarded']);
});

test('without auto-converge, a stall with timeout action force-switchover accepts a longer pause', async () => {
  const { agent, guest } = await setup();
  const report = await migrate(guest, await connectWebSocket(agent.url), {
    ...link,
    autoConverge: 'off',
    stallTimeoutMs: 1000,
    timeoutAction: 'force-switchover',
    destroySource: false,
  });
  expect(report.outcome).toBe('completed');
  expect(report.forcedSwitchover?.code).toBe('ERR_NO_PROGRESS');
  expect(report.verified).toBe(true);
  expect(report.downtimeMs!).toBeGreaterThan(0);
  const atPause = await expectGuestMatchesOracle(guest, config);
  await expectGuestMatchesOracle(agent.migrations.get(report.migrationId)?.domain, config, atPause);
});

test('a failed migration lifts the throttle it applied', async () => {
  const { agent, guest } = await setup();
  const controller = new AbortController();
  const report = await migrate(guest, await connectWebSocket(agent.url), {
    ...link,
    autoConverge: 'on',
    signal: controller.signal,
    progressIntervalMs: 20,
    onProgress: (p) => {
      if (p.throttlePercent > 0) {
        // This guest applies its throttle: nothing says otherwise.
        expect(p.throttleUnavailable).toBeUndefined();
        expect(progressLine(p)).not.toContain('not applied');
        controller.abort();
      }
    },
  });
  expect(report.outcome).toBe('cancelled');
  expect(report.maxThrottlePercent).toBeGreaterThan(0);
  expect(guest.throttle).toBe(0);
  expect(guest.paused).toBe(false);
});

test('a domain that cannot be throttled: the report says what auto-converge asked for and why it ran at full speed', async () => {
  const { agent, guest } = await setup();
  // As a hypervisor without the means to slow its vCPUs (a QEMU host without cgroup v1's cpu
  // controller): setThrottle does nothing and says why.
  const why = 'no writable cpu controller on this host';
  const asked: number[] = [];
  guest.setThrottle = (fraction: number) => void asked.push(fraction);
  Object.defineProperty(guest, 'throttleUnavailable', { value: why });
  const progress: MigrationProgress[] = [];
  const report = await migrate(guest, await connectWebSocket(agent.url), {
    ...link,
    autoConverge: 'on',
    stallTimeoutMs: 1000,
    timeoutAction: 'abort',
    progressIntervalMs: 20,
    onProgress: (p) => progress.push(p),
  });
  expect(report.outcome).toBe('failed');
  expect(report.error?.code).toBe('ERR_NO_PROGRESS');
  expect(report.guestRunningOn).toBe('source');
  expect(asked.some((fraction) => fraction > 0)).toBe(true);
  // Progress says so while it lasts: a throttle asked for, marked as not applied.
  const throttled = progress.filter((p) => p.throttlePercent > 0);
  expect(throttled.length).toBeGreaterThan(0);
  expect(throttled.every((p) => p.throttleUnavailable === why)).toBe(true);
  expect(progressLine(throttled[0]!)).toContain(`throttle ${String(throttled[0]!.throttlePercent).padStart(2)}% (not applied)`);
  expect(progress.filter((p) => p.throttlePercent === 0).every((p) => p.throttleUnavailable === undefined)).toBe(true);
  expect(report.maxThrottlePercent).toBeGreaterThan(0);
  expect(report.throttleUnavailable).toBe(why);
  const text = formatReport(report);
  expect(text).toContain(`auto-converge asked to slow the guest by up to ${report.maxThrottlePercent}%, but it ran at full speed: ${why}`);
  expect(text).not.toContain('auto-converge slowed the guest');
  expect(guest.paused).toBe(false);
  await expectGuestMatchesOracle(guest, config);
});
