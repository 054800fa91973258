/**
 * The source side of a QEMU guest: a running `qemu-system-x86_64` started by `QemuProcess`, whose
 * RAM is a `share=on` file that this process reads while the guest runs. livemig moves the RAM;
 * QEMU moves only its device state (`x-ignore-shared`, see device-state.ts).
 *
 * - Dirty pages come from the write-protect dirty log where QEMU has it (`dirtyTracking: 'log'`):
 *   QEMU's RAM mapping was registered for asynchronous write-protection by the preload
 *   (write-protect-preload.ts), and a reader process beside QEMU reads and re-arms it with
 *   PAGEMAP_SCAN (write-protect-log.ts), a few ms per GiB. Where it is missing (no gcc, a kernel
 *   before 6.7, QEMU started without it) the engine's hash scan of the RAM file finds them
 *   instead (`'scan'`), and `dirtyLogUnavailable` says why. QEMU's own dirty bitmap is reachable
 *   only from inside its migration, and the kernel's soft-dirty bits are missing where
 *   `CONFIG_MEM_SOFT_DIRTY` is off.
 * - Auto-converge throttles the vCPU threads by a CFS quota on a cgroup of their own
 *   (vcpu-quota.ts): QEMU's own throttle runs only inside its own migration, and `cpu-throttle-*`
 *   parameters set without one change nothing. Where no cgroup v1 `cpu` hierarchy can be written
 *   (`throttleUnavailable` says why) `setThrottle` does nothing, and a guest that outruns the
 *   link ends by the deadlines and the policy instead.
 * - Pause and resume are QMP `stop` and `cont`; `cont` also resumes a QEMU whose device state
 *   was saved (`postmigrate`), which is how a failed migration hands the guest back.
 */

import { readFileSync } from 'node:fs';
import { DomainFailedError } from '../../errors.js';
import type { DirtyTracking, DomainDescriptor, GuestMemory, SourceDomain } from '../backend.js';
import { openGuestMemory, type GuestMemoryAccess } from '../guest-memory.js';
import { DEFAULT_QEMU_STATE_TIMEOUT_MS, ignoreSharedRam, saveDeviceState } from './device-state.js';
import { QEMU_VCPUS, qemuDescriptor, type QemuKernelRef } from './qemu-config.js';
import { QEMU_RAM_BACKEND_ID, queryQemuIdentity, type QemuProcess } from './qemu-process.js';
import { WriteProtectLog } from './write-protect-log.js';
import { mapsRamAt } from './write-protect-preload.js';
import { VcpuQuota, vcpuQuotaName } from './vcpu-quota.js';

/** Clock ticks per second in `/proc/.../stat` (Linux's USER_HZ, 100 on every architecture livemig runs on). */
const USER_HZ = 100;

/** Options of {@link QemuSourceDomain.attach}. */
export interface QemuSourceOptions {
  /** The kernel the guest was booted with, as the target finds it (the test guest's source hash). */
  kernel: QemuKernelRef;
  /** The domain's name in reports. @default 'qemu-guest' */
  name?: string;
  /** Deadline for QEMU to save its device state, in ms. @default DEFAULT_QEMU_STATE_TIMEOUT_MS */
  stateTimeoutMs?: number;
  /**
   * Run once by `destroy()` after QEMU has ended: removes what the guest's owner keeps beside it
   * (its folder and serial log, the target domain it arrived in). @default nothing
   */
  release?: () => Promise<void>;
  /**
   * How to find dirty pages: `auto` uses QEMU's write-protect dirty log where it has one and
   * falls back to the scan; `scan` always scans. @default 'auto'
   */
  dirtyTracking?: 'auto' | 'scan';
}

/** A running QEMU guest, as the migration engine's source. */
export class QemuSourceDomain implements SourceDomain {
  readonly descriptor: DomainDescriptor;
  readonly pageCount: number;
  readonly dirtyTracking: DirtyTracking;
  /** Why dirty pages are scanned rather than logged; undefined when they are logged. */
  readonly dirtyLogUnavailable: string | undefined;
  readonly #qemu: QemuProcess;
  readonly #log: WriteProtectLog | undefined;
  readonly #access: GuestMemoryAccess;
  readonly #memory: GuestMemory;
  readonly #vcpuStatPaths: string[];
  readonly #stateTimeoutMs: number;
  #release: (() => Promise<void>) | undefined;
  #paused: boolean;
  readonly #vcpuThreads: readonly number[];
  /** The cgroup throttling the vCPUs, while a throttle is in force. */
  #quota: VcpuQuota | undefined;
  #throttleUnavailable: string | undefined;

