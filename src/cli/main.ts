/**
 * The `livemig` command: `demo`, `listen`, `migrate`, `status`, `estimate`, `bench` and `keygen`.
 *
 * Exit status: 0 success, 1 the migration did not complete (the report says where the guest
 * runs), 2 a usage error, 3 indeterminate (the guest may run on the target; see the message).
 */

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectToAgent, queryAgent, type ConnectToAgentOptions } from '../agent/agent-client.js';
import { readKeyFile, writeKeyFile } from '../agent/key-file.js';
import { TargetAgent, type AgentEvent } from '../agent/target-agent.js';
import type { SimGuestConfig } from '../domain/sim/config.js';
import { SimulatedGuest } from '../domain/sim/guest.js';
import { InvalidArgumentError, MigrationError, asMigrationError } from '../errors.js';
import { migrate, SwitchoverCalibration, type MigrateOptions } from '../precopy/migration.js';
import type { PageCodec } from '../protocol/records.js';
import type { MigrationReport } from '../precopy/report.js';
import { runBench } from './bench-command.js';
import { ESTIMATE_HELP, runEstimate } from './estimate-command.js';
import { checkAgainstOracle, type OracleCheck } from './oracle-check.js';
import { engineOptionsFromFlags, GUEST_AND_ENGINE_FLAGS, GUEST_AND_ENGINE_HELP, guestConfigFromFlags } from './options.js';
import { stopChild, stopWithParent } from '../util/child.js';
import { missingNodeFlags, missingNodeFlagsNote, spawnLivemig } from './node-flags.js';
import { formatReport, terminalProgress } from './render.js';
import { parseDuration, parsePositiveDuration, parseInteger } from './units.js';

const USAGE = `usage: livemig <command> [flags]

Commands:
  demo                     start a target agent in a second process, boot a guest here,
                           migrate it live to the agent, check it against its replay oracle
  listen --port N          run a target agent that accepts migrations
  migrate --to URL         boot a guest here and migrate it live to the agent at URL
  status --to URL --id ID  ask an agent what became of a migration
  keygen PATH              write a new random pool key to PATH (mode 0600)
  estimate                 watch a guest for a moment and predict its migration
  bench [flags]            latency benchmark: a matrix of migrations to an agent in a second
                           process, with charts and tables (livemig bench --help)

demo and migrate:
  --warmup DUR           let the guest run this long before migrating (default 1s)
${GUEST_AND_ENGINE_HELP}
demo only:
  --run-after DUR        let the guest run on the target this long before the check (default 1s)
${ESTIMATE_HELP}
listen:
  --host ADDR            address to listen on (default 127.0.0.1)
  --port N               port (default 7070; 0 picks a free one)
  --key-file PATH        serve only peers that prove they hold this pool key
  --tls-cert PATH        serve wss:// with this certificate (PEM), with --tls-key
  --tls-key PATH         the certificate's private key (PEM)
  --insecure             allow a non-loopback --host without --key-file (trusted networks only)
  --go-timeout DUR       a prepared migration waits this long for "go", then discards (default 10s)
  --record-timeout DUR   a migration silent this long between records is dropped (default 60s)
  --idle-timeout DUR     a connection silent this long, pings included, is dropped: how a
                         partitioned source is noticed (default 30s; 0 turns this off)
  --supervised           run as another process's child: stop when standard input closes, and
                         leave Ctrl-C at the terminal to that process, which stops this agent
  --json                 one JSON event per line on stdout
migrate and status:
  --key-file PATH        the pool key: prove it to the agent and demand the agent's proof
  --tls-ca PATH          trust this CA (or self-signed) certificate for a wss:// agent
migrate only:
  --calibration PATH     keep the pause prediction's calibration in PATH (JSON, per codec;
                         created if missing): later runs predict their first pause from it
`;

/** What `demo` and `migrate --json` print. */
interface RunReport extends MigrationReport {
  guest: SimGuestConfig;
  oracle?: OracleCheck;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'bench' && (rest.includes('--help') || rest.includes('-h'))) {
    // Every command's flags are in the one usage text; estimate has a page of its own.
    process.stdout.write(command === 'estimate' ? ESTIMATE_HELP : USAGE);
    return 0;
  }
  // The commands that pause guests say so when Node runs without the command's options; to a
  // person at a terminal only, so that scripts reading the output see what they always did.
  if ((command === 'demo' || command === 'listen' || command === 'migrate') && process.stderr.isTTY) {
    for (const line of missingNodeFlagsNote(command, missingNodeFlags())) process.stderr.write(`${line}\n`);
  }
  switch (command) {
    case 'demo':
      return demo(rest);
    case 'listen':
      return listen(rest);
    case 'migrate':
      return migrateCommand(rest);
    case 'status':
      return status(rest);
    case 'keygen':
      return keygen(rest);
    case 'estimate':
      return runEstimate(rest);
    case 'bench':
      return runBench(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new InvalidArgumentError(`unknown command "${command}"; run "livemig --help"`);
  }
}

