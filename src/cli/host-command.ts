/**
 * `livemig host`: run a host agent (`livemig host --port N ...`), or ask one about itself and
 * switch its maintenance (`status`, `enable`, `disable`) through its control API.
 */

import { metricsToken } from '../agent/control-auth.js';
import type { HostStatus } from '../agent/control-types.js';
import { HostAgent, type HostAgentOptions } from '../agent/host-agent.js';
import type { MigrationEvent } from '../agent/host-metrics.js';
import { readKeyFile } from '../agent/key-file.js';
import type { AgentEvent } from '../agent/target-agent.js';
import { InvalidArgumentError } from '../errors.js';
import { parse } from './args.js';
import { clientFromFlags, CONTROL_FLAGS, CONTROL_HELP, print } from './control-flags.js';
import { evacuateCommand, EVACUATE_HELP } from './evacuate-command.js';
import { prefaultFromFlags } from './backend-flags.js';
import { hostBackendsFromFlag } from './host-backends.js';
import { evacuationHooks } from './pool-command.js';
import { eventPrinter, serveUntilStopped } from './serve-until-stopped.js';
import { formatBytes, parseInteger, parseRate, parseSize } from './units.js';
import { WARM_UP_HELP, warmUpUnless, warmUpWords } from './warm-up-flag.js';

export const HOST_HELP = `usage: livemig host --port N [flags]          run a host agent
       livemig host status|enable|disable --host URL [flags]
       livemig host evacuate A [--to B,C] [--parallel N] [--dry-run] [--pool FILE] [flags]
       livemig host metrics-token --key-file PATH

A host agent keeps guests: it starts and stops them, receives them by migration, migrates them
to other hosts, and answers its control API (docs/api.md) on the same port as the migrations.

Running a host:
  --port N               port (default 7070; 0 picks a free one)
  --bind ADDR            address to listen on (default 127.0.0.1)
  --name NAME            the host's name in its pool (default: the machine's host name)
  --capacity SIZE        memory it may give to guests, e.g. 4GiB (default: half the machine's)
  --link-bandwidth RATE  the link its migrations leave by, e.g. 1GB/s or 10Gbit/s: the figure of
                         its guests' pause estimates until a migration from it has measured one
                         (default: none; estimates are unknown until then)
  --key-file PATH        the pool key: migrations and control requests must prove it
  --tls-cert PATH        serve https:// and wss:// with this certificate (PEM), with --tls-key
  --tls-key PATH         the certificate's private key (PEM)
  --insecure             allow a non-loopback --bind without --key-file (trusted networks only)
  --maintenance          start in maintenance: no new guests, no incoming migrations
  --backend LIST         kinds of guest it starts and receives: sim, qemu or sim,qemu (default
                         sim); qemu needs qemu-system-x86_64 and gcc, and runs each guest in QEMU
  --qemu-dir DIR         where QEMU guests keep their RAM file and serial log, a folder each;
                         must be tmpfs (default /dev/shm)
  --no-prefault          do not fault an incoming simulated guest's fresh memory in from a
                         worker thread while the first pass arrives (the default does, from
                         64 MiB: a faster first pass, all of its memory resident at once)
${WARM_UP_HELP}
  --pool FILE            the pool file (docs/pool.md): lets this host run evacuations of
                         itself (POST /v1/host/evacuate); without it they answer 501
  --state-dir DIR        where evacuation ledgers are kept (default $XDG_STATE_HOME/livemig,
                         else livemig-state in the system's temporary folder)
  --supervised           stop when standard input closes (run as another process's child)
  --json                 one JSON line per event on stdout (a line per migration phase)

Asking a host:
  status                 capacity, used, reserved and free memory, maintenance, migrations
  enable                 leave maintenance: take new guests and incoming migrations again
  disable                enter maintenance: no new guests, no incoming migrations (exit 0
                         once the host has it; guests already there keep running)
${CONTROL_HELP}

${EVACUATE_HELP}

metrics-token prints the bearer token a Prometheus scraper may send to GET /metrics.
`;

const SUBCOMMANDS = new Set(['status', 'enable', 'disable', 'metrics-token']);

export async function hostCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'evacuate') return evacuateCommand(rest);
  if (sub !== undefined && SUBCOMMANDS.has(sub)) return ask(sub, rest);
  if (sub !== undefined && !sub.startsWith('-')) throw new InvalidArgumentError(`unknown host command "${sub}"; run "livemig host --help"`);
  return runHost(args);
}

async function ask(sub: string, args: string[]): Promise<number> {
  const { values } = parse(args, CONTROL_FLAGS);
  if (values.help) {
    process.stdout.write(HOST_HELP);
    return 0;
  }
  if (sub === 'metrics-token') {
    if (values['key-file'] === undefined) throw new InvalidArgumentError('metrics-token needs --key-file PATH (the pool key)');
    const token = metricsToken(await readKeyFile(values['key-file']));
    print(values.json, { token }, token);
    return 0;
  }
  const client = await clientFromFlags(values, `host ${sub}`);
  const status = sub === 'status' ? await client.host() : await client.setMaintenance(sub === 'disable');
  print(values.json, status, describeStatus(status));
  return 0;
}

