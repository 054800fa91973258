/**
 * What a migrating QEMU guest tells its target (`DomainDescriptor.config` of kind `qemu`), and
 * the check a target makes before it starts anything: QEMU checks nothing about RAM contents and
 * only some of the definition, so livemig refuses a guest the target cannot run as described
 * with ERR_INCOMPATIBLE_DOMAIN at `hello`, before any page moves.
 */

import { execFile } from 'node:child_process';
import { DomainFailedError, IncompatibleDomainError, InvalidArgumentError } from '../../errors.js';
import { PAGE_SIZE_BYTES, type DomainDescriptor } from '../../protocol/records.js';
import { QEMU_RAM_BACKEND_ID } from './qemu-process.js';

/** `DomainDescriptor.kind` of a QEMU guest. */
export const QEMU_KIND = 'qemu';

/** vCPUs of a QEMU guest; the launcher starts one (no `-smp`). */
export const QEMU_VCPUS = 1;

const MIB = 1024 * 1024;

/**
 * The kernel a guest was booted with, named so that a target can find the same one. Only
 * livemig's test guest is named today: by the hash of its sources, which the target builds
 * itself. A host path would mean nothing on another host, and booting whatever path a peer
 * names is not something a target should do.
 */
export interface QemuKernelRef {
  kind: 'test-guest';
  /** `testGuestSourceHash()` on the source. */
  hash: string;
}

/** The guest definition a target needs to start a compatible QEMU. */
export interface QemuDomainConfig {
  /** The source's QEMU version, `major.minor.micro`. */
  qemuVersion: string;
  /** The resolved, versioned machine type, e.g. `pc-q35-7.2`. */
  machine: string;
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /** The id of the shared RAM backend. */
  ramBackendId: string;
  kernel: QemuKernelRef;
  /** The kernel command line. */
  append?: string;
}

/** The descriptor of a QEMU guest named `name` defined by `config`. */
export function qemuDescriptor(name: string, config: QemuDomainConfig): DomainDescriptor {
  return {
    kind: QEMU_KIND,
    name,
    memoryBytes: config.memoryMiB * MIB,
    pageSize: PAGE_SIZE_BYTES,
    vcpus: QEMU_VCPUS,
    config: { ...config, kernel: { ...config.kernel } },
  };
}

function field<T>(config: Record<string, unknown>, name: string, ok: (v: unknown) => boolean, what: string): T {
  const value = config[name];
  if (!ok(value)) throw new InvalidArgumentError(`a QEMU guest's config.${name} must be ${what}, got ${JSON.stringify(value)}`);
  return value as T;
}

const isText = (v: unknown): boolean => typeof v === 'string' && v.length > 0 && v.length <= 4096;

/**
 * Reads and checks the shape of a QEMU descriptor (not yet whether this host can run it).
 * @throws InvalidArgumentError for a missing or wrongly typed field, or sizes that disagree.
 */
export function qemuConfigFromDescriptor(descriptor: DomainDescriptor): QemuDomainConfig {
  const raw = descriptor.config;
  if (descriptor.kind !== QEMU_KIND || typeof raw !== 'object' || raw === null) {
    throw new InvalidArgumentError(`not a QEMU guest descriptor (kind "${descriptor.kind}")`);
  }
  const kernel = field<Record<string, unknown>>(raw, 'kernel', (v) => typeof v === 'object' && v !== null, 'an object');
  if (kernel.kind !== 'test-guest' || typeof kernel.hash !== 'string' || !/^[0-9a-f]{16}$/.test(kernel.hash)) {
    throw new InvalidArgumentError(`a QEMU guest's kernel must be the test guest named by its 16-hex-digit source hash, got ${JSON.stringify(kernel)}`);
  }
  const config: QemuDomainConfig = {
    qemuVersion: field(raw, 'qemuVersion', (v) => typeof v === 'string' && /^\d+\.\d+\.\d+$/.test(v), 'a version major.minor.micro'),
    machine: field(raw, 'machine', (v) => isText(v) && /^[\w.-]+$/.test(v as string), 'a machine type such as pc-q35-7.2'),
    memoryMiB: field(raw, 'memoryMiB', (v) => Number.isSafeInteger(v) && (v as number) >= 2, 'a whole number of MiB, 2 or more'),
    ramBackendId: field(raw, 'ramBackendId', isText, 'a backend id'),
    kernel: { kind: 'test-guest', hash: kernel.hash },
  };
  if (raw.append !== undefined) config.append = field(raw, 'append', (v) => typeof v === 'string' && v.length <= 4096, 'a command line');
  if (descriptor.memoryBytes !== config.memoryMiB * MIB || descriptor.pageSize !== PAGE_SIZE_BYTES) {
    throw new InvalidArgumentError(
      `a QEMU guest of ${config.memoryMiB} MiB must announce ${config.memoryMiB * MIB} bytes in ${PAGE_SIZE_BYTES}-byte pages, not ${descriptor.memoryBytes} in ${descriptor.pageSize}-byte pages`,
    );
  }
  return config;
}

/** What a host's QEMU offers, for the compatibility check. */
export interface QemuHostFacts {
  /** `major.minor.micro`. */
  version: string;
  /** Machine types `-machine help` lists (aliases included). */
  machines: ReadonlySet<string>;
}

/** -1, 0 or 1 as version `a` is older than, equal to or newer than `b` (both `x.y.z`). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return (pa[i] ?? 0) < (pb[i] ?? 0) ? -1 : 1;
  return 0;
}

/**
 * Refuses a guest this host's QEMU cannot take: QEMU migrates forward to the same or a newer
 * version with the same versioned machine type, not backwards; the RAM backend must be the one
 * the launcher makes; the guest has the launcher's one vCPU.
 * @throws IncompatibleDomainError naming what differs.
 */
export function checkQemuCompatible(descriptor: DomainDescriptor, config: QemuDomainConfig, host: QemuHostFacts): void {
  if (compareVersions(host.version, config.qemuVersion) < 0) {
    throw new IncompatibleDomainError(`the guest runs on QEMU ${config.qemuVersion}; this host has QEMU ${host.version}, which cannot load a newer QEMU's state`);
  }
  if (!host.machines.has(config.machine)) {
    throw new IncompatibleDomainError(`the guest's machine type ${config.machine} is not one this host's QEMU ${host.version} offers`);
  }
  if (config.ramBackendId !== QEMU_RAM_BACKEND_ID) {
    throw new IncompatibleDomainError(`the guest's RAM backend is "${config.ramBackendId}"; QEMU guests here have their RAM in backend "${QEMU_RAM_BACKEND_ID}"`);
  }
  if (descriptor.vcpus !== QEMU_VCPUS) {
    throw new IncompatibleDomainError(`the guest has ${descriptor.vcpus} vCPUs; QEMU guests here have ${QEMU_VCPUS}`);
  }
}

function run(binary: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new DomainFailedError(`${binary} ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
  });
}

/** Asks the QEMU binary at `binary` for its version and machine types (two short runs). */
export async function readQemuHostFacts(binary: string): Promise<QemuHostFacts> {
  const [versionText, machineText] = await Promise.all([run(binary, ['--version']), run(binary, ['-machine', 'help'])]);
  const version = /version (\d+\.\d+\.\d+)/.exec(versionText)?.[1];
  if (version === undefined) throw new DomainFailedError(`cannot read QEMU's version from "${versionText.split('\n')[0]}"`);
  // After a heading line, one machine a line: its name, then its description.
  const machines = new Set(machineText.split('\n').slice(1).map((line) => line.split(/\s+/)[0]!).filter((name) => name.length > 0));
  return { version, machines };
}
