/**
 * `livemig vm start|list|migrate|stop`: guests on a host, through its control API only. `migrate`
 * shows progress on a terminal, waits for the outcome and exits by the table of exit-status.ts;
 * Ctrl-C while it waits cancels the migration (the guest stays on its host).
 */

import type { ControlClient } from '../agent/control-client.js';
import type { GuestInfo, MigrationInfo, StartGuestRequest } from '../agent/control-types.js';
import { DEFAULT_SIM_CONFIG } from '../domain/sim/config.js';
import { InvalidArgumentError, NotFoundError } from '../errors.js';
import { parse } from './args.js';
import { clientFromFlags, CONTROL_FLAGS, CONTROL_HELP, print } from './control-flags.js';
import { formatBytes, parseInteger, parsePositiveDuration, parseRate, parseSize } from './units.js';
import { pauseBasis, pauseCells } from './pause-cells.js';

export const VM_HELP = `usage: livemig vm start --host URL --name NAME --memory SIZE [flags]
       livemig vm list --host URL [flags]
       livemig vm migrate --host URL --guest ID|NAME --to URL [flags]
       livemig vm stop --host URL --guest ID|NAME [flags]

Starts, lists, migrates and stops guests on a host agent (livemig host), through its control API.

start:
  --name NAME            the guest's name (kept across migrations)
  --memory SIZE          its memory, e.g. 256MiB (a QEMU guest's: whole MiB, 16MiB or more)
  --backend KIND         sim (a simulated guest) or qemu (livemig's test guest under QEMU, on a
                         host run with --backend qemu); default sim
  --dirty-rate RATE      pages dirtied per second x 4 KiB, e.g. 20MB/s (a QEMU guest's default:
                         1000 pages/s)
  --vcpus N              virtual CPUs (default 1; a QEMU guest has 1)
  --workload KIND        sim: idle | uniform | hotset | sequential (default ${DEFAULT_SIM_CONFIG.workload})
  --hot-set SIZE         sim: working set of the hotset workload
  --seed N               sim: seed of the memory image and workload (default ${DEFAULT_SIM_CONFIG.seed})
  --priority N           evacuation order: higher moves first (default 0)
  --id ID                keep this pool-wide id (default: a new UUID)
migrate:
  --guest ID|NAME        the guest (its id, or its name if no other guest here has it)
  --to URL               the target host: http://HOST:PORT
  --downtime-budget DUR  longest pause to aim for, e.g. 50ms
  --max-bandwidth RATE   never send faster, e.g. 1Gbit/s
  --compress CODEC       auto | lz4 | none
  --no-wait              print the migration's id and return at once
stop:
  --guest ID|NAME        the guest to stop (its memory is freed)
${CONTROL_HELP}

Exit status of migrate: 0 the guest runs on the target, its copy verified; 1 it did not move
(it runs on its host; the message says why); 3 indeterminate (paused on its host, may run on
the target); 4 it runs on the target but the check of its copy failed or could not be made
(verified: NO).
Other commands: 0 done, 1 refused by the host (the message gives its code), 2 usage error.
`;

