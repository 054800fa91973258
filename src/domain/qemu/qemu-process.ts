/**
 * Starting and ending a `qemu-system-x86_64` process for one guest, driven over QMP.
 *
 * The guest's RAM is a `memory-backend-file` with `share=on`, so another process (the engine)
 * reads and writes it through the file while the guest runs; `suppress-vmdesc=on` keeps QEMU's
 * own migration stream, then only device state, small. Source and target run the same command
 * line; the target adds `-incoming defer`. QEMU runs with the write-protect dirty log's preload
 * (write-protect-preload.ts) unless told not to, so that a source can log what the guest writes.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';
import { ConnectionClosedError, DomainFailedError, InvalidArgumentError, MigrationError, TimeoutError } from '../../errors.js';
import { stopChild } from '../../util/child.js';
import { QmpClient } from './qmp.js';
import { preloadEnvironment, readPreloadStatus, type WriteProtectStatus } from './write-protect-preload.js';

/** The QEMU binary looked for on PATH. */
export const QEMU_BINARY = 'qemu-system-x86_64';

/** The machine type when a definition names none; QEMU resolves it to its newest `pc-q35-X.Y`. */
export const DEFAULT_QEMU_MACHINE = 'q35';

/** The id of the RAM backend; source and target must agree on it. */
export const QEMU_RAM_BACKEND_ID = 'mem';

/** How long QEMU may take to start and answer on QMP, in milliseconds. */
export const DEFAULT_QEMU_START_TIMEOUT_MS = 15_000;

/** How long QEMU may take to exit after SIGTERM before it is killed, in milliseconds. */
export const DEFAULT_QEMU_STOP_GRACE_MS = 3_000;

/** How much of QEMU's standard error is kept for error messages, in characters. */
const STDERR_TAIL_CHARS = 4096;

/** What to run: the same definition on source and target makes compatible QEMU processes. */
export interface QemuGuestDefinition {
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /** RAM backing file, absolute (under /dev/shm); QEMU creates it if missing. */
  ramPath: string;
  /** Multiboot or Linux kernel for `-kernel`. */
  kernel: string;
  /** Kernel command line (`-append`). @default none */
  append?: string;
  /** File the guest's COM1 output is written to. */
  serialPath: string;
  /** Machine type; pin a versioned one (`pc-q35-7.2`) where source and target may differ. @default 'q35' */
  machine?: string;
}

/** How to start a QEMU process from a definition. */
export interface QemuStartOptions {
  /** Wait for an incoming migration (`-incoming defer`), as a target does. @default false */
  incoming?: boolean;
  /** Start with the vCPUs stopped (`-S`); `cont` over QMP starts them. @default false */
  paused?: boolean;
  /** The QEMU binary, a path or a name looked up on PATH. @default 'qemu-system-x86_64' */
  binary?: string;
  /** Deadline for QEMU to start and negotiate QMP, in ms. @default 15000 */
  startTimeoutMs?: number;
  /**
   * Preload the write-protect dirty log into QEMU (write-protect-preload.ts), so that a source
   * can find the pages the guest writes without scanning its RAM. Where it cannot be had (no
   * gcc, a kernel without asynchronous write-protection) QEMU runs without it, and
   * `QemuProcess.writeProtect` says why. @default true
   */
  writeProtectLog?: boolean;
  /**
   * The RAM file is the guest's own, to be removed with it should this process exit while QEMU
   * runs (as `stop` removes it). @default whether QEMU creates it (it did not exist)
   */
  ownsRamFile?: boolean;
}