  private constructor(
    qemu: QemuProcess,
    descriptor: DomainDescriptor,
    paused: boolean,
    vcpuThreads: number[],
    stateTimeoutMs: number,
    log: WriteProtectLog | string,
  ) {
    this.#qemu = qemu;
    this.#log = typeof log === 'string' ? undefined : log;
    this.dirtyTracking = this.#log ? 'log' : 'scan';
    this.dirtyLogUnavailable = typeof log === 'string' ? log : undefined;
    this.descriptor = descriptor;
    this.pageCount = descriptor.memoryBytes / descriptor.pageSize;
    this.#memory = { kind: 'file', path: qemu.definition.ramPath, byteOffset: 0, byteLength: descriptor.memoryBytes };
    this.#access = openGuestMemory(this.#memory, descriptor.pageSize);
    this.#paused = paused;
    this.#vcpuStatPaths = vcpuThreads.map((tid) => `/proc/${qemu.pid}/task/${tid}/stat`);
    this.#vcpuThreads = vcpuThreads;
    this.#stateTimeoutMs = stateTimeoutMs;
  }

  /**
   * Attaches to `qemu`, which runs (or is stopped) with its RAM shared in its RAM file. Reads what
   * the target needs from QEMU itself (version, resolved machine type, RAM backend), and turns on
   * `x-ignore-shared` now rather than in the pause.
   * @throws DomainFailedError if QEMU's RAM is not the shared backend the launcher makes, or QMP fails.
   */
  static async attach(qemu: QemuProcess, options: QemuSourceOptions): Promise<QemuSourceDomain> {
    const identity = await queryQemuIdentity(qemu.qmp);
    const memoryBytes = qemu.definition.memoryMiB * 1024 * 1024;
    const ram = identity.memoryBackends.find((b) => b.id === QEMU_RAM_BACKEND_ID);
    if (!ram || !ram.share || ram.size !== memoryBytes || identity.memoryBackends.length !== 1) {
      throw new DomainFailedError(
        `QEMU's RAM must be one shared backend "${QEMU_RAM_BACKEND_ID}" of ${memoryBytes} bytes; it has ${JSON.stringify(identity.memoryBackends)}`,
      );
    }
    const cpus = await qemu.qmp.execute<Array<{ 'thread-id': number }>>('query-cpus-fast');
    if (cpus.length !== QEMU_VCPUS) throw new DomainFailedError(`QEMU runs ${cpus.length} vCPUs; QEMU guests here have ${QEMU_VCPUS}`);
    const status = await qemu.qmp.execute<{ running: boolean }>('query-status');
    await ignoreSharedRam(qemu.qmp);
    const def = qemu.definition;
    const descriptor = qemuDescriptor(options.name ?? 'qemu-guest', {
      qemuVersion: identity.version,
      machine: identity.machine,
      memoryMiB: def.memoryMiB,
      ramBackendId: QEMU_RAM_BACKEND_ID,
      kernel: options.kernel,
      ...(def.append !== undefined ? { append: def.append } : {}),
    });
    const threads = cpus.map((c) => c['thread-id']);
    // A migration whose process was killed while it throttled this guest left its vCPUs slowed.
    VcpuQuota.freeLeftover(qemu.pid, threads, vcpuQuotaName(qemu.pid));
    const log = await openDirtyLog(qemu, descriptor.pageSize, options.dirtyTracking ?? 'auto');
    const domain = new QemuSourceDomain(qemu, descriptor, !status.running, threads, options.stateTimeoutMs ?? DEFAULT_QEMU_STATE_TIMEOUT_MS, log);
    domain.#release = options.release;
    return domain;
  }

  /** The QEMU process this domain drives. */
  get qemu(): QemuProcess {
    return this.#qemu;
  }

  get paused(): boolean {
    return this.#paused;
  }

  memory(): GuestMemory {
    return this.#memory;
  }