/** A host's status for people. */
export function describeStatus(s: HostStatus): string {
  const lines = [
    `host ${s.name} at ${s.url} (livemig ${s.version})${s.maintenance ? ': IN MAINTENANCE (no new guests, no incoming migrations)' : ''}`,
    `  memory      ${formatBytes(s.capacityBytes)} capacity: ${formatBytes(s.usedBytes)} used, ${formatBytes(s.reservedBytes)} reserved, ${formatBytes(s.freeBytes)} free`,
    `  guests      ${s.guests}${s.guestKinds !== undefined ? ` (takes kinds ${s.guestKinds.join(', ')})` : ''}`,
    `  migrations  ${s.migrationsIn} in, ${s.migrationsOut} out`,
  ];
  if (s.evacuationId !== undefined) lines.push(`  evacuation  ${s.evacuationId} under way`);
  return lines.join('\n');
}

const RUN_FLAGS = {
  port: { type: 'string' },
  bind: { type: 'string' },
  name: { type: 'string' },
  capacity: { type: 'string' },
  'link-bandwidth': { type: 'string' },
  'key-file': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  insecure: { type: 'boolean' },
  maintenance: { type: 'boolean' },
  backend: { type: 'string' },
  'qemu-dir': { type: 'string' },
  prefault: { type: 'boolean' },
  'no-prefault': { type: 'boolean' },
  'no-warm-up': { type: 'boolean' },
  pool: { type: 'string' },
  'state-dir': { type: 'string' },
  supervised: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** What `livemig host` flags set of a host agent's options, before any file is read. */
export type HostFlagOptions = Pick<HostAgentOptions, 'host' | 'port' | 'name' | 'capacityBytes' | 'linkBytesPerSec' | 'insecure' | 'maintenance'>;

/**
 * The host agent options `livemig host` flags give, checked.
 * @throws InvalidArgumentError for a port, size or rate that does not parse.
 */
export function hostFlagOptions(values: ReturnType<typeof parse<typeof RUN_FLAGS>>['values']): HostFlagOptions {
  const options: HostFlagOptions = {
    host: values.bind ?? '127.0.0.1',
    port: parseInteger(values.port ?? '7070', '--port', 0, 65535),
    name: values.name,
    capacityBytes: values.capacity === undefined ? undefined : parseSize(values.capacity, '--capacity'),
    insecure: values.insecure ?? false,
    maintenance: values.maintenance ?? false,
  };
  if (values['link-bandwidth'] !== undefined) {
    const rate = parseRate(values['link-bandwidth'], '--link-bandwidth');
    if (rate <= 0) throw new InvalidArgumentError(`--link-bandwidth must be more than 0, got "${values['link-bandwidth']}"`);
    options.linkBytesPerSec = rate;
  }
  return options;
}

/** Parses the flags of `livemig host` (running a host) into its agent's options; for tests and embedders. */
export function parseHostFlags(args: string[]): HostFlagOptions {
  return hostFlagOptions(parse(args, RUN_FLAGS).values);
}

async function runHost(args: string[]): Promise<number> {
  const { values } = parse(args, RUN_FLAGS);
  if (values.help) {
    process.stdout.write(HOST_HELP);
    return 0;
  }
  const cert = values['tls-cert'];
  const tlsKey = values['tls-key'];
  if ((cert === undefined) !== (tlsKey === undefined)) throw new InvalidArgumentError('--tls-cert and --tls-key go together');
  const json = values.json ?? false;
  const flags = hostFlagOptions(values);
  const key = values['key-file'] === undefined ? undefined : await readKeyFile(values['key-file']);
  if (values['state-dir'] !== undefined && values.pool === undefined) throw new InvalidArgumentError('--state-dir keeps evacuation ledgers: it goes with --pool FILE');
  const evacuations = values.pool === undefined ? {} : evacuationHooks(values.pool, key, values['state-dir']);
  const kinds = hostBackendsFromFlag(values.backend ?? 'sim', { qemuDir: values['qemu-dir'], prefault: prefaultFromFlags(values), spareThreads: true });
  const say = eventPrinter(json);
  // Before the port opens, so that no migration meets the warm-up on the same cores.
  const warm = await warmUpUnless(values['no-warm-up']);
  const host = await HostAgent.start({
    ...flags,
    key,
    ...evacuations,
    ...kinds,
    tls: cert !== undefined && tlsKey !== undefined ? { cert, key: tlsKey } : undefined,
    log: (e) => say({ type: 'migration', ...e }, describeEvent(e)),
  });
  const s = host.status();
  const access = host.target.requiresKey ? 'pool key required' : 'no pool key: anyone who reaches it is served';
  host.target.on('event', (e: AgentEvent) => {
    if (e.type === 'connection-refused') say(e, `refused ${e.from}: ${e.error.code}: ${e.error.message}`);
  });
  const announce = (): void =>
    say(
      {
        type: 'listening',
        url: s.url,
        port: host.port,
        name: s.name,
        capacityBytes: s.capacityBytes,
        keyRequired: host.target.requiresKey,
        maintenance: s.maintenance,
        backends: [...kinds.launchers.keys()],
        ...(warm ? { warmUp: warm } : {}),
      },
      `livemig host ${s.name} listening on ${s.url} (${formatBytes(s.capacityBytes)} for guests of kind ${[...kinds.launchers.keys()].join(', ')}; ${access})${warmUpWords(warm)}`,
    );
  return serveUntilStopped(() => host.close(), say, values.supervised ?? false, 'host', announce);
}

function describeEvent(e: MigrationEvent): string {
  const arrow = e.direction === 'out' ? `to ${e.to}` : `from ${e.from}`;
  const error = e.error ? ` (${e.error.code}: ${e.error.message})` : '';
  const downtime = e.downtimeMs !== undefined ? `, paused ${e.downtimeMs.toFixed(1)} ms` : '';
  return `${e.migrationId}: ${e.guestName} ${arrow}: ${e.phase} [${e.state}]${downtime}${error}`;
}
