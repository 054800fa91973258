/**
 * The `livemig` command: `demo`, `listen`, `migrate`, `status`, `estimate`, `bench` and `keygen`.
 *
 * Exit statuses are one table, {@link EXIT_STATUS_HELP}, shown by `--help` and the README.
 */

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectToAgent, queryAgent, type ConnectToAgentOptions } from '../agent/agent-client.js';
import { readKeyFile, writeKeyFile } from '../agent/key-file.js';
import { TargetAgent, type AgentEvent } from '../agent/target-agent.js';
import type { SimGuestConfig } from '../domain/sim/config.js';
import { SimulatedGuest } from '../domain/sim/guest.js';
import { InvalidArgumentError, MigrationError, UnsettledError, asMigrationError } from '../errors.js';
import { migrate, SwitchoverCalibration, type MigrateOptions } from '../precopy/migration.js';
import { DEFAULT_DOWNTIME_BUDGET_MS } from '../precopy/policy.js';
import type { PageCodec } from '../protocol/records.js';
import type { MigrationReport } from '../precopy/report.js';
import { runBench } from './bench-harness.js';
import { ESTIMATE_HELP, runEstimate } from './estimate-command.js';
import { checkAgainstOracle, type OracleCheck } from './oracle-check.js';
import { engineOptionsFromFlags, GUEST_AND_ENGINE_FLAGS, GUEST_AND_ENGINE_HELP, guestConfigFromFlags } from './options.js';
import { stopChild, stopWithParent } from '../util/child.js';
import { missingNodeFlags, missingNodeFlagsNote, spawnLivemig } from './node-flags.js';
import { formatReport, terminalProgress } from './render.js';
import { parseDuration, parsePositiveDuration, parseInteger } from './units.js';

/** What each exit status means, for `--help` and the README alike. */
const EXIT_STATUS_HELP = `Exit status:
  0  done: for demo and migrate, the guest runs on the target and its copy was verified
  1  the migration did not complete: the guest runs on the source (the report says why)
  2  a usage error: nothing was started
  3  indeterminate: the guest is paused here and may run on the target (see the message)
  4  the guest runs on the target, but a check after the switchover failed or could not
     be made (the report's verified and oracle fields say which)`;

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
  --supervised           run as another process's child: stop when standard input closes, and
                         leave Ctrl-C at the terminal to that process, which stops this agent
  --json                 one JSON event per line on stdout
migrate and status:
  --key-file PATH        the pool key: prove it to the agent and demand the agent's proof
  --tls-ca PATH          trust this CA (or self-signed) certificate for a wss:// agent
migrate only:
  --calibration PATH     keep the pause prediction's calibration in PATH (JSON, per codec;
                         created if missing): later runs predict their first pause from it

${EXIT_STATUS_HELP}
`;

/** What `demo` and `migrate --json` print. */
interface RunReport extends MigrationReport {
  guest: SimGuestConfig;
  oracle?: OracleCheck;
  /** What went wrong beside the migration itself, such as saving the calibration. */
  warnings?: string[];
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
    return parseArgs({ args: joinNegativeValues(args, options), options, strict: true, allowPositionals: false } as const);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/**
 * `--memory -64MiB` as `--memory=-64MiB`: parseArgs takes a value that starts with a dash for a
 * flag, and would call the option ambiguous, where the value's own parser says what is wrong.
 */
function joinNegativeValues(args: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && /^-[0-9.]/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/**
 * The agent URL of `--to`, checked before anything starts: `ws://` or `wss://`, a host, and a
 * port if not the scheme's own.
 */
function agentUrlFlag(text: string | undefined, command: string): string {
  if (text === undefined) throw new InvalidArgumentError(`${command} needs --to ws://HOST:PORT (the target agent)`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError(`--to "${text}" is not a URL; give the target agent as ws://HOST:PORT or wss://HOST:PORT`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new InvalidArgumentError(`--to "${text}" is not a ws:// or wss:// URL; give the target agent as ws://HOST:PORT or wss://HOST:PORT`);
  }
  if (url.hostname === '') throw new InvalidArgumentError(`--to "${text}" names no host; give the target agent as ws://HOST:PORT`);
  return text;
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
    const report = await runSource(config, engine, url, warmupMs, say, connect, json);
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
  const to = agentUrlFlag(values.to, 'migrate');
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
    to,
    warmupMs,
    (line) => {
      if (!json) process.stdout.write(`${line}\n`);
    },
    connect,
    json,
  );
  if (saved && engine.calibration) {
    saved.set(codec, engine.calibration);
    // Bookkeeping: a calibration that cannot be saved never changes what the migration did.
    try {
      await writeCalibrations(values.calibration!, saved);
    } catch (err) {
      const warning = `the calibration could not be saved to ${values.calibration}: ${(err as Error).message}`;
      (report.warnings ??= []).push(warning);
      process.stderr.write(`livemig: warning: ${warning}\n`);
    }
  }
  if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  return exitCode(report);
}

