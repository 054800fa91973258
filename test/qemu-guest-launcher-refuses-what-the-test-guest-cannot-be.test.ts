// What a host refuses before it starts any QEMU: a QEMU guest's start request whose memory is not
// whole MiB or too small, with more than one vCPU, or with a config field the test guest has no
// use for (ERR_INVALID_ARGUMENT); a host without QEMU has no such kind (ERR_UNKNOWN_BACKEND); and
// `vm start --backend qemu` with a simulated guest's flag is a usage error (exit 2). None of this
// needs QEMU, so it runs everywhere.
import { expect, test } from 'vitest';
import { HostAgent } from '../dist/agent/host-agent.js';
import { qemuGuestLauncher } from '../dist/agent/qemu-guest-launcher.js';
import { runLivemig } from './helpers/host-process.js';

const MiB = 2 ** 20;
const launch = qemuGuestLauncher({ dir: '/nonexistent-qemu-dir' });

test.each([
  ['memory not whole MiB', { name: 'q', memoryBytes: 64 * MiB + 4096 }, /whole MiB/],
  ['memory below 16 MiB', { name: 'q', memoryBytes: 8 * MiB }, /16 MiB or more/],
  ['two vCPUs', { name: 'q', memoryBytes: 64 * MiB, vcpus: 2 }, /1 vCPU, not 2/],
  ['a simulated workload', { name: 'q', memoryBytes: 64 * MiB, config: { workload: 'uniform' } }, /no field "workload"/],
  ['a negative dirty rate', { name: 'q', memoryBytes: 64 * MiB, config: { dirtyRateBytesPerSec: -1 } }, /dirtyRateBytesPerSec/],
  ['a region of no MiB', { name: 'q', memoryBytes: 64 * MiB, config: { regionMiB: 0 } }, /region/],
])('a QEMU guest with %s is refused before QEMU starts', async (_what, request, message) => {
  await expect(launch(request)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(message) });
});

test('a host run without QEMU refuses a QEMU guest with ERR_UNKNOWN_BACKEND, naming what it runs', async () => {
  const host = await HostAgent.start({ capacityBytes: 256 * MiB });
  try {
    await expect(host.startGuest({ name: 'q', kind: 'qemu', memoryBytes: 64 * MiB })).rejects.toMatchObject({ code: 'ERR_UNKNOWN_BACKEND', message: expect.stringContaining('known: sim') });
    expect(host.status().reservedBytes).toBe(0);
  } finally {
    await host.close();
  }
});

test('vm start --backend qemu with a simulated guest flag is a usage error', () => {
  const run = runLivemig(['vm', 'start', '--host', 'http://127.0.0.1:9', '--backend', 'qemu', '--name', 'q', '--memory', '64MiB', '--seed', '3']);
  expect(run.stderr).toContain('--seed is for the simulated guest, not --backend qemu');
  expect(run.status).toBe(2);
});
