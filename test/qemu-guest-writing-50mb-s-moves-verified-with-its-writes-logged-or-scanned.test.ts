// A QEMU guest writing about 50 MB/s migrates live to an agent in another process with its
// dirty pages taken from the write-protect log rather than a scan of its RAM: the outcome is
// completed and verified (livemig's digest of RAM agrees on both sides at the switchover, so
// the log missed no page), and the guest runs on at the target with its own check finding
// nothing wrong. A QEMU started without the preload moves the same way, its pages found by the
// scan.
import { expect } from 'vitest';
import { readTestGuestLog } from '../dist/domain/qemu/test-guest.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { qemuTest } from './helpers/qemu.js';
import { waitForGuestReports } from './helpers/qemu-hosts.js';
import { qemuToAgentPerTest } from './helpers/qemu-target-agent.js';
import { writeProtectTest } from './helpers/write-protect.js';

const MIB = 128;
/** About 50 MB/s of page writes. */
const RATE_PAGES_PER_SECOND = 12_500;

const start = qemuToAgentPerTest();

/** Migrates a guest writing 50 MB/s to a fresh agent and checks it arrived whole and runs on. */
async function migrateAndCheck(tracking: 'log' | 'scan'): Promise<void> {
  const { agent, guest, domain } = await start({
    memoryMiB: MIB,
    guest: { ratePagesPerSecond: RATE_PAGES_PER_SECOND },
    qemu: { writeProtectLog: tracking === 'log' },
    name: `e2e-qemu-${tracking}`,
  });
  expect(domain.dirtyLogUnavailable === undefined, String(domain.dirtyLogUnavailable)).toBe(tracking === 'log');
  expect(domain.dirtyTracking).toBe(tracking);

  // The scan reads all RAM in every pause: on a loaded machine it can outlast the default 300 ms
  // budget and the migration rightly give up (ERR_NO_PROGRESS). The scan's case is about
  // finding every page, so it gets a budget a loaded scan fits.
  const budget = tracking === 'scan' ? { downtimeBudgetMs: 1000 } : {};
  const report = await migrate(domain, await connectWebSocket(agent.url), { targetName: agent.url, codec: 'none', ...budget });

  expect(report.error).toBeUndefined();
  expect(report.outcome).toBe('completed');
  expect(report.guestRunningOn).toBe('target');
  expect(report.verified).toBe(true);
  expect(report.missedPages).toBeUndefined();
  expect(report.sourceDigest).toBe(report.targetDigest);
  // The guest wrote while pre-copy ran: the later rounds found pages to send.
  expect(report.rounds.length).toBeGreaterThan(1);
  expect(report.rounds[1]!.pages).toBeGreaterThan(0);

  const resumed = await agent.waitFor((e) => e.type === 'migration-resumed' && e.migrationId === report.migrationId);
  const consolePath = resumed.console as string;
  const sourceReports = await guest.reports();
  const reports = await waitForGuestReports(consolePath, 3);
  expect(reports.at(-1)!.writes).toBeGreaterThan(sourceReports.at(-1)!.writes);
  expect(reports.at(-1)!.passes).toBeGreaterThan(sourceReports.at(-1)!.passes);
  expect(reports.every((r) => r.errors === 0)).toBe(true);
  expect((await readTestGuestLog(consolePath)).some((l) => l.kind === 'check-failed')).toBe(false);
}

writeProtectTest('a guest writing 50 MB/s moves live with its writes logged, verified, and runs on checking itself', () => migrateAndCheck('log'), 120_000);

qemuTest('a guest writing 50 MB/s in a QEMU without the preload moves live with its pages found by the scan, verified', () => migrateAndCheck('scan'), 120_000);
