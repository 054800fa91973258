/**
 * `livemig demo --backend qemu`: boots livemig's test guest under QEMU here, migrates it live to an
 * agent in a second process (`livemig listen --backend qemu`), lets it run there, and checks
 * that its RAM was identical at the switchover (livemig's digest), that it runs on at the target
 * with its own memory check passing (its serial log, which the agent names), and that the QEMU
 * here is gone.
 */

import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectToAgent, type ConnectToAgentOptions } from '../agent/agent-client.js';
import { writeKeyFile } from '../agent/key-file.js';
import { QemuProcess } from '../domain/qemu/qemu-process.js';
import { QemuSourceDomain } from '../domain/qemu/source-domain.js';
import { buildTestGuest, readTestGuestLog, testGuestAppend, testGuestSourceHash, type TestGuestReport } from '../domain/qemu/test-guest.js';
import { asMigrationError, ConnectFailedError, InvalidArgumentError } from '../errors.js';
import { migrate } from '../precopy/migration.js';
import type { MigrateOptions } from '../precopy/migrate-options.js';
import type { MigrationReport } from '../precopy/report.js';
import { stopChild } from '../util/child.js';
import { exitCode } from './exit-status.js';
import { spawnLivemig } from './node-flags.js';
import { engineOptionsFromFlags } from './options.js';
import { formatReport, terminalProgress } from './render.js';
import { parseDuration, parseRate, parseSize } from './units.js';

/** Guest RAM of the QEMU demo when --memory is not given, in MiB. */
export const DEFAULT_QEMU_DEMO_MEMORY_MIB = 256;

/** Bytes the QEMU demo's guest writes per second when --dirty-rate is not given. */
export const DEFAULT_QEMU_DEMO_DIRTY_RATE_BYTES_PER_SEC = 20e6;

/** How long the demo's agent may take to exit after SIGTERM, in milliseconds. */
const AGENT_STOP_TIMEOUT_MS = 3000;

/** Flags of the simulated guest that a QEMU guest has no use for. */
const SIM_ONLY_FLAGS = ['vcpus', 'workload', 'hot-set', 'seed'] as const;

/** What the guest on the target showed after the switchover. */
export interface QemuGuestCheck {
  /** Its per-second lines after the switchover. */
  reports: number;
  /** Guest seconds from the first to the last of them. */
  secondsRun: number;
  /** Pages it found wrong, by its last line and by its failure lines. */
  errors: number;
  /** The QEMU on the source has exited and its RAM file is gone. */
  sourceGone: boolean;
  /** It ran (two or more lines, time advancing), found no error, and the source is gone. */
  ok: boolean;
  /** Why the guest could not be checked (the agent went away before it said where the log is); `ok` is then false. */
  error?: { code: string; message: string };
}

/** What `demo --backend qemu --json` prints. */
export interface QemuDemoReport extends MigrationReport {
  guest: { kind: 'qemu-test-guest'; memoryMiB: number; ratePagesPerSecond: number };
  guestCheck?: QemuGuestCheck;
}

type Flags = Record<string, string | boolean | undefined>;

