/**
 * QEMU's device state as a blob: QEMU's own migration stream with the capability
 * `x-ignore-shared` on, so that the shared RAM block (which livemig moves itself) is left out.
 * What remains is vCPU and device state plus QEMU's small ROM and ACPI blocks, a few hundred KiB.
 * The stream goes over a unix socket in QEMU's run folder: the source's QEMU connects to one this
 * process listens on; the target's QEMU listens (`migrate-incoming`) and this process writes.
 */

import { createConnection, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DomainFailedError, LimitExceededError, TimeoutError } from '../../errors.js';
import { withDeadline } from '../../util/deadline.js';
import type { QemuProcess } from './qemu-process.js';
import type { QmpClient } from './qmp.js';

/** How long saving or loading the device state may take, in milliseconds. */
export const DEFAULT_QEMU_STATE_TIMEOUT_MS = 30_000;

/** Largest device state accepted from QEMU, in bytes (a q35 guest's is about 250 KiB). */
export const MAX_QEMU_STATE_BYTES = 8 * 1024 * 1024;

/** How often `query-migrate` is asked while QEMU saves or loads, in milliseconds. */
const POLL_INTERVAL_MS = 1;

/** Turns on `x-ignore-shared`, on source and target alike, before any migration starts. */
export async function ignoreSharedRam(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
}

interface MigrateStatus {
  status?: string;
  'error-desc'?: string;
}

/** Polls `query-migrate` until QEMU says `completed`; rejects on `failed`/`cancelled` or at `deadline`. */
async function migrationCompleted(qemu: QemuProcess, what: string, deadline: number): Promise<void> {
  for (;;) {
    const info = await qemu.qmp.execute<MigrateStatus>('query-migrate');
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new DomainFailedError(`QEMU ${what} ${info.status}: ${info['error-desc'] ?? (qemu.stderrTail.trim() || 'no reason given')}`);
    }
    if (performance.now() > deadline) throw new TimeoutError(`QEMU did not finish ${what} in time (status ${info.status ?? 'none'})`);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Rejects once QEMU has exited, with what it said on its way out. */
function exitOf(qemu: QemuProcess, what: string): Promise<never> {
  return qemu.exited.then(() => {
    throw new DomainFailedError(`QEMU exited while ${what}: ${qemu.stderrTail.trim() || '(nothing on stderr)'}`);
  });
}

/**
 * Has `qemu` (paused) write its device state and resolves with it. QEMU ends in `postmigrate`,
 * from which `cont` runs the guest again.
 * @throws DomainFailedError if QEMU fails or exits; LimitExceededError past MAX_QEMU_STATE_BYTES;
 *   TimeoutError past `timeoutMs`.
 */
export async function saveDeviceState(qemu: QemuProcess, timeoutMs = DEFAULT_QEMU_STATE_TIMEOUT_MS): Promise<Uint8Array> {
  const path = join(dirname(qemu.qmpSocketPath), 'state-out.sock');
  const deadline = performance.now() + timeoutMs;
  const server = createServer();
  const received = new Promise<Uint8Array>((resolve, reject) => {
    server.once('error', reject);
    server.once('connection', (socket: Socket) => {
      server.close();
      const chunks: Buffer[] = [];
      let bytes = 0;
      socket.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > MAX_QEMU_STATE_BYTES) socket.destroy(new LimitExceededError(`QEMU's device state exceeds ${MAX_QEMU_STATE_BYTES} bytes`));
        else chunks.push(chunk);
      });
      socket.once('error', reject);
      socket.once('close', () => resolve(Buffer.concat(chunks, bytes)));
    });
  });
  received.catch(() => undefined);
  await rm(path, { force: true });
  server.listen(path);
  await once(server, 'listening');
  const died = exitOf(qemu, 'saving its device state');
  died.catch(() => undefined);
  try {
    await Promise.race([qemu.qmp.execute('migrate', { uri: `unix:${path}` }), died]);
    await Promise.race([migrationCompleted(qemu, 'saving its device state', deadline), died]);
    // Completed means QEMU wrote all and closed its end; the close may still be on its way here.
    const left = Math.max(1, deadline - performance.now());
    return await withDeadline(Promise.race([received, died]), left, () => new TimeoutError('QEMU finished saving its device state but did not close the stream'));
  } catch (err) {
    await qemu.qmp.execute('migrate_cancel').catch(() => undefined);
    throw err;
  } finally {
    server.close();
    await rm(path, { force: true });
  }
}

/**
 * Has `qemu` (started with `-incoming defer -S`) load `state` and resolves once it is loaded and
 * paused. Guest RAM must be complete before: loading reads it. A QEMU that fails to load exits.
 * @throws DomainFailedError if QEMU refuses the state or exits; TimeoutError past `timeoutMs`.
 */
export async function loadDeviceState(qemu: QemuProcess, state: Uint8Array, timeoutMs = DEFAULT_QEMU_STATE_TIMEOUT_MS): Promise<void> {
  const path = join(dirname(qemu.qmpSocketPath), 'state-in.sock');
  const deadline = performance.now() + timeoutMs;
  const died = exitOf(qemu, 'loading the device state');
  died.catch(() => undefined);
  await Promise.race([qemu.qmp.execute('migrate-incoming', { uri: `unix:${path}` }), died]);
  // QEMU listens once migrate-incoming has answered.
  const socket = createConnection(path);
  try {
    const written = new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.end(state, () => resolve());
    });
    await Promise.race([written, died]);
    await Promise.race([migrationCompleted(qemu, 'loading the device state', deadline), died]);
    const status = await qemu.qmp.execute<{ status: string }>('query-status');
    if (status.status !== 'paused') throw new DomainFailedError(`QEMU loaded the device state but is "${status.status}", not paused`);
  } catch (err) {
    throw err instanceof DomainFailedError || err instanceof TimeoutError
      ? err
      : new DomainFailedError(`QEMU could not be handed its device state: ${(err as Error).message}`, { cause: err });
  } finally {
    socket.destroy();
  }
}
