/**
 * The target side of a QEMU guest. At `hello` the backend checks the guest against this host's
 * QEMU and refuses a mismatch with ERR_INCOMPATIBLE_DOMAIN before any page moves; then it makes
 * the guest's RAM file and starts QEMU on it, with the same definition, `-incoming defer` and
 * `-S`. QEMU starts while the first pages are written into that file: an incoming QEMU leaves
 * its RAM untouched until the device state loads, and starting it takes about 100-200 ms that
 * would otherwise come before the first page (docs/bench/qemu.md); the next round's pages wait
 * for it, so the source never pauses before QEMU is up. The device state is loaded once every
 * page is there (the receiver admits no page after `device-state`), which leaves QEMU paused;
 * `go` runs `cont`. Destroying the domain (every failure before `go`) kills QEMU and removes its
 * files, and the guest runs on at the source.
 */

import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DomainFailedError, IncompatibleDomainError, OutOfMemoryError } from '../../errors.js';
import { DEFAULT_MAX_GUEST_MEMORY_BYTES } from '../../protocol/limits.js';
import type { DomainDescriptor, GuestMemory, TargetBackend, TargetDomain } from '../backend.js';
import { openGuestMemory, type GuestMemoryAccess } from '../guest-memory.js';
import { DEFAULT_QEMU_STATE_TIMEOUT_MS, ignoreSharedRam, loadDeviceState, saveDeviceState } from './device-state.js';
import { checkQemuCompatible, QEMU_KIND, qemuConfigFromDescriptor, readQemuHostFacts, type QemuHostFacts, type QemuKernelRef } from './qemu-config.js';
import { findQemuBinary, QEMU_BINARY, QEMU_RAM_BACKEND_ID, QemuProcess, queryQemuIdentity, type QemuGuestDefinition } from './qemu-process.js';
import { buildTestGuest, testGuestSourceHash } from './test-guest.js';

/** Pages read at once when looking for pages that already hold zeros. */
const ZERO_CHECK_RUN_PAGES = 256;

/** Where a target's QEMU guests keep their RAM file and serial log, one folder each: shared memory. */
export const DEFAULT_QEMU_GUEST_DIR = '/dev/shm';

/** Options of a {@link QemuTargetBackend}. */
export interface QemuTargetBackendOptions {
  /** Folder in which each guest gets a folder for its RAM file and serial log; must be tmpfs. @default DEFAULT_QEMU_GUEST_DIR ('/dev/shm') */
  dir?: string;
  /** The QEMU binary, a path or a name on PATH. @default 'qemu-system-x86_64' */
  binary?: string;
  /** Largest guest accepted, in bytes (ERR_OUT_OF_MEMORY above). @default DEFAULT_MAX_GUEST_MEMORY_BYTES */
  maxMemoryBytes?: number;
  /** Deadline for QEMU to load the device state, in ms. @default DEFAULT_QEMU_STATE_TIMEOUT_MS */
  stateTimeoutMs?: number;
  /** Ask QEMU for its facts and build the test guest's kernel when constructed, not at the first `hello`. @default true */
  warm?: boolean;
}

/** The test guest's kernel here: the hash of its sources and the path of the built kernel. */
interface LocalKernel {
  hash: string;
  path: string;
}

async function localKernel(): Promise<LocalKernel> {
  return { hash: await testGuestSourceHash(), path: await buildTestGuest() };
}

/** Builds QEMU guests (kind `qemu`) for incoming migrations. */
export class QemuTargetBackend implements TargetBackend {
  readonly kind = QEMU_KIND;
  readonly dir: string;
  readonly maxMemoryBytes: number;
  readonly #binary: string;
  readonly #stateTimeoutMs: number;
  #facts: Promise<QemuHostFacts> | undefined;
  #kernel: Promise<LocalKernel> | undefined;

  /**
   * Where this host has QEMU, starts asking it for its facts and building the test guest's
   * kernel now, so that the first `hello` does not wait for them (hundreds of milliseconds on a
   * loaded host); a failure here is asked again at `create`.
   */
  constructor(options: QemuTargetBackendOptions = {}) {
    this.dir = options.dir ?? DEFAULT_QEMU_GUEST_DIR;
    this.#binary = options.binary ?? QEMU_BINARY;
    this.maxMemoryBytes = options.maxMemoryBytes ?? DEFAULT_MAX_GUEST_MEMORY_BYTES;
    this.#stateTimeoutMs = options.stateTimeoutMs ?? DEFAULT_QEMU_STATE_TIMEOUT_MS;
    if ((options.warm ?? true) && this.available) {
      this.hostFacts().catch(() => undefined);
      this.#kernelHere().catch(() => undefined);
    }
  }

