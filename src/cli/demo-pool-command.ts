/**
 * `livemig demo --pool`: a pool on this machine. Three host agents (A, B, C) in processes of
 * their own on loopback share a fresh pool key and a pool file; six guests of mixed workloads
 * start on A; A is evacuated, its own agent coordinating, while this command follows it as
 * `livemig host evacuate` does; then every guest is checked against its replay oracle where it
 * runs.
 */

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlClient } from '../agent/control-client.js';
import type { EvacuationInfo, StartGuestRequest } from '../agent/control-types.js';
import { writeKeyFile } from '../agent/key-file.js';
import type { SimGuestConfig } from '../domain/sim/config.js';
import { ConnectFailedError } from '../errors.js';
import { stopChild } from '../util/child.js';
import { parse } from './args.js';
import { describePlan, describeResult, follow, Interrupt } from './evacuate-command.js';
import { spawnLivemig } from './node-flags.js';
import { checkHostGuestAgainstOracle, type OracleCheck } from './oracle-check.js';
import { formatBytes, parseInteger, parseSize } from './units.js';

export const DEMO_POOL_HELP = `usage: livemig demo --pool [--memory SIZE] [--parallel N] [--json]

Starts three host agents (A, B, C) on loopback, each in a process of its own, with a fresh pool
key and pool file; starts six guests of mixed workloads on A; evacuates A (A's agent coordinates,
two migrations at a time); prints the table per guest; and checks each guest against its replay
oracle where it runs. Exit status 0 when A is empty and every guest matches its oracle.

  --memory SIZE          memory of each guest (default 64MiB)
  --parallel N           migrations at once (default 2)
  --json                 the evacuation's report and the oracle checks as JSON
`;

/** How long the demo's hosts may take to exit after SIGTERM, in milliseconds. */
const HOST_STOP_TIMEOUT_MS = 5_000;

/** The six guests: every workload, dirtying a few MB/s. */
const GUESTS: ReadonlyArray<{ name: string; config: Partial<SimGuestConfig> }> = [
  { name: 'web-1', config: { workload: 'hotset', dirtyRateBytesPerSec: 20_000_000, hotSetBytes: 8 * 2 ** 20, seed: 1 } },
  { name: 'web-2', config: { workload: 'hotset', dirtyRateBytesPerSec: 20_000_000, hotSetBytes: 8 * 2 ** 20, seed: 2 } },
  { name: 'db', config: { workload: 'uniform', dirtyRateBytesPerSec: 10_000_000, seed: 3 } },
  { name: 'batch', config: { workload: 'sequential', dirtyRateBytesPerSec: 10_000_000, seed: 4 } },
  { name: 'cache', config: { workload: 'uniform', dirtyRateBytesPerSec: 5_000_000, seed: 5 } },
  { name: 'spare', config: { workload: 'idle', seed: 6 } },
];

const FLAGS = { memory: { type: 'string' }, parallel: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;

export async function demoPool(args: string[]): Promise<number> {
  const { values } = parse(args, FLAGS);
  if (values.help) {
    process.stdout.write(DEMO_POOL_HELP);
    return 0;
  }
  const memoryBytes = parseSize(values.memory ?? '64MiB', '--memory');
  const parallel = parseInteger(values.parallel ?? '2', '--parallel', 1, 64);
  const json = values.json ?? false;
  const say = (line: string): void => {
    if (!json) process.stdout.write(`${line}\n`);
  };
  const dir = await mkdtemp(join(tmpdir(), 'livemig-demo-pool-'));
  const keyFile = join(dir, 'pool.key');
  const poolFile = join(dir, 'pool.json');
  const key = await writeKeyFile(keyFile);
  const capacity = `${Math.ceil((GUESTS.length * memoryBytes) / 2 ** 20) + 64}MiB`;
  const children: ChildProcess[] = [];
  const interrupt = new Interrupt();
  try {
    const hosts: Array<{ name: string; url: string }> = [];
    for (const name of ['A', 'B', 'C']) {
      const child = spawnLivemig(['host', '--port', '0', '--json', '--supervised', '--name', name, '--capacity', capacity, '--key-file', keyFile, '--pool', poolFile, '--state-dir', dir]);
      children.push(child);
      hosts.push({ name, url: await hostUrl(child, name) });
    }
    await writeFile(poolFile, `${JSON.stringify({ hosts }, null, 2)}\n`);
    for (const h of hosts) say(`host ${h.name} listening on ${h.url} (${capacity} for guests)`);
    say(`pool file ${poolFile}, pool key ${keyFile}`);
    const clients = new Map(hosts.map((h) => [h.name, new ControlClient(h.url, { key })]));
    const a = clients.get('A')!;
    const configs = new Map<string, SimGuestConfig>();
    for (const g of GUESTS) {
      const request: StartGuestRequest = { name: g.name, memoryBytes, config: { ...g.config } };
      const info = await a.startGuest(request);
      configs.set(info.id, info.config as unknown as SimGuestConfig);
      say(`started ${g.name} on A: ${formatBytes(memoryBytes)}, ${g.config.workload}${g.config.dirtyRateBytesPerSec ? ` at ${g.config.dirtyRateBytesPerSec / 1e6} MB/s` : ''}`);
    }
    await sleep(1000);
    say(`\nlivemig host evacuate A --pool ${poolFile} --parallel ${parallel}`);
    const started = await a.evacuate({ parallel });
    say(describePlan(started));
    const info = await follow(a, started, json, say, interrupt);
    say(describeResult(info));
    const checks = await checkGuests(info, clients, configs, say);
    if (json) process.stdout.write(`${JSON.stringify({ evacuation: info, oracle: checks }, null, 2)}\n`);
    return info.hostEmpty && checks.every((c) => c.matches) ? 0 : 1;
  } finally {
    interrupt.close();
    await Promise.all(children.map((c) => stopChild(c, HOST_STOP_TIMEOUT_MS)));
    await rm(dir, { recursive: true, force: true });
  }
}

/** Each guest checked against its replay oracle on the host it runs on. */
async function checkGuests(
  info: EvacuationInfo,
  clients: Map<string, ControlClient>,
  configs: Map<string, SimGuestConfig>,
  say: (line: string) => void,
): Promise<Array<OracleCheck & { guestName: string; host: string }>> {
  say('\nchecking each guest against its replay oracle where it runs...');
  const checks = [];
  for (const g of info.guests) {
    const client = g.runsOn === undefined ? undefined : clients.get(g.runsOn);
    const config = configs.get(g.guestId);
    if (client === undefined || config === undefined) continue;
    const check = { ...(await checkHostGuestAgainstOracle(client, g.guestId, config)), guestName: g.guestName, host: g.runsOn! };
    checks.push(check);
    say(`  ${g.guestName.padEnd(8)} on ${check.host}: ${check.matches ? 'matches' : 'MISMATCH'} its replay after ${check.steps.join('+')} steps`);
  }
  return checks;
}

/** The control URL a host prints first; its later lines are read and dropped. */
async function hostUrl(child: ChildProcess, name: string): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit').then(([code]) => {
    throw new ConnectFailedError(`host ${name} exited with status ${code} before listening`);
  });
  exited.catch(() => undefined);
  const first = new Promise<string>((resolve) => {
    lines.on('line', (line) => {
      const event = JSON.parse(line) as { type?: string; url?: string };
      if (event.type === 'listening' && event.url) resolve(event.url);
    });
  });
  return Promise.race([first, exited]);
}