/** The path of `name` if it is an executable file on PATH (or a path to one), else undefined. */
export function findQemuBinary(name = QEMU_BINARY, searchPath = process.env.PATH ?? ''): string | undefined {
  const candidates = name.includes('/') ? [name] : searchPath.split(delimiter).filter(Boolean).map((dir) => join(dir, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A value inside a QEMU `-object`/`-chardev` option list, where a comma is written as two. */
function optionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

function checkDefinition(def: QemuGuestDefinition): void {
  if (!Number.isSafeInteger(def.memoryMiB) || def.memoryMiB < 2) {
    throw new InvalidArgumentError(`QEMU guest memory must be a whole number of MiB (2 or more), got ${def.memoryMiB}`);
  }
  for (const [name, path] of [['ramPath', def.ramPath], ['kernel', def.kernel], ['serialPath', def.serialPath]] as const) {
    if (typeof path !== 'string' || !isAbsolute(path)) throw new InvalidArgumentError(`QEMU guest ${name} must be an absolute path, got ${String(path)}`);
  }
}

/** The arguments (after the binary) for `def`, with QMP on the unix socket `qmpSocketPath`. */
export function qemuArguments(def: QemuGuestDefinition, options: QemuStartOptions, qmpSocketPath: string): string[] {
  checkDefinition(def);
  const machine = def.machine ?? DEFAULT_QEMU_MACHINE;
  const args = [
    '-accel', 'tcg',
    '-nographic', '-nodefaults', '-no-user-config',
    '-machine', `${optionValue(machine)},memory-backend=${QEMU_RAM_BACKEND_ID},suppress-vmdesc=on`,
    '-m', `${def.memoryMiB}M`,
    '-object', `memory-backend-file,id=${QEMU_RAM_BACKEND_ID},size=${def.memoryMiB}M,mem-path=${optionValue(def.ramPath)},share=on`,
    '-chardev', `socket,id=qmp,path=${optionValue(qmpSocketPath)},server=on,wait=off`,
    '-mon', 'chardev=qmp,mode=control',
    '-chardev', `file,id=serial0,path=${optionValue(def.serialPath)}`,
    '-serial', 'chardev:serial0',
    '-kernel', def.kernel,
  ];
  if (def.append !== undefined) args.push('-append', def.append);
  if (options.paused) args.push('-S');
  if (options.incoming) args.push('-incoming', 'defer');
  return args;
}

/**
 * QEMU processes not yet known to have exited, with the files that go with them. If this process
 * exits first they are killed and their files removed, so that no guest outlives its owner and
 * no RAM file is left in /dev/shm.
 */
const live = new Map<ChildProcess, string[]>();
let exitHookInstalled = false;

function track(child: ChildProcess, files: string[]): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const [c, paths] of live) {
        c.kill('SIGKILL');
        for (const path of paths) rmSync(path, { recursive: true, force: true });
      }
    });
  }
  live.set(child, files);
  child.once('exit', () => live.delete(child));
}

/** A running QEMU process, its QMP connection open. */
export class QemuProcess {
  readonly #child: ChildProcess;
  readonly #runDir: string;
  readonly #stderr: { tail: string };

  /** The QEMU binary and arguments it was started with. */
  readonly argv: readonly string[];
  readonly pid: number;
  readonly qmp: QmpClient;
  readonly qmpSocketPath: string;
  readonly definition: Readonly<QemuGuestDefinition>;
  /** Resolves once QEMU has exited. */
  readonly exited: Promise<void>;
  /** Whether QEMU's RAM mapping is registered for the write-protect dirty log, and where it is. */
  readonly writeProtect: WriteProtectStatus;

  private constructor(
    child: ChildProcess,
    argv: string[],
    def: QemuGuestDefinition,
    runDir: string,
    qmpSocketPath: string,
    qmp: QmpClient,
    stderr: { tail: string },
    writeProtect: WriteProtectStatus,
  ) {
    this.#child = child;
    this.#runDir = runDir;
    this.argv = Object.freeze(argv);
    this.pid = child.pid!;
    this.definition = Object.freeze({ ...def });
    this.qmpSocketPath = qmpSocketPath;
    this.qmp = qmp;
    this.exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : once(child, 'exit').then(() => undefined);
    this.#stderr = stderr;
    this.writeProtect = writeProtect;
  }

