// `livemig demo --backend qemu`, run as a user runs it: the QEMU test guest migrates to an agent
// in a second process and is checked on the target by its own memory check.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { BIN } from './helpers/agent-process.js';
import { qemuTest } from './helpers/qemu.js';

function run(args: string[], timeout = 60_000) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout });
}

qemuTest('demo --backend qemu --json migrates the QEMU test guest and finds it running on the target, consistent', async () => {
  const r = run(['demo', '--backend', 'qemu', '--memory', '64MiB', '--dirty-rate', '20MB/s', '--warmup', '1s', '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const report = JSON.parse(r.stdout);
  expect(report.outcome).toBe('completed');
  expect(report.verified).toBe(true);
  expect(report.domain.kind).toBe('qemu');
  expect(report.guest).toEqual({ kind: 'qemu-test-guest', memoryMiB: 64, ratePagesPerSecond: Math.round(20e6 / 4096) });
  expect(report.guestCheck).toMatchObject({ errors: 0, sourceGone: true, ok: true });
  expect(report.guestCheck.reports).toBeGreaterThanOrEqual(2);
}, 60_000);

qemuTest('demo --backend qemu: a guest that cannot be checked after a completed migration is exit 4 with one report, not a failure', async () => {
  const preload = fileURLToPath(new URL('./fixtures/unreadable-guest-log.mjs', import.meta.url));
  const r = spawnSync(process.execPath, ['--import', preload, BIN, 'demo', '--backend', 'qemu', '--memory', '64MiB', '--dirty-rate', '20MB/s', '--warmup', '1s', '--run-after', '500ms', '--json'], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(4);
  const report = JSON.parse(r.stdout);
  expect(report).toMatchObject({ outcome: 'completed', guestRunningOn: 'target', guestCheck: { ok: false, error: { code: 'ERR_DOMAIN_FAILED' } } });
}, 60_000);

test('demo refuses a backend it does not know, and the simulated guest\'s flags with --backend qemu, as usage errors', () => {
  const unknown = run(['demo', '--backend', 'xen']);
  expect(unknown.status).toBe(2);
  expect(unknown.stderr).toContain('ERR_INVALID_ARGUMENT');
  const simFlag = run(['demo', '--backend', 'qemu', '--workload', 'idle']);
  expect(simFlag.status).toBe(2);
  expect(simFlag.stderr).toMatch(/--workload is for the simulated guest/);
});
