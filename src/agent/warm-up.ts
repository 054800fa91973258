/**
 * Warming an agent's data path before it serves: a few small migrations of a simulated guest
 * inside the process, over a loopback WebSocket, source and target both here.
 *
 * V8 compiles the engine's hot functions (the sender, the receiver, the page hasher's callers,
 * the transport) only once they have run a while, and it keeps compiling them through the first
 * few migrations a process serves: an agent's first migration runs partly in unoptimised code,
 * with the compiler's thread taking a core beside it. A long-lived agent that migrates a few
 * small guests to itself at start meets its first real guest with that work done
 * (docs/bench/README.md, "A warm agent").
 */

import { randomUUID } from 'node:crypto';
import { SimulatedGuest } from '../domain/sim/guest.js';
import { SimTargetBackend } from '../domain/sim/target-backend.js';
import { asMigrationError, TimeoutError } from '../errors.js';
import { acceptMigration, type IncomingResult } from '../precopy/incoming.js';
import { migrate } from '../precopy/migration.js';
import { connectWebSocket } from '../transport/ws-connect.js';
import { listenWebSocket } from '../transport/ws-listener.js';
import { exposedGc } from '../util/gc.js';

/** Migrations a warm-up runs by default: the compiler's work has mostly settled after three. */
export const WARM_UP_MIGRATIONS = 3;

/**
 * Guest memory of each warm-up migration by default: 64 batches of pages. Larger guests warm a
 * little more but free more memory just before the first real guest, which a host that takes
 * freed memory back makes costly to touch again (docs/bench/README.md, "A warm agent").
 */
export const WARM_UP_MEMORY_BYTES = 64 * 1024 * 1024;

/** The longest a warm-up may take, in milliseconds: past it, the migration under way is cancelled. */
export const WARM_UP_TIMEOUT_MS = 60_000;

/** Options of {@link warmUp}. */
export interface WarmUpOptions {
  /** @default WARM_UP_MIGRATIONS */
  migrations?: number;
  /** @default WARM_UP_MEMORY_BYTES */
  memoryBytes?: number;
}

/** What a warm-up did. */
export interface WarmUpReport {
  /** Migrations completed. */
  migrations: number;
  /** How long the warm-up took, in milliseconds. */
  ms: number;
  /** Why it stopped early, if it did; the process serves all the same, only colder. */
  error?: { code: string; message: string };
}

/**
 * Runs `migrations` migrations of a small idle-then-writing simulated guest from this process to
 * itself over a loopback WebSocket, each guest destroyed on both sides afterwards. Never rejects:
 * a failure ends the warm-up and is reported.
 */
export async function warmUp(options: WarmUpOptions = {}): Promise<WarmUpReport> {
  const started = performance.now();
  const migrations = options.migrations ?? WARM_UP_MIGRATIONS;
  const memoryBytes = options.memoryBytes ?? WARM_UP_MEMORY_BYTES;
  const backends = new Map([['sim', new SimTargetBackend({ prefault: false })]]);
  // The port is a loopback one, open for a second or two and without a pool key: anything else
  // that connects may send a guest no larger than the warm-up's, destroyed as soon as it is in.
  const limits = { maxGuestMemoryBytes: memoryBytes };
  const ours = new Map<string, (result: IncomingResult) => void>();
  const listener = await listenWebSocket({ host: '127.0.0.1', port: 0 }, (transport) => {
    acceptMigration(transport, { backends, limits }).then(
      (result) => {
        const take = ours.get(result.migrationId);
        if (take !== undefined) take(result);
        else void result.domain?.destroy().catch(() => undefined);
      },
      // A peer whose first record is no hello was answered with an abort; nothing was built.
      () => undefined,
    );
  });
  const signal = AbortSignal.timeout(WARM_UP_TIMEOUT_MS);
  let done = 0;
  let error: WarmUpReport['error'];
  try {
    for (let i = 0; i < migrations; i++) {
      // A guest that writes as it goes, so that later rounds and the dirty log run too.
      const config = { memoryBytes, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: Math.floor(memoryBytes / 8), seed: i + 1 } as const;
      const guest = await SimulatedGuest.boot(config, 'warm-up');
      const migrationId = randomUUID();
      const received = new Promise<IncomingResult>((resolve) => ours.set(migrationId, resolve));
      try {
        const report = await migrate(guest, await connectWebSocket(listener.url), { migrationId, targetName: 'this process', signal });
        if (report.outcome !== 'completed') {
          error = report.error ?? { code: 'ERR_DOMAIN_FAILED', message: `a warm-up migration ended ${report.outcome}` };
          break;
        }
        // The target's side ends with the source's, its guest running here; the deadline bounds
        // the wait all the same.
        const result = await Promise.race([received, aborted(signal)]);
        await result.domain?.destroy().catch(() => undefined);
      } finally {
        ours.delete(migrationId);
        await guest.destroy().catch(() => undefined);
      }
      done++;
    }
  } catch (err) {
    const failure = asMigrationError(err);
    error = { code: failure.code, message: failure.message };
  } finally {
    await listener.close().catch(() => undefined);
  }
  // The guests' memory goes back now, where the process can collect it (`--expose-gc`, which
  // the livemig command turns on), not in a collection during the first real migration.
  exposedGc()?.();
  return { migrations: done, ms: performance.now() - started, ...(error ? { error } : {}) };
}

/** Rejects with TimeoutError once `signal` aborts. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = (): void => reject(new TimeoutError(`the warm-up took longer than ${WARM_UP_TIMEOUT_MS} ms`));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}
