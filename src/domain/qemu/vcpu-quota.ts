/**
 * Throttling a QEMU guest's vCPUs from outside QEMU, for auto-converge: QEMU's own throttle runs
 * only inside its own migration. The vCPU threads are moved into a cgroup of their own under the
 * kernel's `cpu` controller, and its CFS quota takes the asked share of their time away: at 40%,
 * the threads together may run 60% of each 100 ms period per vCPU.
 *
 * This needs the cgroup v1 `cpu` hierarchy mounted and writable (as root), where single threads
 * may be moved (`tasks`). On cgroup v2 a thread moves only within a threaded subtree, which this
 * does not set up; there, and without the rights, {@link VcpuQuota.open} says why and the guest
 * is not throttled. The threads go back to their cgroup when the quota is closed.
 */

import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** CFS period of the quota, in microseconds (the kernel's default). */
const PERIOD_US = 100_000;

/** The least quota written, in microseconds: the kernel refuses less than 1 ms. */
const MIN_QUOTA_US = 1_000;

/** Where the cgroup v1 `cpu` controller is mounted, from a mount table; undefined if it is not. */
export function cpuControllerMount(mounts: string): string | undefined {
  for (const line of mounts.split('\n')) {
    const [, dir, type, options] = line.split(' ');
    if (type === 'cgroup' && dir !== undefined && options?.split(',').includes('cpu')) return dir.replace(/\\040/g, ' ');
  }
  return undefined;
}

/** The path of thread `tid`'s cgroup in the `cpu` hierarchy, from its `/proc/.../cgroup` file. */
function cpuCgroupOf(pid: number, tid: number): string {
  const lines = readFileSync(`/proc/${pid}/task/${tid}/cgroup`, 'latin1').split('\n');
  for (const line of lines) {
    const [, controllers, path] = line.split(':');
    if (controllers?.split(',').includes('cpu') && path !== undefined) return path;
  }
  throw new Error(`thread ${tid} is in no cgroup of the cpu controller`);
}

/** A cgroup holding one QEMU's vCPU threads, whose CFS quota throttles them. */
export class VcpuQuota {
  #closed = false;

  private constructor(
    /** The cgroup's directory. */
    readonly dir: string,
    /** The directory of the cgroup the threads came from. */
    private readonly home: string,
    private readonly tids: readonly number[],
  ) {}

  /**
   * Moves the vCPU threads `tids` of QEMU process `pid` into a new cgroup named `name` beside
   * theirs, unthrottled for now. Returns the quota, or why the threads cannot be throttled here.
   */
  static open(pid: number, tids: readonly number[], name: string, mounts = '/proc/self/mounts'): VcpuQuota | string {
    const unique = [...new Set(tids)];
    let table: string;
    try {
      table = readFileSync(mounts, 'latin1');
    } catch (err) {
      return `the mount table cannot be read (${(err as Error).message})`;
    }
    const root = cpuControllerMount(table);
    if (root === undefined) return 'no cgroup v1 cpu controller is mounted (on cgroup v2 vCPU threads cannot be moved on their own)';
    let dir: string | undefined;
    try {
      const home = join(root, cpuCgroupOf(pid, unique[0]!));
      dir = join(home, name);
      mkdirSync(dir);
      writeFileSync(join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
      const quota = new VcpuQuota(dir, home, unique);
      try {
        for (const tid of unique) writeFileSync(join(dir, 'tasks'), String(tid));
      } catch (err) {
        quota.close();
        throw err;
      }
      return quota;
    } catch (err) {
      if (dir !== undefined) removeQuietly(dir);
      return `the vCPU threads cannot be moved into a cgroup of their own (${(err as Error).message})`;
    }
  }

  /** Takes `fraction` (0 to 1) of the vCPUs' time away from now on; 0 lifts the quota. */
  set(fraction: number): void {
    if (this.#closed) return;
    const quota = fraction <= 0 ? -1 : Math.max(MIN_QUOTA_US, Math.round((1 - fraction) * PERIOD_US * this.tids.length));
    writeFileSync(join(this.dir, 'cpu.cfs_quota_us'), String(quota));
  }

  /**
   * Puts the threads back in their cgroup and removes this one. Never throws: threads already
   * gone (QEMU ended) need no moving, and a cgroup that cannot be removed is left behind empty.
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const tid of this.tids) {
      try {
        writeFileSync(join(this.home, 'tasks'), String(tid));
      } catch {
        // The thread has ended.
      }
    }
    removeQuietly(this.dir);
  }
}

function removeQuietly(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Still holding a thread that could not be moved, or gone already: left as it is.
  }
}
