// Auto-converge slows a QEMU guest through a CFS quota on a cgroup that holds its vCPU threads
// (QEMU's own throttle works only inside its own migration): the CPU time a busy guest's vCPU gets
// falls to the quota, and comes back once the throttle is lifted; the thread is back in its own
// cgroup then, and the cgroup made for it is gone. A pause lifts the quota for its duration. A
// quota left behind by a process that ended without lifting it is freed by the next attach, and
// a cgroup of the same name found empty is taken over.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { afterEach, expect, test } from 'vitest';
import { QemuSourceDomain } from '../dist/domain/qemu/source-domain.js';
import { testGuestSourceHash } from '../dist/domain/qemu/test-guest.js';
import { VcpuQuota, cpuControllerMount, vcpuQuotaName } from '../dist/domain/qemu/vcpu-quota.js';
import { qemuTest, startTestGuest, type TestGuest } from './helpers/qemu.js';

let guest: TestGuest | undefined;
let domain: QemuSourceDomain | undefined;

afterEach(async () => {
  if (domain) await domain.destroy();
  else await guest?.stop();
  guest = domain = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The share of one core the guest's vCPU threads got over `ms`. */
async function vcpuShare(d: QemuSourceDomain, ms: number): Promise<number> {
  const cpu = d.vcpuTimeMs()!;
  const wall = performance.now();
  await sleep(ms);
  return (d.vcpuTimeMs()! - cpu) / (performance.now() - wall);
}

/** The thread's cgroup in the cpu hierarchy. */
function cpuCgroup(pid: number, tid: number): string {
  const line = readFileSync(`/proc/${pid}/task/${tid}/cgroup`, 'latin1').split('\n').find((l) => l.split(':')[1]?.split(',').includes('cpu'));
  return line!.split(':')[2]!;
}

test('the cpu controller is found in a mount table: alone or with cpuacct, never cpuset or cgroup v2', () => {
  expect(cpuControllerMount('cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n')).toBe('/sys/fs/cgroup/cpu');
  expect(cpuControllerMount('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\ncgroup /x/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0')).toBe('/x/cpu,cpuacct');
  expect(cpuControllerMount('cgroup /sys/fs/cgroup/cpuset cgroup rw,cpuset 0 0\ncgroup /sys/fs/cgroup/cpuacct cgroup rw,cpuacct 0 0')).toBeUndefined();
  expect(cpuControllerMount('cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n')).toBeUndefined();
});

qemuTest('a busy guest gets the vCPU time its throttle leaves it, and all of it again once lifted', async () => {
  // This host mounts cgroup v1's cpu controller (CI runs here as root); the throttle needs it.
  const mount = cpuControllerMount(readFileSync('/proc/self/mounts', 'latin1'));
  expect(mount).toBeDefined();
  guest = await startTestGuest(64, { ratePagesPerSecond: 0 });
  await guest.waitForReports(1);
  domain = await QemuSourceDomain.attach(guest.qemu, { kernel: { kind: 'test-guest', hash: await testGuestSourceHash() }, name: 'throttled' });
  const pid = guest.qemu.pid;
  const [vcpu] = await guest.qemu.qmp.execute<Array<{ 'thread-id': number }>>('query-cpus-fast');
  const tid = vcpu!['thread-id'];
  const home = cpuCgroup(pid, tid);

  // Shares are of one core on a host that CI's other tests keep busy too: the throttled one is
  // bounded by the quota whatever the load; the free ones only have to be well above it.
  const free = await vcpuShare(domain, 1500);
  expect(free, 'an unpaced test guest keeps its vCPU busy').toBeGreaterThan(0.3);

  domain.setThrottle(0.9);
  expect(domain.throttleUnavailable).toBeUndefined();
  const own = cpuCgroup(pid, tid);
  expect(own).not.toBe(home);
  expect(readFileSync(`${mount}${own}/cpu.cfs_quota_us`, 'latin1').trim()).toBe('10000');
  await sleep(200);
  const throttled = await vcpuShare(domain, 1500);
  expect(throttled, `throttled to a tenth of a core, from ${free.toFixed(2)}`).toBeLessThan(0.15);

  domain.setThrottle(0);
  expect(cpuCgroup(pid, tid)).toBe(home);
  expect(existsSync(`${mount}${own}`)).toBe(false);
  const again = await vcpuShare(domain, 1500);
  expect(again).toBeGreaterThan(0.3);

  // The pause lifts the quota: a vCPU out of it would hold QEMU's stop, and the device-state
  // save that runs on it, for up to a period. The next throttle puts it back.
  domain.setThrottle(0.99);
  const last = cpuCgroup(pid, tid);
  expect(last).not.toBe(home);
  expect(readFileSync(`${mount}${last}/cpu.cfs_quota_us`, 'latin1').trim()).toBe('1000');
  await domain.pause();
  expect(readFileSync(`${mount}${last}/cpu.cfs_quota_us`, 'latin1').trim()).toBe('-1');
  await domain.resume();
  domain.setThrottle(0.5);
  expect(readFileSync(`${mount}${last}/cpu.cfs_quota_us`, 'latin1').trim()).toBe('50000');

  // A throttle still in force when the guest ends leaves no cgroup behind.
  await domain.destroy();
  domain = undefined;
  expect(existsSync(`${mount}${last}`)).toBe(false);
}, 60_000);

qemuTest('a quota a killed migration left behind is lifted by the next attach, and its cgroup taken over', async () => {
  const mount = cpuControllerMount(readFileSync('/proc/self/mounts', 'latin1'));
  expect(mount).toBeDefined();
  guest = await startTestGuest(64, { ratePagesPerSecond: 0 });
  await guest.waitForReports(1);
  const pid = guest.qemu.pid;
  const [vcpu] = await guest.qemu.qmp.execute<Array<{ 'thread-id': number }>>('query-cpus-fast');
  const tid = vcpu!['thread-id'];
  const home = cpuCgroup(pid, tid);

  // What a source process killed mid-migration leaves: the vCPU in its cgroup at a 99% throttle.
  const left = VcpuQuota.open(pid, [tid], vcpuQuotaName(pid));
  expect(typeof left).not.toBe('string');
  (left as VcpuQuota).set(0.99);
  const leftover = cpuCgroup(pid, tid);
  expect(leftover).toBe(`${home === '/' ? '' : home}/${vcpuQuotaName(pid)}`);
  expect(readFileSync(`${mount}${leftover}/cpu.cfs_quota_us`, 'latin1').trim()).toBe('1000');

  domain = await QemuSourceDomain.attach(guest.qemu, { kernel: { kind: 'test-guest', hash: await testGuestSourceHash() }, name: 'left-throttled' });
  expect(cpuCgroup(pid, tid)).toBe(home);
  expect(existsSync(`${mount}${leftover}`)).toBe(false);
  expect(await vcpuShare(domain, 1000), 'the vCPU runs free again').toBeGreaterThan(0.3);

  // An empty cgroup of the name (its threads gone home, its removal failed) is taken over; one
  // named for a QEMU that no longer runs is removed.
  mkdirSync(`${mount}${leftover}`);
  const stale = `${mount}${home === '/' ? '' : home}/${vcpuQuotaName(2 ** 22 + 1)}`;
  mkdirSync(stale);
  domain.setThrottle(0.5);
  expect(existsSync(stale)).toBe(false);
  expect(domain.throttleUnavailable).toBeUndefined();
  expect(cpuCgroup(pid, tid)).toBe(leftover);
  expect(readFileSync(`${mount}${leftover}/cpu.cfs_quota_us`, 'latin1').trim()).toBe('50000');
  domain.setThrottle(0);
  expect(cpuCgroup(pid, tid)).toBe(home);
  expect(existsSync(`${mount}${leftover}`)).toBe(false);
}, 60_000);