  /**
   * Starts QEMU for `def` and resolves once it answers on QMP. On any failure the process is
   * ended and its QMP socket removed before this rejects, and so is the RAM file if QEMU
   * created it.
   * @throws DomainFailedError if QEMU is not installed, exits while starting (its standard
   *   error is in the message) or cannot be reached; TimeoutError at the start deadline;
   *   InvalidArgumentError for a bad definition.
   */
  static async start(def: QemuGuestDefinition, options: QemuStartOptions = {}): Promise<QemuProcess> {
    const name = options.binary ?? QEMU_BINARY;
    const binary = findQemuBinary(name);
    if (binary === undefined) {
      throw new DomainFailedError(`${name} not found${name.includes('/') ? '' : ' on PATH'}: QEMU guests need QEMU (Debian: apt-get install qemu-system-x86)`);
    }
    const runDir = await mkdtemp(join(tmpdir(), 'livemig-qemu-'));
    const qmpSocketPath = join(runDir, 'qmp.sock');
    let args: string[];
    try {
      args = qemuArguments(def, options, qmpSocketPath);
    } catch (err) {
      await rm(runDir, { recursive: true, force: true });
      throw err;
    }

    const ramFileExisted = existsSync(def.ramPath);
    const statusPath = join(runDir, 'wp-status');
    const preload = options.writeProtectLog === false ? { env: undefined, off: 'not asked for' } as const : await preloadEnvironment(def.ramPath, statusPath);
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(preload.env ? { env: preload.env } : {}) });
    track(child, (options.ownsRamFile ?? !ramFileExisted) ? [runDir, def.ramPath] : [runDir]);
    const stderr = { tail: '' };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr.tail = (stderr.tail + chunk).slice(-STDERR_TAIL_CHARS);
    });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new DomainFailedError(`${binary} could not be started: ${err.message}`, { cause: err })));
    });
    const exitedEarly = new Promise<never>((_resolve, reject) => {
      child.once('exit', (code, signal) => {
        // stderr may still hold unread output when 'exit' fires; 'close' follows once it is read.
        const tell = (): void => reject(new DomainFailedError(`QEMU exited while starting (${signal ?? `status ${code}`}): ${stderr.tail.trim() || '(nothing on stderr)'}`));
        if (child.stderr!.readableEnded) tell();
        else child.once('close', tell);
      });
    });
    exitedEarly.catch(() => undefined);

    const timeoutMs = options.startTimeoutMs ?? DEFAULT_QEMU_START_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    try {
      await Promise.race([spawned, exitedEarly]);
      const qmp = await Promise.race([connectWhenListening(qmpSocketPath, deadline), exitedEarly]);
      // QEMU maps its RAM before its monitor answers, so the preload has spoken by now.
      const writeProtect = preload.env ? await readPreloadStatus(statusPath, preload.reader) : { kind: 'off' as const, reason: preload.off };
      return new QemuProcess(child, [binary, ...args], def, runDir, qmpSocketPath, qmp, stderr, writeProtect);
    } catch (err) {
      // A child that never spawned has no pid and emits no 'exit' to wait for.
      if (child.pid !== undefined) await stopChild(child, DEFAULT_QEMU_STOP_GRACE_MS).catch(() => undefined);
      live.delete(child);
      await rm(runDir, { recursive: true, force: true });
      if (!ramFileExisted) await rm(def.ramPath, { force: true });
      throw err instanceof MigrationError ? err : new DomainFailedError(`QEMU could not be started: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Whether QEMU is still running. */
  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** The last few KiB QEMU wrote to its standard error. */
  get stderrTail(): string {
    return this.#stderr.tail;
  }

  /**
   * Ends QEMU for good: SIGTERM, then SIGKILL after `graceMs`. Closes QMP, removes the QMP
   * socket and, unless told to keep it, the RAM file. Safe to call more than once, and after
   * QEMU died by itself.
   */
  async stop(options: { graceMs?: number; removeRamFile?: boolean } = {}): Promise<void> {
    this.qmp.close();
    await stopChild(this.#child, options.graceMs ?? DEFAULT_QEMU_STOP_GRACE_MS);
    await rm(this.#runDir, { recursive: true, force: true });
    if (options.removeRamFile ?? true) await rm(this.definition.ramPath, { force: true });
  }
}

/** Connects to QMP once QEMU listens on `path`, retrying until `deadline` (epoch ms). */
async function connectWhenListening(path: string, deadline: number): Promise<QmpClient> {
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new TimeoutError(`QEMU did not answer on its QMP socket ${path} in time`);
    try {
      return await QmpClient.connect(path, { timeoutMs: left });
    } catch (err) {
      // The socket appears a moment after QEMU starts, and a QEMU that fails to start closes it
      // again: try again until QEMU answers, exits (the caller races this with its exit, which
      // tells why in QEMU's words), or the deadline passes.
      if (!(err instanceof ConnectionClosedError)) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.min(20, left)));
    }
  }
}

/** What the compatibility check compares between source and target QEMU. */
export interface QemuIdentity {
  /** QEMU's version, `major.minor.micro`. */
  version: string;
  /** The distribution's package version (`Debian 1:7.2+dfsg-7...`), may be empty. */
  package: string;
  /** The resolved machine type, e.g. `pc-q35-7.2` (never an alias such as `q35`). */
  machine: string;
  /** The memory backends: ids, sizes in bytes, and whether they are shared. */
  memoryBackends: Array<{ id: string; size: number; share: boolean }>;
}

/** Asks QEMU over `qmp` for the facts {@link QemuIdentity} holds. */
export async function queryQemuIdentity(qmp: QmpClient): Promise<QemuIdentity> {
  const version = await qmp.execute<{ qemu: { major: number; minor: number; micro: number }; package: string }>('query-version');
  // The QOM type of /machine is the resolved machine type with "-machine" appended.
  const type = await qmp.execute<string>('qom-get', { path: '/machine', property: 'type' });
  const memdevs = await qmp.execute<Array<{ id?: string; size: number; share: boolean }>>('query-memdev');
  return {
    version: `${version.qemu.major}.${version.qemu.minor}.${version.qemu.micro}`,
    package: version.package.trim(),
    machine: type.replace(/-machine$/, ''),
    memoryBackends: memdevs.map((m) => ({ id: m.id ?? '', size: m.size, share: m.share })),
  };
}
