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

import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

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

const NAME_PREFIX = 'livemig-vcpus-';

/** The name of the cgroup that throttles the vCPUs of QEMU process `pid`. */
export function vcpuQuotaName(pid: number): string {
  return `${NAME_PREFIX}${pid}`;
}

/**
 * Removes the cgroups in `dir` named for QEMU processes that no longer run: a process killed
 * while it throttled a guest leaves one behind, emptied when that QEMU ended.
 */
function sweepStale(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = name.startsWith(NAME_PREFIX) ? Number(name.slice(NAME_PREFIX.length)) : NaN;
    if (Number.isSafeInteger(pid) && pid > 0 && !existsSync(`/proc/${pid}`)) removeQuietly(join(dir, name));
  }
}

/**
 * The cgroup v1 `cpu` hierarchy's root and thread `tid`'s cgroup in it (a path from that root),
 * or why they cannot be known.
 */
function whereIs(pid: number, tid: number, mounts: string): { root: string; cgroup: string } | string {
  let table: string;
  try {
    table = readFileSync(mounts, 'latin1');
  } catch (err) {
    return `the mount table cannot be read (${(err as Error).message})`;
  }
  const root = cpuControllerMount(table);
  if (root === undefined) return 'no cgroup v1 cpu controller is mounted (on cgroup v2 vCPU threads cannot be moved on their own)';
  try {
    return { root, cgroup: cpuCgroupOf(pid, tid) };
  } catch (err) {
    return `the vCPU threads' cgroup cannot be read (${(err as Error).message})`;
  }
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
   * Moves the vCPU threads `tids` of QEMU process `pid` into a cgroup named `name` beside theirs,
   * unthrottled for now. A cgroup of that name already there (left by a process that ended without
   * closing its quota) is taken over, its quota lifted. Returns the quota, or why the threads
   * cannot be throttled here.
   */
  static open(pid: number, tids: readonly number[], name: string, mounts = '/proc/self/mounts'): VcpuQuota | string {
    const unique = [...new Set(tids)];
    const where = whereIs(pid, unique[0]!, mounts);
    if (typeof where === 'string') return where;
    // Threads still in such a cgroup belong beside it.
    const current = join(where.root, where.cgroup);
    const home = basename(current) === name ? dirname(current) : current;
    const dir = join(home, name);
    sweepStale(home);
    let made = false;
    try {
      try {
        mkdirSync(dir);
        made = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      writeFileSync(join(dir, 'cpu.cfs_quota_us'), '-1');
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
      if (made) removeQuietly(dir);
      return `the vCPU threads cannot be moved into a cgroup of their own (${(err as Error).message})`;
    }
  }

  /**
   * Frees vCPU threads that a process ended without closing its quota left in a cgroup named
   * `name`: lifts its quota, moves them back beside it and removes it. Returns whether there was
   * one; never throws (where nothing can be read or moved, nothing changes).
   */
  static freeLeftover(pid: number, tids: readonly number[], name: string, mounts = '/proc/self/mounts'): boolean {
    const unique = [...new Set(tids)];
    if (unique.length === 0) return false;
    const where = whereIs(pid, unique[0]!, mounts);
    if (typeof where === 'string') return false;
    const dir = join(where.root, where.cgroup);
    if (basename(dir) !== name) return false;
    new VcpuQuota(dir, dirname(dir), unique).close();
    return true;
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
    try {
      // Lifted first: a thread that cannot be moved (below) is not left throttled.
      writeFileSync(join(this.dir, 'cpu.cfs_quota_us'), '-1');
    } catch {
      // Gone already.
    }
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