function parse<const T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false } as const);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** How long the demo's agent may take to exit after SIGTERM before it is killed, in milliseconds. */
const DEMO_AGENT_STOP_TIMEOUT_MS = 3000;

const CONNECT_FLAGS = { 'key-file': { type: 'string' }, 'tls-ca': { type: 'string' } } as const;

const RUN_FLAGS = {
  ...GUEST_AND_ENGINE_FLAGS,
  ...CONNECT_FLAGS,
  warmup: { type: 'string' },
  'run-after': { type: 'string' },
  to: { type: 'string' },
  calibration: { type: 'string' },
} as const;

/** The pool key and TLS trust that `--key-file` and `--tls-ca` ask for. */
async function connectOptionsFromFlags(values: { 'key-file'?: string; 'tls-ca'?: string }): Promise<ConnectToAgentOptions> {
  return {
    key: values['key-file'] === undefined ? undefined : await readKeyFile(values['key-file']),
    tls: values['tls-ca'] === undefined ? undefined : { ca: values['tls-ca'] },
  };
}

async function demo(args: string[]): Promise<number> {
  const { values } = parse(args, RUN_FLAGS);
  if (values['key-file'] !== undefined || values['tls-ca'] !== undefined || values.to !== undefined) {
    throw new InvalidArgumentError('demo runs both ends itself, with a fresh pool key: it takes no --to, --key-file or --tls-ca');
  }
  if (values.calibration !== undefined) throw new InvalidArgumentError('--calibration is for migrate, whose runs share it; demo starts afresh');
  const config = guestConfigFromFlags(values);
  const engine = engineOptionsFromFlags(values);
  const warmupMs = parseDuration(values.warmup ?? '1s', '--warmup');
  const runAfterMs = parseDuration(values['run-after'] ?? '1s', '--run-after');
  const json = values.json ?? false;
  const say = (line: string): void => {
    if (!json) process.stdout.write(`${line}\n`);
  };

  // A fresh pool key shared by both ends, so the demo authenticates as a real pool does.
  const keyDir = await mkdtemp(join(tmpdir(), 'livemig-demo-'));
  const keyFile = join(keyDir, 'pool.key');
  const connect: ConnectToAgentOptions = { key: await writeKeyFile(keyFile) };
  // The target agent is a second process, as it would be on another host.
  const child = spawnLivemig(['listen', '--port', '0', '--json', '--supervised', '--key-file', keyFile]);
  try {
    const url = await agentUrl(child);
    say(`target agent listening on ${url} (pid ${child.pid}), pool key in ${keyFile}`);
    const report = await runSource(config, engine, url, warmupMs, json, say, connect);
    if (report.outcome === 'completed') {
      say(`letting the guest run on the target for ${runAfterMs} ms, then checking it against its replay oracle...`);
      await sleep(runAfterMs);
      report.oracle = await checkAgainstOracle(url, report.migrationId, config, connect);
      say(
        report.oracle.matches
          ? `oracle: the guest on the target matches its replay after ${report.oracle.steps.join('+')} steps`
          : `oracle: MISMATCH after ${report.oracle.steps.join('+')} steps (memory ${report.oracle.memoryMatches}, registers ${report.oracle.registersMatch})`,
      );
    }
    if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return exitCode(report);
  } finally {
    await stopChild(child, DEMO_AGENT_STOP_TIMEOUT_MS);
    await rm(keyDir, { recursive: true, force: true });
  }
}