/** Runs the QEMU demo with the flags `demo` parsed. */
export async function qemuDemo(values: Flags): Promise<number> {
  for (const flag of SIM_ONLY_FLAGS) {
    if (values[flag] !== undefined) throw new InvalidArgumentError(`--${flag} is for the simulated guest; the QEMU test guest takes --memory and --dirty-rate`);
  }
  const memoryBytes = parseSize((values.memory as string | undefined) ?? `${DEFAULT_QEMU_DEMO_MEMORY_MIB}MiB`, '--memory');
  if (memoryBytes % 2 ** 20 !== 0 || memoryBytes < 16 * 2 ** 20) throw new InvalidArgumentError('--memory of a QEMU guest must be whole MiB, 16MiB or more');
  const rate = values['dirty-rate'] === undefined ? DEFAULT_QEMU_DEMO_DIRTY_RATE_BYTES_PER_SEC : parseRate(values['dirty-rate'] as string, '--dirty-rate');
  const guest = { kind: 'qemu-test-guest' as const, memoryMiB: memoryBytes / 2 ** 20, ratePagesPerSecond: Math.round(rate / 4096) };
  const engine = engineOptionsFromFlags(values);
  const warmupMs = parseDuration((values.warmup as string | undefined) ?? '2s', '--warmup');
  const runAfterMs = parseDuration((values['run-after'] as string | undefined) ?? '3s', '--run-after');
  const json = values.json === true;
  const say = (line: string): void => {
    if (!json) process.stdout.write(`${line}\n`);
  };

  const dir = await mkdtemp(join(tmpdir(), 'livemig-demo-'));
  const keyFile = join(dir, 'pool.key');
  const connect: ConnectToAgentOptions = { key: await writeKeyFile(keyFile) };
  const agent = startAgent(['listen', '--port', '0', '--json', '--supervised', '--key-file', keyFile, '--backend', 'qemu']);
  let qemu: QemuProcess | undefined;
  try {
    const url = await agent.listening;
    say(`target agent listening on ${url} (pid ${agent.child.pid}), receiving QEMU guests`);
    say(`booting the QEMU test guest here: ${guest.memoryMiB} MiB, writing ${guest.ratePagesPerSecond} pages/s...`);
    qemu = await QemuProcess.start({
      memoryMiB: guest.memoryMiB,
      ramPath: `/dev/shm/livemig-demo-${process.pid}`,
      kernel: await buildTestGuest(),
      append: testGuestAppend({ ratePagesPerSecond: guest.ratePagesPerSecond }),
      serialPath: join(dir, 'source-serial.log'),
    });
    await sleep(warmupMs);
    const domain = await QemuSourceDomain.attach(qemu, { kernel: { kind: 'test-guest', hash: await testGuestSourceHash() }, name: 'qemu-test-guest' });
    const report: QemuDemoReport = { ...(await migrateOnce(domain, url, engine, connect, json)), guest };
    say(formatReport(report));
    if (report.outcome === 'completed') {
      say(`letting the guest run on the target for ${runAfterMs} ms, then reading its serial log...`);
      try {
        report.guestCheck = await checkGuestOnTarget(agent, report.migrationId, runAfterMs, qemu);
      } catch (err) {
        // The migration completed all the same: a check that cannot be made is exit status 4.
        const sourceGone = !qemu.running && !existsSync(qemu.definition.ramPath);
        report.guestCheck = { reports: 0, secondsRun: 0, errors: 0, sourceGone, ok: false, error: asMigrationError(err).toJSON() };
      }
      const c = report.guestCheck;
      say(
        c.error
          ? `guest on the target could not be checked (${c.error.code}: ${c.error.message})`
          : `guest on the target: ${c.reports} reports over ${c.secondsRun} s, ${c.errors} pages found wrong; ` +
              `source QEMU ${c.sourceGone ? 'gone' : 'STILL THERE'} -> ${c.ok ? 'ok' : 'FAILED'}`,
      );
    } else {
      say('the guest runs on here and stops with this command');
    }
    if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    const code = exitCode(report);
    return code === 0 && report.guestCheck?.ok === false ? 4 : code;
  } finally {
    await qemu?.stop();
    await stopChild(agent.child, AGENT_STOP_TIMEOUT_MS);
    await rm(dir, { recursive: true, force: true });
  }
}

async function migrateOnce(domain: QemuSourceDomain, url: string, engine: MigrateOptions, connect: ConnectToAgentOptions, json: boolean): Promise<MigrationReport> {
  const cancel = new AbortController();
  const onSignal = (): void => cancel.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  try {
    const transport = await connectToAgent(url, connect);
    const progress = terminalProgress(process.stderr);
    const report = await migrate(domain, transport, {
      ...engine,
      targetName: url,
      signal: cancel.signal,
      openChannel: () => connectToAgent(url, connect),
      onProgress: json ? undefined : progress,
    });
    progress.done();
    return report;
  } finally {
    process.off('SIGINT', onSignal);
  }
}

/** Reads the target's serial log after `runAfterMs`: the guest's lines since the switchover. */
async function checkGuestOnTarget(agent: DemoAgent, migrationId: string, runAfterMs: number, source: QemuProcess): Promise<QemuGuestCheck> {
  const resumed = await agent.event((e) => e.type === 'migration-resumed' && e.migrationId === migrationId);
  await sleep(runAfterMs);
  const lines = typeof resumed.console === 'string' ? await readTestGuestLog(resumed.console) : [];
  const reports = lines.filter((l): l is TestGuestReport => l.kind === 'report');
  const failures = lines.filter((l) => l.kind === 'check-failed').length;
  const errors = Math.max(failures, reports.at(-1)?.errors ?? 0);
  const secondsRun = reports.length > 1 ? reports.at(-1)!.seconds - reports[0]!.seconds : 0;
  const sourceGone = !source.running && !existsSync(source.definition.ramPath);
  return { reports: reports.length, secondsRun, errors, sourceGone, ok: reports.length >= 2 && secondsRun > 0 && errors === 0 && sourceGone };
}

interface DemoAgent {
  child: ChildProcess;
  listening: Promise<string>;
  /** The first JSON event `pred` accepts, once the agent has printed it. */
  event(pred: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

/** Starts `livemig` with `args` and follows its JSON events. */
function startAgent(args: string[]): DemoAgent {
  const child = spawnLivemig(args);
  const events: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let ended = false;
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', (line) => {
    events.push(JSON.parse(line) as Record<string, unknown>);
    for (const w of [...waiters]) w();
  });
  lines.once('close', () => {
    ended = true;
    for (const w of [...waiters]) w();
  });
  const event = (pred: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = events.find(pred);
        if (hit || ended) waiters.delete(check);
        if (hit) resolve(hit);
        else if (ended) reject(new ConnectFailedError(`the target agent exited (status ${child.exitCode ?? child.signalCode})`));
      };
      waiters.add(check);
      check();
    });
  const listening = event((e) => e.type === 'listening').then((e) => String(e.url));
  listening.catch(() => undefined);
  return { child, listening, event };
}
