/**
 * QEMU guests on a host agent: starting livemig's test guest (`POST /v1/guests` with kind `qemu`)
 * with its RAM in a shared file of its own folder under /dev/shm, and taking over a QEMU guest
 * that arrived by migration so that it can move on. Only the test guest is started: a target
 * must find the same kernel, and the test guest is the one kernel named portably (by the hash of
 * its sources, see qemu-config.ts), so any guest started here can be migrated anywhere.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { SourceDomain, TargetDomain } from '../domain/backend.js';
import { QEMU_KIND, QEMU_VCPUS, qemuConfigFromDescriptor } from '../domain/qemu/qemu-config.js';
import { QEMU_BINARY, QemuProcess } from '../domain/qemu/qemu-process.js';
import { QemuSourceDomain } from '../domain/qemu/source-domain.js';
import { DEFAULT_QEMU_GUEST_DIR, QemuTargetDomain } from '../domain/qemu/target-backend.js';
import { buildTestGuest, testGuestAppend, testGuestSourceHash } from '../domain/qemu/test-guest.js';
import { InvalidArgumentError } from '../errors.js';
import type { GuestAdopter, GuestLauncher } from './guest-launcher.js';

const MIB = 2 ** 20;

/** The smallest QEMU guest started, in MiB: the test guest's tables and firmware need a few. */
export const MIN_QEMU_GUEST_MEMORY_MIB = 16;

/** Bytes of a page the test guest writes, for turning a dirty rate into its page rate. */
const TEST_GUEST_PAGE_BYTES = 4096;

/** Fields a QEMU guest's start request may set in `config`. */
const CONFIG_FIELDS = ['dirtyRateBytesPerSec', 'regionMiB'];

/** Options of {@link qemuGuestLauncher}. */
export interface QemuLauncherOptions {
  /** Folder in which each guest gets a folder for its RAM file and serial log; must be tmpfs. @default DEFAULT_QEMU_GUEST_DIR ('/dev/shm') */
  dir?: string;
  /** The QEMU binary, a path or a name on PATH. @default 'qemu-system-x86_64' */
  binary?: string;
}

/** The test guest's options from a start request, checked. */
function testGuestOptions(config: Record<string, unknown>): { ratePagesPerSecond?: number; regionMiB?: number } {
  for (const key of Object.keys(config)) {
    if (!CONFIG_FIELDS.includes(key)) throw new InvalidArgumentError(`a QEMU guest's config has no field "${key}"; known: ${CONFIG_FIELDS.join(', ')}`);
  }
  const options: { ratePagesPerSecond?: number; regionMiB?: number } = {};
  const rate = config.dirtyRateBytesPerSec;
  if (rate !== undefined) {
    if (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0) {
      throw new InvalidArgumentError(`a QEMU guest's dirtyRateBytesPerSec must be a number of bytes per second, 0 or more, got ${JSON.stringify(rate)}`);
    }
    // 0 would mean "as fast as the vCPU can" to the test guest; a rate asked for is never that.
    options.ratePagesPerSecond = Math.max(rate > 0 ? 1 : 0, Math.round(rate / TEST_GUEST_PAGE_BYTES));
  }
  if (config.regionMiB !== undefined) options.regionMiB = config.regionMiB as number;
  return options;
}

/**
 * A launcher of QEMU guests: each is the test guest, booted with the request's memory (whole MiB,
 * at least MIN_QEMU_GUEST_MEMORY_MIB) and one vCPU. `config` may set `dirtyRateBytesPerSec` (the
 * guest writes that many bytes of pages a second; default 1000 pages/s) and `regionMiB` (how much
 * of its memory it writes; default all). The guest's RAM file and serial log live in a folder of
 * their own under `dir`, removed when the guest is destroyed here or leaves.
 */
export function qemuGuestLauncher(options: QemuLauncherOptions = {}): GuestLauncher {
  const parent = options.dir ?? DEFAULT_QEMU_GUEST_DIR;
  const binary = options.binary ?? QEMU_BINARY;
  return async (request) => {
    const { memoryBytes } = request;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes % MIB !== 0 || memoryBytes < MIN_QEMU_GUEST_MEMORY_MIB * MIB) {
      throw new InvalidArgumentError(`a QEMU guest's memory must be whole MiB, ${MIN_QEMU_GUEST_MEMORY_MIB} MiB or more, got ${memoryBytes} bytes`);
    }
    if (request.vcpus !== undefined && request.vcpus !== QEMU_VCPUS) {
      throw new InvalidArgumentError(`QEMU guests here have ${QEMU_VCPUS} vCPU, not ${request.vcpus}`);
    }
    const append = testGuestAppend(testGuestOptions(request.config ?? {}));
    const kernel = await buildTestGuest();
    const hash = await testGuestSourceHash();
    const dir = await mkdtemp(join(parent, 'livemig-qemu-guest-'));
    const release = (): Promise<void> => rm(dir, { recursive: true, force: true });
    const serialPath = join(dir, 'serial.log');
    let qemu: QemuProcess | undefined;
    try {
      qemu = await QemuProcess.start({ memoryMiB: memoryBytes / MIB, ramPath: join(dir, 'ram'), kernel, append, serialPath }, { binary });
      const domain = await QemuSourceDomain.attach(qemu, { kernel: { kind: 'test-guest', hash }, name: request.name, release });
      return { domain, config: { ...domain.descriptor.config }, console: serialPath };
    } catch (err) {
      await qemu?.stop();
      await release();
      throw err;
    }
  };
}

/**
 * Takes over a QEMU guest that arrived by migration: attaches a {@link QemuSourceDomain} to the
 * QEMU it runs in, which ends that QEMU and removes its folder when destroyed.
 * @throws InvalidArgumentError for a domain that is not an incoming QEMU guest; as
 *   `QemuSourceDomain.attach` when QEMU does not answer as it should.
 */
export const adoptQemuGuest: GuestAdopter = async (domain: TargetDomain): Promise<SourceDomain> => {
  if (!(domain instanceof QemuTargetDomain) || domain.descriptor.kind !== QEMU_KIND) {
    throw new InvalidArgumentError(`a guest of kind "${domain.descriptor.kind}" is not a QEMU guest that arrived here`);
  }
  const config = qemuConfigFromDescriptor(domain.descriptor);
  return QemuSourceDomain.attach(domain.qemu, { kernel: config.kernel, name: domain.descriptor.name, release: () => domain.destroy() });
};