async function migrateCommand(args: string[]): Promise<number> {
  const { values } = parse(args, RUN_FLAGS);
  if (values.to === undefined) throw new InvalidArgumentError('migrate needs --to ws://HOST:PORT (the target agent)');
  if (values['run-after'] !== undefined) {
    throw new InvalidArgumentError('--run-after is for demo, which checks the guest on the target after that long; migrate leaves the guest to the agent');
  }
  const config = guestConfigFromFlags(values);
  const engine = engineOptionsFromFlags(values);
  const warmupMs = parseDuration(values.warmup ?? '1s', '--warmup');
  const json = values.json ?? false;
  const connect = await connectOptionsFromFlags(values);
  const codec: PageCodec = engine.codec ?? 'lz4';
  const saved = values.calibration === undefined ? undefined : await readCalibrations(values.calibration);
  if (saved) engine.calibration = saved.get(codec) ?? new SwitchoverCalibration();
  const report = await runSource(
    config,
    engine,
    values.to,
    warmupMs,
    json,
    (line) => {
      if (!json) process.stdout.write(`${line}\n`);
    },
    connect,
  );
  if (saved && engine.calibration) {
    saved.set(codec, engine.calibration);
    await writeCalibrations(values.calibration!, saved);
  }
  if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  return exitCode(report);
}

/** The calibrations saved in `path`, by codec; none if the file does not exist yet. */
async function readCalibrations(path: string): Promise<Map<PageCodec, SwitchoverCalibration>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new InvalidArgumentError(`cannot read the calibration file ${path}: ${(err as Error).message}`);
  }
  const out = new Map<PageCodec, SwitchoverCalibration>();
  try {
    const saved: unknown = JSON.parse(text);
    if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) throw new Error('not a JSON object of codecs');
    for (const [codec, samples] of Object.entries(saved)) {
      if (codec !== 'lz4' && codec !== 'none') throw new Error(`unknown codec "${codec}"`);
      out.set(codec, SwitchoverCalibration.fromJSON(samples));
    }
  } catch (err) {
    throw new InvalidArgumentError(`the calibration file ${path} is not one livemig wrote: ${(err as Error).message}`);
  }
  return out;
}