  /** Protects every page again, so that the log holds only what is written from now on. */
  async enableDirtyLog(): Promise<void> {
    if (this.#log) await this.#log.arm();
  }

  /** The reader stays for the domain's life; pages left protected cost QEMU one fault each at most. */
  disableDirtyLog(): void {}

  readDirtyLog(): Uint32Array | Promise<Uint32Array> {
    return this.#log ? this.#log.take() : new Uint32Array(0);
  }

  peekDirtyCount(): number | Promise<number> {
    return this.#log ? this.#log.peek() : 0;
  }

  /** The vCPU threads' CPU time from `/proc`; undefined once QEMU is gone. */
  vcpuTimeMs(): number | undefined {
    let ticks = 0;
    try {
      for (const path of this.#vcpuStatPaths) {
        // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
        const stat = readFileSync(path, 'latin1');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(fields[11]) + Number(fields[12]);
      }
    } catch {
      return undefined;
    }
    return Number.isFinite(ticks) ? (ticks * 1000) / USER_HZ : undefined;
  }

  /** Positioned reads from the RAM file straight into `dst`, one per run of consecutive pages. */
  readPages(pfns: Uint32Array, dst: Uint8Array): void {
    this.#access.readPages(pfns, dst);
  }

  async pause(): Promise<void> {
    // A vCPU thread out of quota would hold `stop` (and the device-state save, which runs on it)
    // up to a period: the pause lifts the throttle; a later setThrottle puts it back. A quota
    // that cannot be lifted is given up (the threads go home) rather than fail the pause.
    try {
      this.#quota?.set(0);
    } catch {
      this.#quota?.close();
      this.#quota = undefined;
    }
    await this.#qemu.qmp.execute('stop');
    this.#paused = true;
  }

  async resume(): Promise<void> {
    await this.#qemu.qmp.execute('cont');
    this.#paused = false;
  }

  /** Why `setThrottle` could not throttle the vCPUs, once it tried and could not; else undefined. */
  get throttleUnavailable(): string | undefined {
    return this.#throttleUnavailable;
  }

  /**
   * Takes `fraction` of the vCPUs' time away through a cgroup quota (see the file's head); 0
   * puts the threads back where they were. Best effort: where the quota cannot be set it does
   * nothing, and `throttleUnavailable` says why.
   */
  setThrottle(fraction: number): void {
    if (!(fraction > 0)) {
      this.#quota?.close();
      this.#quota = undefined;
      return;
    }
    if (this.#throttleUnavailable !== undefined) return;
    if (this.#quota === undefined) {
      const pid = this.#qemu.pid;
      const opened = VcpuQuota.open(pid, this.#vcpuThreads, vcpuQuotaName(pid));
      if (typeof opened === 'string') {
        this.#throttleUnavailable = opened;
        return;
      }
      this.#quota = opened;
    }
    try {
      this.#quota.set(Math.min(fraction, 0.99));
    } catch (err) {
      this.#throttleUnavailable = `the vCPUs' quota cannot be set (${(err as Error).message})`;
      this.#quota.close();
      this.#quota = undefined;
    }
  }

  saveState(): Promise<Uint8Array> {
    return saveDeviceState(this.#qemu, this.#stateTimeoutMs);
  }

  /**
   * Ends QEMU for good and removes its RAM file and QMP socket; the serial log stays its owner's,
   * who may remove it through `release`.
   */
  async destroy(): Promise<void> {
    this.#access.close();
    this.#log?.close();
    await this.#qemu.stop();
    // Its threads are gone with QEMU: the cgroup is empty and goes.
    this.#quota?.close();
    this.#quota = undefined;
    const release = this.#release;
    this.#release = undefined;
    await release?.();
  }
}

/** The write-protect dirty log of `qemu`, or why there is none. */
async function openDirtyLog(qemu: QemuProcess, pageSize: number, tracking: 'auto' | 'scan'): Promise<WriteProtectLog | string> {
  if (tracking === 'scan') return 'a scan was asked for';
  const wp = qemu.writeProtect;
  if (wp.kind !== 'registered') return wp.reason;
  if (wp.range.length !== qemu.definition.memoryMiB * 1024 * 1024) return `the preload registered ${wp.range.length} bytes of RAM; QEMU has ${qemu.definition.memoryMiB} MiB`;
  if (!(await mapsRamAt(qemu.pid, wp.range, qemu.definition.ramPath))) return 'QEMU no longer maps its RAM file where the preload registered it';
  try {
    return await WriteProtectLog.open(wp.reader, qemu.pid, wp.range, pageSize);
  } catch (err) {
    return (err as Error).message;
  }
}
