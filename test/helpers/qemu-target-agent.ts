// A QEMU guest booted here and a target agent in another process to move it to (`livemig listen
// --backend qemu` with its own QEMU folder under /dev/shm), as the tests of live QEMU migration
// set them up; whatever a test started is ended, and the folder removed, after it.
import { mkdtemp, rm } from 'node:fs/promises';
import { afterEach } from 'vitest';
import type { QemuStartOptions } from '../../dist/domain/qemu/qemu-process.js';
import { QemuSourceDomain } from '../../dist/domain/qemu/source-domain.js';
import { testGuestSourceHash, type TestGuestOptions } from '../../dist/domain/qemu/test-guest.js';
import { startAgentProcess, type AgentProcess } from './agent-process.js';
import { startTestGuest, type TestGuest } from './qemu.js';

export interface QemuToAgent {
  agent: AgentProcess;
  /** The agent's QEMU folder: the RAM files and serial logs of the guests it runs. */
  qemuDir: string;
  guest: TestGuest;
  /** The guest attached as a source domain, after its first report. */
  domain: QemuSourceDomain;
}

export interface QemuToAgentOptions {
  memoryMiB: number;
  guest?: TestGuestOptions;
  qemu?: QemuStartOptions;
  /** The domain's name in the migration. */
  name: string;
}

/**
 * Registers the cleanup after each test of the file and returns what starts the agent and the
 * guest for one test: the guest has reported once, so it runs its workload, when it is attached.
 */
export function qemuToAgentPerTest(): (options: QemuToAgentOptions) => Promise<QemuToAgent> {
  let guest: TestGuest | undefined;
  let agent: AgentProcess | undefined;
  let qemuDir: string | undefined;
  afterEach(async () => {
    await agent?.stop();
    await guest?.stop();
    if (qemuDir) await rm(qemuDir, { recursive: true, force: true });
    agent = guest = qemuDir = undefined;
  });
  return async (options) => {
    qemuDir = await mkdtemp('/dev/shm/livemig-test-target-');
    agent = await startAgentProcess(['--backend', 'qemu', '--qemu-dir', qemuDir]);
    guest = await startTestGuest(options.memoryMiB, options.guest, options.qemu);
    await guest.waitForReports(1);
    const domain = await QemuSourceDomain.attach(guest.qemu, { kernel: { kind: 'test-guest', hash: await testGuestSourceHash() }, name: options.name });
    return { agent, qemuDir, guest, domain };
  };
}
