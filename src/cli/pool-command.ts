/**
 * `livemig pool status`: every host of a pool file with its capacity, free and reserved memory,
 * maintenance and guests, as `xe host-list` and `xe vm-list` show a XenServer pool. Also the
 * wiring of `livemig host --pool FILE`: the evacuation hooks its agent runs.
 */

import os from 'node:os';
import { join } from 'node:path';
import { ControlClient } from '../agent/control-client.js';
import type { GuestInfo, HostStatus } from '../agent/control-types.js';
import type { HostAgent } from '../agent/host-agent.js';
import type { HostAgentOptions } from '../agent/host-options.js';
import { readKeyFile } from '../agent/key-file.js';
import { asMigrationError, InvalidArgumentError } from '../errors.js';
import { HostEvacuations } from '../pool/host-evacuations.js';
import { FilePoolStore } from '../pool/pool-store.js';
import { parse } from './args.js';
import { CONTROL_FLAGS, print } from './control-flags.js';
import { pauseCells } from './pause-cells.js';
import { formatTable } from './table.js';
import { formatBytes } from './units.js';

export const POOL_HELP = `usage: livemig pool status --pool FILE [--key-file PATH] [--tls-ca PATH] [--json]

Shows every host of the pool file: its capacity, used, reserved and free memory, maintenance
and migrations, then every guest with the host it runs on. A host that does not answer is shown
with its error code. Exit status: 0 every host answered, 1 some did not, 2 usage error.

The pool file (docs/pool.md) names each host and its control URL:
  { "hosts": [ { "name": "A", "url": "http://10.0.0.1:7070" }, ... ] }
`;

/** Where a host keeps its evacuation ledgers without --state-dir. */
export function defaultStateDir(): string {
  const state = process.env.XDG_STATE_HOME;
  return state ? join(state, 'livemig') : join(os.tmpdir(), 'livemig-state');
}

/** The hooks that let a host agent evacuate itself over the pool in `poolFile`. */
export function evacuationHooks(
  poolFile: string,
  key: Uint8Array | undefined,
  stateDir = defaultStateDir(),
): Pick<HostAgentOptions<HostAgent>, 'onEvacuate' | 'onEvacuationStatus' | 'onEvacuationCancel'> {
  const evacuations = new HostEvacuations({ store: new FilePoolStore(poolFile), key, stateDir });
  return {
    onEvacuate: (request, host) => evacuations.start(request, host),
    onEvacuationStatus: (id) => evacuations.status(id),
    onEvacuationCancel: (id) => evacuations.cancel(id),
  };
}

const POOL_FLAGS = { ...CONTROL_FLAGS, pool: { type: 'string' } } as const;

/** One host as `pool status` saw it. */
interface HostView {
  name: string;
  url: string;
  status?: HostStatus;
  guests?: GuestInfo[];
  error?: { code: string; message: string };
}

export async function poolCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parse(sub === '--help' || sub === '-h' ? [sub] : rest, POOL_FLAGS);
  if (values.help) {
    process.stdout.write(POOL_HELP);
    return 0;
  }
  if (sub !== 'status') throw new InvalidArgumentError(`livemig pool needs status${sub === undefined ? '' : `, not "${sub}"`}; run "livemig pool --help"`);
  if (values.pool === undefined) throw new InvalidArgumentError('pool status needs --pool FILE (the pool file)');
  const key = values['key-file'] === undefined ? undefined : await readKeyFile(values['key-file']);
  const tls = values['tls-ca'] === undefined ? undefined : { ca: values['tls-ca'] };
  const members = await new FilePoolStore(values.pool).list();
  const hosts = await Promise.all(
    members.map(async (m): Promise<HostView> => {
      const client = new ControlClient(m.url, { key, tls, timeoutMs: 10_000 });
      try {
        const [status, guests] = await Promise.all([client.host(), client.guests()]);
        return { ...m, status, guests };
      } catch (err) {
        return { ...m, error: asMigrationError(err, 'ERR_CONNECT_FAILED').toJSON() };
      }
    }),
  );
  print(values.json, { hosts }, describePool(hosts));
  return hosts.every((h) => h.error === undefined) ? 0 : 1;
}

function describePool(hosts: readonly HostView[]): string {
  if (hosts.length === 0) return 'the pool file names no host';
  const hostRows = [['HOST', 'STATE', 'CAPACITY', 'USED', 'RESERVED', 'FREE', 'GUESTS', 'MIGRATIONS', 'URL']];
  const guestRows = [['GUEST', 'HOST', 'STATE', 'MEMORY', 'VCPUS', 'PRIORITY', 'PAUSE', 'TOTAL', 'ID']];
  for (const h of hosts) {
    const s = h.status;
    if (s === undefined) {
      hostRows.push([h.name, 'unreachable', '-', '-', '-', '-', '-', '-', `${h.url}  ${h.error?.code}: ${h.error?.message}`]);
      continue;
    }
    const state = s.evacuationId !== undefined ? 'evacuating' : s.maintenance ? 'maintenance' : 'enabled';
    hostRows.push([h.name, state, formatBytes(s.capacityBytes), formatBytes(s.usedBytes), formatBytes(s.reservedBytes), formatBytes(s.freeBytes), String(s.guests), `${s.migrationsIn} in, ${s.migrationsOut} out`, h.url]);
    for (const g of h.guests ?? []) {
      const state = g.migrationId !== undefined ? `${g.state} (${g.migrationId})` : g.state;
      guestRows.push([g.name, h.name, state, formatBytes(g.memoryBytes), String(g.vcpus), String(g.priority), ...pauseCells(g.pauseEstimate), g.id]);
    }
  }
  const guests = guestRows.length > 1 ? formatTable(guestRows) : 'no guests';
  return `${formatTable(hostRows)}\n\n${guests}`;
}