  /** Whether this host has the QEMU binary. */
  get available(): boolean {
    return findQemuBinary(this.#binary) !== undefined;
  }

  /** This host's QEMU version and machine types, asked once. */
  hostFacts(): Promise<QemuHostFacts> {
    const binary = findQemuBinary(this.#binary) ?? this.#binary;
    this.#facts ??= readQemuHostFacts(binary);
    this.#facts.catch(() => (this.#facts = undefined));
    return this.#facts;
  }

  /** The test guest's kernel on this host, built once. */
  #kernelHere(): Promise<LocalKernel> {
    this.#kernel ??= localKernel();
    this.#kernel.catch(() => (this.#kernel = undefined));
    return this.#kernel;
  }

  /** Resolves a guest's kernel reference to a kernel here: the test guest, built from the same sources. */
  async #kernelFor(ref: QemuKernelRef): Promise<string> {
    const mine = await this.#kernelHere();
    if (ref.hash !== mine.hash) {
      throw new IncompatibleDomainError(`the guest's test kernel was built from sources with hash ${ref.hash}; this host's livemig builds ${mine.hash}`);
    }
    return mine.path;
  }

  /**
   * Checks the descriptor's shape (ERR_INVALID_ARGUMENT), size (ERR_OUT_OF_MEMORY) and fit with
   * this host's QEMU (ERR_INCOMPATIBLE_DOMAIN), makes the RAM file and starts QEMU on it waiting
   * for the incoming state. Resolves once the RAM file takes pages, without waiting for QEMU: a
   * QEMU that fails to start fails the domain's `loadState`. On any failure nothing is left
   * running and no file is left behind.
   */
  async create(descriptor: DomainDescriptor): Promise<TargetDomain> {
    const config = qemuConfigFromDescriptor(descriptor);
    if (descriptor.memoryBytes > this.maxMemoryBytes) {
      throw new OutOfMemoryError(`refusing a QEMU guest of ${descriptor.memoryBytes} bytes: this target accepts at most ${this.maxMemoryBytes} bytes`);
    }
    checkQemuCompatible(descriptor, config, await this.hostFacts());
    const kernel = await this.#kernelFor(config.kernel);
    const dir = await mkdtemp(join(this.dir, 'livemig-qemu-in-'));
    const definition: QemuGuestDefinition = {
      memoryMiB: config.memoryMiB,
      ramPath: join(dir, 'ram'),
      kernel,
      serialPath: join(dir, 'serial.log'),
      machine: config.machine,
      ...(config.append !== undefined ? { append: config.append } : {}),
    };
    try {
      // QEMU maps a file of the RAM's size as it is; one it made would be the same, empty.
      const file = await open(definition.ramPath, 'wx', 0o600);
      try {
        await file.truncate(descriptor.memoryBytes);
      } finally {
        await file.close();
      }
      const starting = startIncoming(definition, descriptor, this.#binary);
      return new QemuTargetDomain(starting, definition, descriptor, dir, this.#stateTimeoutMs);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }
}

/**
 * Starts QEMU for an incoming guest on its RAM file and checks that it runs the machine and RAM
 * the guest needs; on a failure QEMU is ended (its folder stays the domain's to remove).
 */
async function startIncoming(definition: QemuGuestDefinition, descriptor: DomainDescriptor, binary: string): Promise<QemuProcess> {
  const qemu = await QemuProcess.start(definition, { incoming: true, paused: true, binary, ownsRamFile: true });
  try {
    const identity = await queryQemuIdentity(qemu.qmp);
    const ram = identity.memoryBackends.find((b) => b.id === QEMU_RAM_BACKEND_ID);
    if (identity.machine !== definition.machine || ram?.size !== descriptor.memoryBytes) {
      throw new IncompatibleDomainError(
        `QEMU here started machine ${identity.machine} with RAM ${JSON.stringify(identity.memoryBackends)}; the guest needs ${definition.machine} with ${descriptor.memoryBytes} bytes`,
      );
    }
    await ignoreSharedRam(qemu.qmp);
    return qemu;
  } catch (err) {
    await qemu.stop({ removeRamFile: false }).catch(() => undefined);
    throw err;
  }
}

/** An incoming QEMU guest: QEMU starting or waiting for its state, its RAM file filling with pages. */
export class QemuTargetDomain implements TargetDomain {
  readonly descriptor: DomainDescriptor;
  readonly pageCount: number;
  /** The guest's serial log (its COM1), a file on this host. */
  readonly consolePath: string;
  /** QEMU once started and checked; a start that failed rejects (and is reported by `loadState`). */
  readonly #starting: Promise<QemuProcess>;
  #qemu: QemuProcess | undefined;
  readonly #dir: string;
  readonly #memory: GuestMemory;
  readonly #access: GuestMemoryAccess;
  readonly #stateTimeoutMs: number;
  #paused = true;
  #zeroList = new Uint32Array(0);
  #zeroPage: Buffer | undefined;
  /** The highest page written with data and as zero so far, while QEMU starts (see #laterRound). */
  #dataMark = -1;
  #zeroMark = -1;

  /**
   * @param starting QEMU starting on `definition`'s RAM file, which exists at the guest's size.
   * @param dir The folder of the RAM file and serial log, removed by `destroy`.
   */
  constructor(starting: Promise<QemuProcess>, definition: QemuGuestDefinition, descriptor: DomainDescriptor, dir: string, stateTimeoutMs: number) {
    this.#starting = starting;
    starting.then((qemu) => (this.#qemu = qemu)).catch(() => undefined);
    this.descriptor = descriptor;
    this.pageCount = descriptor.memoryBytes / descriptor.pageSize;
    this.consolePath = definition.serialPath;
    this.#dir = dir;
    this.#memory = { kind: 'file', path: definition.ramPath, byteOffset: 0, byteLength: descriptor.memoryBytes };
    this.#access = openGuestMemory(this.#memory, descriptor.pageSize, { writable: true });
    this.#stateTimeoutMs = stateTimeoutMs;
  }

  /**
   * The QEMU process this domain drives, once it has started (always so after `loadState`).
   * @throws DomainFailedError while QEMU is still starting, or if it failed to.
   */
  get qemu(): QemuProcess {
    if (this.#qemu === undefined) throw new DomainFailedError('the incoming QEMU has not started (yet)');
    return this.#qemu;
  }

  /** Resolves with QEMU once it has started and was checked; rejects if it could not be. */
  started(): Promise<QemuProcess> {
    return this.#starting;
  }

  get paused(): boolean {
    return this.#paused;
  }

  memory(): GuestMemory {
    return this.#memory;
  }

  /** Written at once; a batch of a later round first waits for QEMU to have started (#laterRound). */
  writePages(pfns: Uint32Array, src: Uint8Array): void | Promise<void> {
    const wait = this.#laterRound(pfns, 'data');
    if (wait) return wait.then(() => this.#access.writePages(pfns, src));
    this.#access.writePages(pfns, src);
  }

  /**
   * While QEMU starts, a round's pages arrive in rising order (the first round's: every page,
   * first to last), so a batch that begins at or below the highest page already written belongs
   * to a later round. Such a batch waits for QEMU to have started, and its round's acknowledgement
   * with it: the source pauses only once QEMU can load the device state, so the pause never waits
   * for QEMU's start, however quick the rounds. Undefined (no wait) once QEMU is up and during the
   * first round; rejects, failing the migration early, if QEMU could not be started.
   */
  #laterRound(pfns: Uint32Array, kind: 'data' | 'zero'): Promise<unknown> | undefined {
    if (this.#qemu !== undefined || pfns.length === 0) return undefined;
    const mark = kind === 'data' ? this.#dataMark : this.#zeroMark;
    const last = pfns[pfns.length - 1]!;
    if (kind === 'data') this.#dataMark = Math.max(mark, last);
    else this.#zeroMark = Math.max(mark, last);
    return pfns[0]! <= mark ? this.#starting : undefined;
  }

  /**
   * Zeroes only pages that hold something: a page of the fresh RAM file never written reads as
   * zeros without backing it, and writing zeros would take memory for nothing.
   */
  zeroPages(pfns: Uint32Array): void | Promise<void> {
    const wait = this.#laterRound(pfns, 'zero');
    if (wait) return wait.then(() => this.#zeroPagesNow(pfns));
    this.#zeroPagesNow(pfns);
  }

  #zeroPagesNow(pfns: Uint32Array): void {
    const ps = this.descriptor.pageSize;
    this.#zeroPage ??= Buffer.alloc(ps);
    if (this.#zeroList.length < pfns.length) this.#zeroList = new Uint32Array(pfns.length);
    let n = 0;
    for (let i = 0; i < pfns.length; ) {
      let run = 1;
      while (run < ZERO_CHECK_RUN_PAGES && i + run < pfns.length && pfns[i + run] === pfns[i]! + run) run++;
      const pages = this.#access.readRun(pfns[i]!, run);
      for (let k = 0; k < run; k++) {
        if (this.#zeroPage.compare(pages, k * ps, (k + 1) * ps) !== 0) this.#zeroList[n++] = pfns[i + k]!;
      }
      i += run;
    }
    if (n > 0) this.#access.zeroPages(this.#zeroList.subarray(0, n));
  }

  readPages(pfns: Uint32Array, dst: Uint8Array): void {
    this.#access.readPages(pfns, dst);
  }

  async loadState(state: Uint8Array): Promise<void> {
    await loadDeviceState(await this.#starting, state, this.#stateTimeoutMs);
  }

  async resume(): Promise<void> {
    await (await this.#starting).qmp.execute('cont');
    this.#paused = false;
  }

  async pause(): Promise<void> {
    await (await this.#starting).qmp.execute('stop');
    this.#paused = true;
  }

  async saveState(): Promise<Uint8Array> {
    return saveDeviceState(await this.#starting, this.#stateTimeoutMs);
  }

  /** Kills QEMU (once its start has settled) and removes its RAM file, serial log and sockets. */
  async destroy(): Promise<void> {
    this.#access.close();
    const qemu = await this.#starting.catch(() => undefined);
    await qemu?.stop();
    await rm(this.#dir, { recursive: true, force: true });
  }
}