/** The calibrations saved in `path`, by codec; none if the file does not exist yet. */
async function readCalibrations(path: string): Promise<Map<PageCodec, SwitchoverCalibration>> {
  // Checked before the guest boots, so that a typo is a usage error and not a lost save afterwards.
  try {
    await access(dirname(path), fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    throw new InvalidArgumentError(`cannot keep the calibration in ${path}: its directory is missing or not writable (${(err as Error).message})`);
  }
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
  say: (line: string) => void,
  connect: ConnectToAgentOptions,
  json: boolean,
): Promise<RunReport> {
  say(`booting a ${config.memoryBytes / 2 ** 20} MiB guest (${config.vcpus} vCPU, ${config.workload} workload, seed ${config.seed})...`);
  const guest = await SimulatedGuest.boot(config);
  let migrated = false;
  const cancel = new AbortController();
  const onSignal = (): void => cancel.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  const migrationId = engine.migrationId ?? randomUUID();
  try {
    await sleep(warmupMs);
    say(`migrating to ${url}...`);
    let transport;
    try {
      transport = await connectToAgent(url, connect);
    } catch (err) {
      // Nothing was handed over: the guest runs here, and the report says why it stayed.
      const report = notStartedReport(migrationId, guest, url, engine, asMigrationError(err, 'ERR_CONNECT_FAILED'));
      say(formatReport(report));
      return { ...report, guest: config };
    }
    const progress = terminalProgress(process.stderr);
    const report = await migrate(guest, transport, {
      ...engine,
      migrationId,
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
    codec: engine.codec ?? 'lz4',
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
    supervised: { type: 'boolean' },
  } as const);
  const port = parseInteger(values.port ?? '7070', '--port', 0, 65535);
  const goTimeoutMs = values['go-timeout'] === undefined ? undefined : parsePositiveDuration(values['go-timeout'], '--go-timeout');
  const recordIdleTimeoutMs = values['record-timeout'] === undefined ? undefined : parsePositiveDuration(values['record-timeout'], '--record-timeout');
  if (goTimeoutMs === 0 || recordIdleTimeoutMs === 0) throw new InvalidArgumentError('--go-timeout and --record-timeout must be above zero');
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
  const to = agentUrlFlag(values.to, 'status');
  if (values.id === undefined) throw new InvalidArgumentError('status needs --to URL and --id MIGRATION_ID');
  const answer = await queryAgent(to, values.id, await connectOptionsFromFlags(values));
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

/** The exit status of a migration's report (see {@link EXIT_STATUS_HELP}). */
function exitCode(report: MigrationReport & { oracle?: OracleCheck }): number {
  if (report.outcome === 'indeterminate') return 3;
  if (report.outcome !== 'completed') return 1;
  if (!report.verified || (report.oracle && !report.oracle.matches)) return 4;
  return 0;
}

const argv = process.argv.slice(2);
/** With `--json`, every end of the command prints one JSON object, failures included. */
const jsonOut = argv.includes('--json') && argv[0] !== 'listen';

function fail(error: MigrationError, status: number): void {
  process.stderr.write(`livemig: ${error.code}: ${error.message}\n`);
  if (jsonOut) process.stdout.write(`${JSON.stringify({ outcome: 'failed', error: error.toJSON() }, null, 2)}\n`);
  process.exitCode = status;
}

let settled = false;
// Every wait in the command settles when its peer goes away; should one ever not, the process
// would run out of work and exit 0 in silence. This turns that into a failure with a code.
process.once('beforeExit', () => {
  if (!settled) {
    fail(new UnsettledError('the command was left waiting on something nothing could settle any more (the process ran out of work); this is a bug in livemig, please report it'), 1);
  }
});
main(argv).then(
  (code) => {
    settled = true;
    process.exitCode = code;
  },
  (err: unknown) => {
    settled = true;
    const error = asMigrationError(err);
    fail(error, error instanceof InvalidArgumentError ? 2 : 1);
  },
);
