// Every failure before "go" leaves a QEMU guest running on its source, and the target with no
// QEMU and no file left: a guest the target's QEMU cannot take is refused at hello before any
// page moves; a target QEMU that dies loading the device state hands the guest back (the source
// QEMU, whose state was saved, runs again with cont); a link cut mid-round ends the migration.
// One source guest serves every case, each one after the other, as a host would retry.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { afterAll, beforeAll, expect } from 'vitest';
import type { SourceDomain } from '../dist/domain/backend.js';
import { QemuSourceDomain } from '../dist/domain/qemu/source-domain.js';
import { testGuestSourceHash } from '../dist/domain/qemu/test-guest.js';
import { migrate } from '../dist/precopy/migration.js';
import type { MigrationReport } from '../dist/precopy/report.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { startAgentProcess, type AgentProcess } from './helpers/agent-process.js';
import { startCuttingProxy } from './helpers/cutting-proxy.js';
import { QEMU_FOUND, qemuTest, startTestGuest, type TestGuest } from './helpers/qemu.js';

const MIB = 128;
const RATE_PAGES_PER_SECOND = 5000;

let guest: TestGuest;
let domain: QemuSourceDomain;
let agent: AgentProcess;
let qemuDir: string;

beforeAll(async () => {
  if (!QEMU_FOUND) return;
  qemuDir = await mkdtemp('/dev/shm/livemig-test-target-');
  agent = await startAgentProcess(['--backend', 'qemu', '--qemu-dir', qemuDir]);
  guest = await startTestGuest(MIB, { ratePagesPerSecond: RATE_PAGES_PER_SECOND });
  await guest.waitForReports(1);
  domain = await QemuSourceDomain.attach(guest.qemu, { kernel: { kind: 'test-guest', hash: await testGuestSourceHash() }, name: 'qemu-failures' });
}, 60_000);

afterAll(async () => {
  if (!QEMU_FOUND) return;
  await agent?.stop();
  await guest?.stop();
  await rm(qemuDir, { recursive: true, force: true });
});

/** `domain` with some of its members replaced. */
function altered(overrides: Partial<Record<keyof SourceDomain, unknown>>): SourceDomain {
  return new Proxy(domain, {
    get(target, key) {
      if (key in overrides) return overrides[key as keyof SourceDomain];
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as SourceDomain;
}

/** The guest runs on its source: QEMU says so, and it reports on, with no page found wrong. */
async function expectRunningOnSource(report: MigrationReport): Promise<void> {
  expect(report.guestRunningOn).toBe('source');
  expect(domain.paused).toBe(false);
  expect(guest.qemu.running).toBe(true);
  expect(await guest.qemu.qmp.execute('query-status')).toMatchObject({ status: 'running' });
  const before = (await guest.reports()).length;
  const after = await guest.waitForReports(before + 2);
  expect(after.at(-1)!.writes).toBeGreaterThan(after.at(-3)!.writes);
  expect(after.every((r) => r.errors === 0)).toBe(true);
}

/** The target discarded its copy and left nothing: no QEMU folder (RAM file, serial log). */
async function expectTargetDiscarded(report: MigrationReport, peerCode?: string): Promise<void> {
  const discarded = await agent.waitFor((e) => e.type === 'migration-discarded' && e.migrationId === report.migrationId);
  if (peerCode) expect((discarded.error as { code: string }).code).toBe(peerCode);
  expect(await readdir(qemuDir)).toEqual([]);
}

const INCOMPATIBLE = [
  ['a machine type its QEMU lacks', { machine: 'pc-q35-99.0' }],
  ['a newer QEMU than its own', { qemuVersion: '99.0.0' }],
] as const;

for (const [what, change] of INCOMPATIBLE) {
  qemuTest(`a guest that needs ${what} is refused at hello with ERR_INCOMPATIBLE_DOMAIN before any page moves`, async () => {
    const descriptor = { ...domain.descriptor, config: { ...domain.descriptor.config, ...change } };
    const report = await migrate(altered({ descriptor }), await connectWebSocket(agent.url), { targetName: agent.url });

    expect(report.outcome).toBe('failed');
    expect(report.error).toMatchObject({ code: 'ERR_PEER_ABORTED', peerCode: 'ERR_INCOMPATIBLE_DOMAIN' });
    expect(report.bytesRaw).toBe(0);
    expect(report.rounds).toEqual([]);
    await expectTargetDiscarded(report, 'ERR_INCOMPATIBLE_DOMAIN');
    await expectRunningOnSource(report);
  }, 60_000);
}

qemuTest('a target QEMU that dies loading the device state leaves the guest resumed on its source', async () => {
  // Half of the real stream: the target's QEMU reads to its end, fails the load and exits.
  const truncated = async (): Promise<Uint8Array> => {
    const state = await domain.saveState();
    return state.subarray(0, state.length >> 1);
  };
  const report = await migrate(altered({ saveState: truncated }), await connectWebSocket(agent.url), { targetName: agent.url, codec: 'none' });

  expect(report.outcome).toBe('failed');
  expect(report.error).toMatchObject({ code: 'ERR_PEER_ABORTED', peerCode: 'ERR_DOMAIN_FAILED' });
  expect(report.error!.message).toMatch(/QEMU/);
  // It got as far as the pause: every page was sent, then the state.
  expect(report.rounds.at(-1)!.stopAndCopy).toBe(true);
  await expectTargetDiscarded(report, 'ERR_DOMAIN_FAILED');
  await expectRunningOnSource(report);
}, 60_000);

qemuTest('a link cut in the middle of the first round leaves the guest running on its source', async () => {
  const proxy = await startCuttingProxy(agent.url);
  try {
    proxy.cutAfter((MIB * 2 ** 20) / 3);
    const report = await migrate(domain, await connectWebSocket(proxy.url), { targetName: proxy.url, codec: 'none' });

    expect(report.outcome).toBe('failed');
    expect(report.error?.code).toMatch(/^ERR_(CONNECTION_CLOSED|PEER_ABORTED)$/);
    expect(report.bytesRaw).toBeLessThan(MIB * 2 ** 20);
    await expectTargetDiscarded(report);
    await expectRunningOnSource(report);
  } finally {
    await proxy.close();
  }
}, 60_000);