const VM_FLAGS = {
  ...CONTROL_FLAGS,
  name: { type: 'string' },
  memory: { type: 'string' },
  backend: { type: 'string' },
  vcpus: { type: 'string' },
  workload: { type: 'string' },
  'dirty-rate': { type: 'string' },
  'hot-set': { type: 'string' },
  seed: { type: 'string' },
  priority: { type: 'string' },
  id: { type: 'string' },
  guest: { type: 'string' },
  to: { type: 'string' },
  'downtime-budget': { type: 'string' },
  'max-bandwidth': { type: 'string' },
  compress: { type: 'string' },
  'no-wait': { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parse<typeof VM_FLAGS>>['values'];

/** Flags of `vm start` that only the simulated guest takes. */
const SIM_ONLY_FLAGS = ['workload', 'hot-set', 'seed'] as const;

export async function vmCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parse(rest, VM_FLAGS);
  if (values.help || sub === '--help' || sub === '-h') {
    process.stdout.write(VM_HELP);
    return 0;
  }
  if (sub !== 'start' && sub !== 'list' && sub !== 'migrate' && sub !== 'stop') {
    throw new InvalidArgumentError(`livemig vm needs start, list, migrate or stop${sub === undefined ? '' : `, not "${sub}"`}; run "livemig vm --help"`);
  }
  const client = await clientFromFlags(values, `vm ${sub}`);
  switch (sub) {
    case 'start': {
      const guest = await client.startGuest(startRequest(values));
      print(values.json, guest, `started ${describeGuest(guest)}`);
      return 0;
    }
    case 'list': {
      const guests = await client.guests();
      print(values.json, guests, guests.length === 0 ? 'no guests on this host' : guests.map(describeGuest).join('\n'));
      return 0;
    }
    case 'stop': {
      const guest = await client.stopGuest(await guestId(client, values.guest));
      print(values.json, guest, `stopped ${guest.name} (${guest.id}); its ${formatBytes(guest.memoryBytes)} are free`);
      return 0;
    }
    case 'migrate':
      return migrateGuest(client, values);
  }
}

function startRequest(values: Values): StartGuestRequest {
  if (values.name === undefined || values.memory === undefined) throw new InvalidArgumentError('vm start needs --name NAME and --memory SIZE');
  const request: StartGuestRequest = { name: values.name, memoryBytes: parseSize(values.memory, '--memory') };
  const kind = values.backend ?? 'sim';
  if (kind !== 'sim') {
    request.kind = kind;
    const simOnly = SIM_ONLY_FLAGS.filter((flag) => values[flag] !== undefined);
    if (simOnly.length > 0) throw new InvalidArgumentError(`--${simOnly.join(', --')} ${simOnly.length > 1 ? 'are' : 'is'} for the simulated guest, not --backend ${kind}`);
  }
  const config: Record<string, unknown> = {};
  if (values.workload !== undefined) config.workload = values.workload;
  if (values['dirty-rate'] !== undefined) config.dirtyRateBytesPerSec = parseRate(values['dirty-rate'], '--dirty-rate');
  if (values['hot-set'] !== undefined) config.hotSetBytes = parseSize(values['hot-set'], '--hot-set');
  if (values.seed !== undefined) config.seed = parseInteger(values.seed, '--seed', 0, 0xffffffff);
  if (Object.keys(config).length > 0) request.config = config;
  if (values.vcpus !== undefined) request.vcpus = parseInteger(values.vcpus, '--vcpus', 1, 256);
  if (values.priority !== undefined) request.priority = parseInteger(values.priority, '--priority', -1_000_000, 1_000_000);
  if (values.id !== undefined) request.id = values.id;
  return request;
}

/** The id of the guest `--guest` names: an id, or a name only one guest here has. */
async function guestId(client: ControlClient, given: string | undefined): Promise<string> {
  if (given === undefined) throw new InvalidArgumentError('this command needs --guest ID or NAME');
  const guests = await client.guests();
  if (guests.some((g) => g.id === given)) return given;
  const named = guests.filter((g) => g.name === given);
  if (named.length === 1) return named[0]!.id;
  if (named.length > 1) throw new InvalidArgumentError(`${named.length} guests here are named "${given}"; give one of their ids: ${named.map((g) => g.id).join(', ')}`);
  throw new NotFoundError(`no guest with id or name "${given}" runs on ${client.url.origin}`);
}

async function migrateGuest(client: ControlClient, values: Values): Promise<number> {
  if (values.to === undefined) throw new InvalidArgumentError('vm migrate needs --to http://HOST:PORT (the target host)');
  const request: Parameters<ControlClient['migrateGuest']>[1] = { to: values.to };
  if (values['downtime-budget'] !== undefined) request.downtimeBudgetMs = parsePositiveDuration(values['downtime-budget'], '--downtime-budget');
  if (values['max-bandwidth'] !== undefined) request.maxBandwidthBytesPerSec = parseRate(values['max-bandwidth'], '--max-bandwidth');
  if (values.compress !== undefined) {
    if (values.compress !== 'auto' && values.compress !== 'lz4' && values.compress !== 'none') throw new InvalidArgumentError(`--compress "${values.compress}" is not auto, lz4 or none`);
    request.codec = values.compress;
  }
  const started = await client.migrateGuest(await guestId(client, values.guest), request);
  if (values['no-wait']) {
    print(values.json, started, `migrating ${started.guestName} to ${started.to}: migration ${started.migrationId}`);
    return 0;
  }
  const tty = process.stderr.isTTY && !values.json;
  const onSignal = (): void => void client.cancelMigration(started.migrationId).catch(() => undefined);
  process.once('SIGINT', onSignal);
  let info: MigrationInfo;
  try {
    info = await client.waitForMigration(started.migrationId, {
      onProgress: (p) => {
        if (tty) process.stderr.write(`\r\x1b[2K${p.guestName} to ${p.to}: ${p.phase ?? p.state}${p.remainingBytes !== undefined ? `, ${formatBytes(p.remainingBytes)} left` : ''}`);
      },
    });
  } finally {
    process.off('SIGINT', onSignal);
    if (tty) process.stderr.write('\r\x1b[2K');
  }
  print(values.json, info, describeMigration(info));
  if (info.error && info.state !== 'completed' && info.state !== 'indeterminate') process.stderr.write(`livemig: ${info.error.code}: ${info.error.message}\n`);
  return migrateExitStatus(info);
}

/**
 * The exit status of `vm migrate` for a migration that has ended (its check too): 0 on the target
 * and verified, 4 on the target with a copy that differs, 3 indeterminate, 1 still on the source.
 */
export function migrateExitStatus(info: MigrationInfo): number {
  if (info.state === 'completed') return info.verified === false ? 4 : 0;
  if (info.state === 'indeterminate') return 3;
  return 1;
}

function describeGuest(g: GuestInfo): string {
  const moving = g.migrationId !== undefined ? ` (migration ${g.migrationId})` : '';
  const console = g.console !== undefined ? `, console ${g.console}` : '';
  const [pause, total] = pauseCells(g.pauseEstimate);
  const estimate = g.pauseEstimate?.state === 'known' ? `pause ${pause}, total ${total} (${pauseBasis(g.pauseEstimate)})` : `pause unknown: ${pauseBasis(g.pauseEstimate)}`;
  return `${g.name.padEnd(16)} ${g.id}  ${g.kind.padEnd(4)} ${g.state}${moving}  ${formatBytes(g.memoryBytes)}, ${g.vcpus} vCPU, priority ${g.priority}, since ${g.since}${console}\n${''.padEnd(17)}${estimate}`;
}

function describeMigration(m: MigrationInfo): string {
  const verdict =
    m.state === 'completed'
      ? `migrated: ${m.guestName} now runs on ${m.to}`
      : m.state === 'indeterminate'
        ? `INDETERMINATE: ${m.guestName} is paused on ${m.from} and may run on ${m.to}`
        : `${m.state}: ${m.guestName} still runs on ${m.from}`;
  const lines = [verdict, `  migration   ${m.migrationId}`];
  if (m.error) lines.push(`  reason      ${m.error.code}: ${m.error.message}`);
  if (m.verified !== undefined) lines.push(`  verified    ${m.verified ? 'yes: the copy on the target was the guest at the switchover' : 'NO: the copy on the target differs from the paused source, or its digest never came to compare'}`);
  if (m.downtimeMs !== undefined) lines.push(`  downtime    ${m.downtimeMs.toFixed(1)} ms`);
  if (m.totalMs !== undefined) lines.push(`  total       ${(m.totalMs / 1000).toFixed(2)} s`);
  if (m.bytesWire !== undefined) lines.push(`  on the wire ${formatBytes(m.bytesWire)}`);
  return lines.join('\n');
}
