/** The source side of `demo` and `migrate`: boot a guest here, migrate it, report for people and machines. */

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectToAgent, type ConnectToAgentOptions } from '../agent/agent-client.js';
import type { SimGuestConfig } from '../domain/sim/config.js';
import { SimulatedGuest } from '../domain/sim/guest.js';
import { asMigrationError, type MigrationError } from '../errors.js';
import { DEFAULT_CODEC } from '../precopy/codec-choice.js';
import { migrate } from '../precopy/migration.js';
import { type MigrateOptions } from '../precopy/migrate-options.js';
import { DEFAULT_DOWNTIME_BUDGET_MS } from '../precopy/policy.js';
import type { MigrationReport } from '../precopy/report.js';
import type { OracleCheck } from './oracle-check.js';
import { formatReport, terminalProgress } from './render.js';

/** What `demo` and `migrate --json` print. */
export interface RunReport extends MigrationReport {
  guest: SimGuestConfig;
  oracle?: OracleCheck;
  /** What went wrong beside the migration itself, such as saving the calibration. */
  warnings?: string[];
}

/** Boots the guest, lets it run, migrates it to `url`, and prints the report for people. */
export async function runSource(
  config: SimGuestConfig,
  engine: MigrateOptions,
  url: string,
  warmupMs: number,
  say: (line: string) => void,
  connect: ConnectToAgentOptions,
  json: boolean,
): Promise<RunReport> {
  // Ctrl-C from here on, while booting too, cancels: the command then reports and exits. The
  // handler comes before the first line, which a parent may answer with a signal at once.
  const cancel = new AbortController();
  const onSignal = (): void => cancel.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  say(`booting a ${config.memoryBytes / 2 ** 20} MiB guest (${config.vcpus} vCPU, ${config.workload} workload, seed ${config.seed})...`);
  let guest: SimulatedGuest;
  try {
    guest = await SimulatedGuest.boot(config);
  } catch (err) {
    process.off('SIGINT', onSignal);
    throw err;
  }
  let migrated = false;
  const migrationId = engine.migrationId ?? randomUUID();
  try {
    // Ctrl-C ends the warmup at once; the migration that follows then reports itself cancelled.
    await sleep(warmupMs, undefined, { signal: cancel.signal }).catch(() => undefined);
    say(`migrating to ${url}...`);
    let transport;
    try {
      transport = await connectToAgent(url, connect);
    } catch (err) {
      // Nothing was handed over: the guest runs here, and the report says why it stayed.
      const error = asMigrationError(err, 'ERR_CONNECT_FAILED');
      const report = notStartedReport(migrationId, guest, url, engine, error);
      process.stderr.write(`livemig: ${error.code}: ${error.message}\n`);
      say(formatReport(report));
      return { ...report, guest: config };
    }
    const progress = terminalProgress(process.stderr);
    const report = await migrate(guest, transport, {
      ...engine,
      migrationId,
      targetName: url,
      signal: cancel.signal,
      openChannel: () => connectToAgent(url, connect),
      onProgress: json ? undefined : progress,
      // If the link breaks after "go", ask the agent afresh (the transport knows how) until it
      // answers or Ctrl-C: the paused copy here is the guest's only copy if the agent discarded.
      resolveTimeoutMs: Number.POSITIVE_INFINITY,
    });
    progress.done();
    migrated = report.guestRunningOn === 'target';
    say(formatReport(report));
    return { ...report, guest: config };
  } finally {
    process.off('SIGINT', onSignal);
    // A copy left here ends with this process; say so rather than hide it.
    if (!migrated) {
      say(leftHere(guest.paused));
      await guest.destroy();
    }
  }
}

/** The report of a migration that never reached `migrate()`: connecting or authenticating failed. */
function notStartedReport(migrationId: string, guest: SimulatedGuest, url: string, engine: MigrateOptions, error: MigrationError): MigrationReport {
  const d = guest.descriptor;
  return {
    migrationId,
    outcome: 'failed',
    guestRunningOn: 'source',
    startedAt: new Date().toISOString(),
    domain: { name: d.name, kind: d.kind, memoryBytes: d.memoryBytes, vcpus: d.vcpus },
    target: url,
    codec: engine.codec ?? DEFAULT_CODEC,
    memoryBytes: d.memoryBytes,
    downtimeBudgetMs: engine.downtimeBudgetMs ?? DEFAULT_DOWNTIME_BUDGET_MS,
    totalMs: 0,
    bytesRaw: 0,
    bytesWire: 0,
    rounds: [],
    maxThrottlePercent: 0,
    verified: false,
    error: error.toJSON(),
  };
}

/** What ending this process does to a guest that did not move to the target. */
function leftHere(paused: boolean): string {
  return paused
    ? 'the guest is paused here and may run on the target (see the message above); this paused copy ends with this command'
    : 'the guest ran on the source until now and stops with this command';
}
