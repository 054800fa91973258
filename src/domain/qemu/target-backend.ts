/**
 * The target side of a QEMU guest. At `hello` the backend checks the guest against this host's
 * QEMU and refuses a mismatch with ERR_INCOMPATIBLE_DOMAIN before any page moves; then it starts
 * QEMU with the same definition, its own RAM file, `-incoming defer` and `-S`. Pages are written
 * into that RAM file; the device state is loaded once every page is there (the receiver admits no
 * page after `device-state`), which leaves QEMU paused; `go` runs `cont`. Destroying the domain
 * (every failure before `go`) kills QEMU and removes its files, and the guest runs on at the source.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { IncompatibleDomainError, OutOfMemoryError } from '../../errors.js';
import { DEFAULT_MAX_GUEST_MEMORY_BYTES } from '../../protocol/limits.js';
import type { DomainDescriptor, GuestMemory, TargetBackend, TargetDomain } from '../backend.js';
import { openGuestMemory, type GuestMemoryAccess } from '../guest-memory.js';
import { DEFAULT_QEMU_STATE_TIMEOUT_MS, ignoreSharedRam, loadDeviceState, saveDeviceState } from './device-state.js';
import { checkQemuCompatible, QEMU_KIND, qemuConfigFromDescriptor, readQemuHostFacts, type QemuHostFacts, type QemuKernelRef } from './qemu-config.js';
import { findQemuBinary, QEMU_BINARY, QEMU_RAM_BACKEND_ID, QemuProcess, queryQemuIdentity } from './qemu-process.js';
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
}

/** Resolves a guest's kernel reference to a kernel here: the test guest, built from the same sources. */
async function kernelFor(ref: QemuKernelRef): Promise<string> {
  const mine = await testGuestSourceHash();
  if (ref.hash !== mine) {
    throw new IncompatibleDomainError(`the guest's test kernel was built from sources with hash ${ref.hash}; this host's livemig builds ${mine}`);
  }
  return buildTestGuest();
}

/** Builds QEMU guests (kind `qemu`) for incoming migrations. */
export class QemuTargetBackend implements TargetBackend {
  readonly kind = QEMU_KIND;
  readonly dir: string;
  readonly maxMemoryBytes: number;
  readonly #binary: string;
  readonly #stateTimeoutMs: number;
  #facts: Promise<QemuHostFacts> | undefined;

  constructor(options: QemuTargetBackendOptions = {}) {
    this.dir = options.dir ?? DEFAULT_QEMU_GUEST_DIR;
    this.#binary = options.binary ?? QEMU_BINARY;
    this.maxMemoryBytes = options.maxMemoryBytes ?? DEFAULT_MAX_GUEST_MEMORY_BYTES;
    this.#stateTimeoutMs = options.stateTimeoutMs ?? DEFAULT_QEMU_STATE_TIMEOUT_MS;
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

  /**
   * Checks the descriptor's shape (ERR_INVALID_ARGUMENT), size (ERR_OUT_OF_MEMORY) and fit with
   * this host's QEMU (ERR_INCOMPATIBLE_DOMAIN), then starts QEMU waiting for the incoming state.
   * On any failure nothing is left running and no file is left behind.
   */
  async create(descriptor: DomainDescriptor): Promise<TargetDomain> {
    const config = qemuConfigFromDescriptor(descriptor);
    if (descriptor.memoryBytes > this.maxMemoryBytes) {
      throw new OutOfMemoryError(`refusing a QEMU guest of ${descriptor.memoryBytes} bytes: this target accepts at most ${this.maxMemoryBytes} bytes`);
    }
    checkQemuCompatible(descriptor, config, await this.hostFacts());
    const kernel = await kernelFor(config.kernel);
    const dir = await mkdtemp(join(this.dir, 'livemig-qemu-in-'));
    const definition = {
      memoryMiB: config.memoryMiB,
      ramPath: join(dir, 'ram'),
      kernel,
      serialPath: join(dir, 'serial.log'),
      machine: config.machine,
      ...(config.append !== undefined ? { append: config.append } : {}),
    };
    let qemu: QemuProcess | undefined;
    try {
      qemu = await QemuProcess.start(definition, { incoming: true, paused: true, binary: this.#binary });
      const identity = await queryQemuIdentity(qemu.qmp);
      const ram = identity.memoryBackends.find((b) => b.id === QEMU_RAM_BACKEND_ID);
      if (identity.machine !== config.machine || ram?.size !== descriptor.memoryBytes) {
        throw new IncompatibleDomainError(
          `QEMU here started machine ${identity.machine} with RAM ${JSON.stringify(identity.memoryBackends)}; the guest needs ${config.machine} with ${descriptor.memoryBytes} bytes`,
        );
      }
      await ignoreSharedRam(qemu.qmp);
      return new QemuTargetDomain(qemu, descriptor, dir, this.#stateTimeoutMs);
    } catch (err) {
      await qemu?.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }
}

/** An incoming QEMU guest: QEMU waiting for its state, its RAM file filling with pages. */
export class QemuTargetDomain implements TargetDomain {
  readonly descriptor: DomainDescriptor;
  readonly pageCount: number;
  /** The guest's serial log (its COM1), a file on this host. */
  readonly consolePath: string;
  readonly #qemu: QemuProcess;
  readonly #dir: string;
  readonly #memory: GuestMemory;
  readonly #access: GuestMemoryAccess;
  readonly #stateTimeoutMs: number;
  #paused = true;
  #zeroList = new Uint32Array(0);
  #zeroPage: Buffer | undefined;

  constructor(qemu: QemuProcess, descriptor: DomainDescriptor, dir: string, stateTimeoutMs: number) {
    this.#qemu = qemu;
    this.descriptor = descriptor;
    this.pageCount = descriptor.memoryBytes / descriptor.pageSize;
    this.consolePath = qemu.definition.serialPath;
    this.#dir = dir;
    this.#memory = { kind: 'file', path: qemu.definition.ramPath, byteOffset: 0, byteLength: descriptor.memoryBytes };
    this.#access = openGuestMemory(this.#memory, descriptor.pageSize, { writable: true });
    this.#stateTimeoutMs = stateTimeoutMs;
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

  writePages(pfns: Uint32Array, src: Uint8Array): void {
    this.#access.writePages(pfns, src);
  }

  /**
   * Zeroes only pages that hold something: a page of the fresh RAM file never written reads as
   * zeros without backing it, and writing zeros would take memory for nothing.
   */
  zeroPages(pfns: Uint32Array): void {
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

  loadState(state: Uint8Array): Promise<void> {
    return loadDeviceState(this.#qemu, state, this.#stateTimeoutMs);
  }

  async resume(): Promise<void> {
    await this.#qemu.qmp.execute('cont');
    this.#paused = false;
  }

  async pause(): Promise<void> {
    await this.#qemu.qmp.execute('stop');
    this.#paused = true;
  }

  saveState(): Promise<Uint8Array> {
    return saveDeviceState(this.#qemu, this.#stateTimeoutMs);
  }

  /** Kills QEMU and removes its RAM file, serial log and sockets. */
  async destroy(): Promise<void> {
    this.#access.close();
    await this.#qemu.stop();
    await rm(this.#dir, { recursive: true, force: true });
  }
}
