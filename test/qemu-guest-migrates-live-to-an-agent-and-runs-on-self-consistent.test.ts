// A running QEMU guest (livemig's test guest, writing about 30 MB/s) migrates live from this
// process to a target agent in another process (`livemig listen --backend qemu`): the outcome
// is completed and verified (livemig's digest of RAM and device state agrees on both sides at
// the switchover), the guest runs on at the target with its own memory check finding nothing
// wrong, and the QEMU here is gone with its RAM file.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { expect } from 'vitest';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { qemuTest } from './helpers/qemu.js';
import { expectGuestChecksItself } from './helpers/qemu-hosts.js';
import { qemuToAgentPerTest } from './helpers/qemu-target-agent.js';

const MIB = 128;
/** About 30 MB/s of page writes. */
const RATE_PAGES_PER_SECOND = 7500;

const start = qemuToAgentPerTest();

qemuTest('the guest moves live, verified, and keeps running and checking itself on the target; the source QEMU is gone', async () => {
  const { agent, qemuDir, guest, domain } = await start({ memoryMiB: MIB, guest: { ratePagesPerSecond: RATE_PAGES_PER_SECOND }, name: 'e2e-qemu' });
  expect(domain.descriptor).toMatchObject({ kind: 'qemu', memoryBytes: MIB * 2 ** 20, config: { machine: expect.stringMatching(/^pc-q35-\d+\.\d+$/) } });

  const report = await migrate(domain, await connectWebSocket(agent.url), { targetName: agent.url, codec: 'none' });

  expect(report.error).toBeUndefined();
  expect(report.outcome).toBe('completed');
  expect(report.guestRunningOn).toBe('target');
  // The source's RAM and device state, read again after the switchover, hash to what the target
  // held when it resumed: RAM identical at switchover.
  expect(report.verified).toBe(true);
  expect(report.sourceDigest).toBe(report.targetDigest);
  // The guest wrote while pre-copy ran, so the last round had changed pages to send.
  expect(report.rounds.at(-1)!.pages).toBeGreaterThan(0);
  expect(report.switchover!.deviceStateBytes).toBeGreaterThan(0);

  // The source QEMU has exited and its RAM file is gone.
  expect(guest.qemu.running).toBe(false);
  expect(existsSync(guest.qemu.definition.ramPath)).toBe(false);

  // On the target the guest goes on writing and checking its memory, without a page found wrong.
  const resumed = await agent.waitFor((e) => e.type === 'migration-resumed' && e.migrationId === report.migrationId);
  const consolePath = resumed.console as string;
  expect(consolePath.startsWith(qemuDir)).toBe(true);
  const reports = await expectGuestChecksItself(consolePath, 3);
  // Its clock continued from where it stood on the source, rather than from a fresh boot.
  const sourceReports = await guest.reports();
  expect(reports[0]!.seconds).toBeGreaterThanOrEqual(sourceReports.at(-1)!.seconds);
  expect(reports.at(-1)!.passes).toBeGreaterThan(sourceReports.at(-1)!.passes);

  // The agent ends the guests it runs when it stops, and leaves no file behind.
  await agent.stop();
  await agent.closed;
  expect(await readdir(qemuDir)).toEqual([]);
}, 90_000);
