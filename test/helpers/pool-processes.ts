// A pool of `livemig host` processes on loopback, each run with the pool file and a state dir so
// that it can evacuate itself, six guests of mixed workloads, and the `livemig host evacuate`
// command run as a user runs it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { EvacuationInfo, GuestInfo } from '../../dist/agent/control-types.js';
import { writeKeyFile } from '../../dist/agent/key-file.js';
import type { SimGuestConfig } from '../../dist/domain/sim/config.js';
import { BIN } from './agent-process.js';
import { expectHostGuestMatchesOracle, startHostProcess, type HostProcess } from './host-process.js';

export const MiB = 2 ** 20;

export interface Pool {
  dir: string;
  keyFile: string;
  poolFile: string;
  hosts: Record<string, HostProcess>;
  /** Each guest started, by id: its configuration for the oracle. */
  configs: Map<string, SimGuestConfig>;
  stop(): Promise<void>;
}

/** Starts one host process per entry (name and capacity), and writes the pool file naming them. */
export async function startPool(capacities: Record<string, string>): Promise<Pool> {
  const dir = mkdtempSync(join(tmpdir(), 'livemig-pool-'));
  const keyFile = join(dir, 'pool.key');
  const poolFile = join(dir, 'pool.json');
  const key = await writeKeyFile(keyFile);
  const names = Object.keys(capacities);
  const started = await Promise.all(
    names.map((name) => startHostProcess(name, ['--capacity', capacities[name]!, '--key-file', keyFile, '--pool', poolFile, '--state-dir', join(dir, `state-${name}`)], key)),
  );
  const hosts = Object.fromEntries(started.map((h) => [h.name, h]));
  writeFileSync(poolFile, JSON.stringify({ hosts: started.map((h) => ({ name: h.name, url: h.url })) }));
  return {
    dir,
    keyFile,
    poolFile,
    hosts,
    configs: new Map(),
    async stop() {
      await Promise.all(started.map((h) => h.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Six guests of mixed workloads, 32 MiB each, dirtying a few MB/s. */
export const MIXED_GUESTS = [
  { name: 'idle-1', config: { workload: 'idle', seed: 11 } },
  { name: 'uniform-1', config: { workload: 'uniform', dirtyRateBytesPerSec: 3_000_000, seed: 12 } },
  { name: 'hotset-1', config: { workload: 'hotset', dirtyRateBytesPerSec: 6_000_000, hotSetBytes: 2 * MiB, seed: 13 } },
  { name: 'sequential-1', config: { workload: 'sequential', dirtyRateBytesPerSec: 3_000_000, seed: 14 } },
  { name: 'uniform-2', config: { workload: 'uniform', dirtyRateBytesPerSec: 1_000_000, seed: 15 } },
  { name: 'idle-2', config: { workload: 'idle', seed: 16 } },
] as const;

/** Starts the six mixed guests on `host`; returns their ids. */
export async function startMixedGuests(pool: Pool, host: string, memoryBytes = 32 * MiB): Promise<string[]> {
  const ids: string[] = [];
  for (const g of MIXED_GUESTS) {
    const info = await pool.hosts[host]!.client.startGuest({ name: g.name, memoryBytes, config: { ...g.config } });
    pool.configs.set(info.id, info.config as unknown as SimGuestConfig);
    ids.push(info.id);
  }
  return ids;
}

/** Where each guest is: guest id to the names of the live hosts that list it. */
export async function placesOfGuests(pool: Pool, hosts: string[]): Promise<Map<string, Array<{ host: string; guest: GuestInfo }>>> {
  const places = new Map<string, Array<{ host: string; guest: GuestInfo }>>();
  for (const host of hosts) {
    for (const guest of await pool.hosts[host]!.client.guests()) {
      places.set(guest.id, [...(places.get(guest.id) ?? []), { host, guest }]);
    }
  }
  return places;
}

/** Expects guest `id` to run on exactly `host` among `hosts`, and to match its replay oracle there. */
export async function expectRunsOnlyOn(pool: Pool, id: string, host: string, hosts: string[]): Promise<void> {
  const places = (await placesOfGuests(pool, hosts)).get(id) ?? [];
  expect(places.map((p) => p.host), `the hosts guest ${id} is on`).toEqual([host]);
  expect(places[0]!.guest.state).toBe('running');
  await expectHostGuestMatchesOracle(pool.hosts[host]!.client, id, pool.configs.get(id)!);
}

export interface CommandRun {
  child: ChildProcess;
  /** Resolves with its exit status and output once it has exited. */
  done: Promise<{ status: number | null; stdout: string; stderr: string }>;
}

/** Starts `livemig ...args` without waiting for it. */
export function startLivemig(args: string[]): CommandRun {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (status) => resolve({ status, stdout, stderr })));
  return { child, done };
}

/** Runs `livemig host evacuate ...args --json` against the pool to its end; returns its exit status and report. */
export async function evacuateWithCli(pool: Pool, args: string[]): Promise<{ status: number | null; info: EvacuationInfo; stderr: string }> {
  const run = await startEvacuation(pool, args).done;
  return { status: run.status, info: parseReport(run.stdout, run.stderr), stderr: run.stderr };
}

export function startEvacuation(pool: Pool, args: string[]): CommandRun {
  return startLivemig(['host', 'evacuate', ...args, '--pool', pool.poolFile, '--key-file', pool.keyFile, '--json']);
}

export function parseReport(stdout: string, stderr: string): EvacuationInfo {
  try {
    return JSON.parse(stdout) as EvacuationInfo;
  } catch {
    throw new Error(`livemig host evacuate printed no JSON report:\n${stdout}\n${stderr}`);
  }
}

/** Waits until `check` holds, asking every 25 ms, for at most `ms`. */
export async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
