// A running QEMU guest (livemig's test guest, writing about 30 MB/s) migrates live from this
// process to a target agent in another process (`livemig listen --backend qemu`): the outcome
// is completed and verified (livemig's digest of RAM and device state agrees on both sides at
// the switchover), the guest runs on at the target with its own memory check finding nothing
// wrong, and the QEMU here is gone with its RAM file.
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { afterEach, expect } from 'vitest';
import { QemuSourceDomain } from '../dist/domain/qemu/source-domain.js';
import { readTestGuestLog, testGuestSourceHash, type TestGuestReport } from '../dist/domain/qemu/test-guest.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { startAgentProcess, type AgentProcess } from './helpers/agent-process.js';
import { qemuTest, startTestGuest, waitFor, type TestGuest } from './helpers/qemu.js';

const MIB = 128;
/** About 30 MB/s of page writes. */
const RATE_PAGES_PER_SECOND = 7500;

let guest: TestGuest | undefined;
let agent: AgentProcess | undefined;
let qemuDir: string | undefined;

afterEach(async () => {
  await agent?.stop();
  await guest?.stop();
  if (qemuDir) await rm(qemuDir, { recursive: true, force: true });
  agent = guest = qemuDir = undefined;
});

qemuTest('the guest moves live, verified, and keeps running and checking itself on the target; the source QEMU is gone', async () => {
  qemuDir = await mkdtemp('/dev/shm/livemig-test-target-');
  agent = await startAgentProcess(['--backend', 'qemu', '--qemu-dir', qemuDir]);
  guest = await startTestGuest(MIB, { ratePagesPerSecond: RATE_PAGES_PER_SECOND });
  await guest.waitForReports(1);
  const domain = await QemuSourceDomain.attach(guest.qemu, { kernel: { kind: 'test-guest', hash: await testGuestSourceHash() }, name: 'e2e-qemu' });
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
  const reports = await waitFor('three reports from the guest on the target', async () => {
    const r = (await readTestGuestLog(consolePath)).filter((l): l is TestGuestReport => l.kind === 'report');
    return r.length >= 3 ? r : undefined;
  });
  for (let i = 1; i < reports.length; i++) {
    expect(reports[i]!.seconds).toBeGreaterThan(reports[i - 1]!.seconds);
    expect(reports[i]!.writes).toBeGreaterThan(reports[i - 1]!.writes);
    expect(reports[i]!.checked).toBeGreaterThan(reports[i - 1]!.checked);
  }
  // Its clock continued from where it stood on the source, rather than from a fresh boot.
  const sourceReports = await guest.reports();
  expect(reports[0]!.seconds).toBeGreaterThanOrEqual(sourceReports.at(-1)!.seconds);
  expect(reports.at(-1)!.passes).toBeGreaterThan(sourceReports.at(-1)!.passes);
  expect(reports.every((r) => r.errors === 0)).toBe(true);
  expect((await readTestGuestLog(consolePath)).some((l) => l.kind === 'check-failed')).toBe(false);

  // The agent ends the guests it runs when it stops, and leaves no file behind.
  await agent.stop();
  await agent.closed;
  expect(await readdir(qemuDir)).toEqual([]);
}, 90_000);