/** Writes `calibrations` to `path` in one step, so a crash leaves the old file or the new one. */
async function writeCalibrations(path: string, calibrations: Map<PageCodec, SwitchoverCalibration>): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(Object.fromEntries(calibrations), null, 2)}\n`);
  await rename(tmp, path);
}

/** Boots the guest, lets it run, migrates it to `url`, and prints the report for people. */
async function runSource(
  config: SimGuestConfig,
  engine: MigrateOptions,
  url: string,
  warmupMs: number,
  json: boolean,
  say: (line: string) => void,
  connect: ConnectToAgentOptions,
): Promise<RunReport> {
  say(`booting a ${config.memoryBytes / 2 ** 20} MiB guest (${config.vcpus} vCPU, ${config.workload} workload, seed ${config.seed})...`);
  const guest = await SimulatedGuest.boot(config);
  let migrated = false;
  const cancel = new AbortController();
  const onSignal = (): void => cancel.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  try {
    await sleep(warmupMs);
    say(`migrating to ${url}...`);
    const transport = await connectToAgent(url, connect);
    const progress = terminalProgress(process.stderr);
    const report = await migrate(guest, transport, {
      ...engine,
      targetName: url,
      signal: cancel.signal,
      onProgress: json ? undefined : progress,
      // If the link breaks after "go", ask the agent afresh what it did with the guest, until it
      // answers or Ctrl-C: the paused copy here is the guest's only copy if the agent discarded.
      resolveOutcome: async (id) => (await queryAgent(url, id, connect)).state,
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

/** What ending this process does to a guest that did not move to the target. */
function leftHere(paused: boolean): string {
  return paused
    ? 'the guest is paused here and may run on the target (see the message above); this paused copy ends with this command'
    : 'the guest ran on the source until now and stops with this command';
}

async function listen(args: string[]): Promise<number> {
  const { values } = parse(args, {
    host: { type: 'string' },
    port: { type: 'string' },
    json: { type: 'boolean' },
    'key-file': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    insecure: { type: 'boolean' },
    'go-timeout': { type: 'string' },
    'record-timeout': { type: 'string' },
    'idle-timeout': { type: 'string' },
    supervised: { type: 'boolean' },
  } as const);
  const port = parseInteger(values.port ?? '7070', '--port', 0, 65535);
  const goTimeoutMs = values['go-timeout'] === undefined ? undefined : parsePositiveDuration(values['go-timeout'], '--go-timeout');
  const recordIdleTimeoutMs = values['record-timeout'] === undefined ? undefined : parsePositiveDuration(values['record-timeout'], '--record-timeout');
  if (goTimeoutMs === 0 || recordIdleTimeoutMs === 0) throw new InvalidArgumentError('--go-timeout and --record-timeout must be above zero');
  const idleTimeoutMs = values['idle-timeout'] === undefined ? undefined : parseDuration(values['idle-timeout'], '--idle-timeout');
  const cert = values['tls-cert'];
  const tlsKey = values['tls-key'];
  if ((cert === undefined) !== (tlsKey === undefined)) throw new InvalidArgumentError('--tls-cert and --tls-key go together');
  const agent = await TargetAgent.start({
    host: values.host ?? '127.0.0.1',
    port,
    key: values['key-file'] === undefined ? undefined : await readKeyFile(values['key-file']),
    tls: cert !== undefined && tlsKey !== undefined ? { cert, key: tlsKey } : undefined,
    insecure: values.insecure ?? false,
    goTimeoutMs,
    recordIdleTimeoutMs,
    idleTimeoutMs,
  });
  const json = values.json ?? false;
  const print = (event: Record<string, unknown>, human: string): void => {
    process.stdout.write(json ? `${JSON.stringify({ time: new Date().toISOString(), ...event })}\n` : `${human}\n`);
  };
  const access = agent.requiresKey ? 'pool key required' : 'no pool key: any peer that reaches it is served';
  print({ type: 'listening', url: agent.url, port: agent.port, keyRequired: agent.requiresKey }, `livemig agent listening on ${agent.url} (${access})`);
  agent.on('event', (e: AgentEvent) => print(e, describeEvent(e)));
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    print({ type: 'stopping', signal }, `stopping on ${signal}: guests running here stop with this agent`);
    await agent.close();
    process.exit(0);
  };
  if (values.supervised) {
    stopWithParent(stop);
  } else {
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  }
  await new Promise(() => undefined);
  return 0;
}

function describeEvent(e: AgentEvent): string {
  switch (e.type) {
    case 'migration-started':
      return `${e.migrationId}: receiving ${e.domainName} (${e.memoryBytes / 2 ** 20} MiB) from ${e.from}`;
    case 'migration-resumed':
      return `${e.migrationId}: resumed here after ${e.pages} pages (${(e.bytesWire / 2 ** 20).toFixed(1)} MiB on the wire)`;
    case 'migration-discarded':
      return `${e.migrationId}: discarded (${e.error?.code}: ${e.error?.message}); the guest stays on its source`;
    case 'connection-refused':
      return `refused ${e.from}: ${e.error.code}: ${e.error.message}`;
  }
}

async function status(args: string[]): Promise<number> {
  const { values } = parse(args, { ...CONNECT_FLAGS, to: { type: 'string' }, id: { type: 'string' }, json: { type: 'boolean' } } as const);
  if (values.to === undefined || values.id === undefined) throw new InvalidArgumentError('status needs --to URL and --id MIGRATION_ID');
  const answer = await queryAgent(values.to, values.id, await connectOptionsFromFlags(values));
  process.stdout.write(values.json ? `${JSON.stringify({ migrationId: answer.migrationId, state: answer.state })}\n` : `${answer.migrationId}: ${answer.state}\n`);
  return 0;
}

async function keygen(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: {}, strict: true, allowPositionals: true });
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  const [path, ...extra] = parsed.positionals;
  if (path === undefined || extra.length > 0) throw new InvalidArgumentError('keygen needs exactly one argument: the path of the key file to create');
  await writeKeyFile(path);
  process.stdout.write(`wrote a new pool key to ${path} (mode 0600); copy it to every host of the pool and pass it with --key-file\n`);
  return 0;
}

/** Reads the agent's first JSON line to learn where it listens. */
async function agentUrl(child: ChildProcess): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit').then(([code]) => {
    throw new MigrationError('ERR_CONNECT_FAILED', `the target agent exited with status ${code} before listening`);
  });
  const first = (async () => {
    for await (const line of lines) {
      const event = JSON.parse(line) as { type: string; url?: string };
      if (event.type === 'listening' && event.url) return event.url;
    }
    throw new MigrationError('ERR_CONNECT_FAILED', 'the target agent closed its output before listening');
  })();
  return Promise.race([first, exited]);
}

function exitCode(report: MigrationReport & { oracle?: OracleCheck }): number {
  if (report.outcome === 'indeterminate') return 3;
  if (report.outcome !== 'completed' || !report.verified) return 1;
  if (report.oracle && !report.oracle.matches) return 1;
  return 0;
}


main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const error = asMigrationError(err);
    process.stderr.write(`livemig: ${error.code}: ${error.message}\n`);
    process.exitCode = error instanceof InvalidArgumentError ? 2 : 1;
  },
);
