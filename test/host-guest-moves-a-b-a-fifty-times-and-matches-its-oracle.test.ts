// One guest started on host A moves A→B→A… 50 times under a dirtying workload, each host a
// separate `livemig host` process. After every move it runs on exactly one host, under the same
// pool-wide id and name, and its memory and registers match its replay oracle; the hosts' memory,
// handles and timers stay bounded over the moves (measured after 10 moves and after 50).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { HostStatus } from '../dist/agent/control-types.js';
import { writeKeyFile } from '../dist/agent/key-file.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { expectHostGuestMatchesOracle, startHostProcess, type HostProcess } from './helpers/host-process.js';

const MOVES = 50;
const MiB = 2 ** 20;
let dir: string;
let hosts: HostProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'livemig-hosts-'));
  const keyFile = join(dir, 'pool.key');
  const key = await writeKeyFile(keyFile);
  hosts = await Promise.all(['A', 'B'].map((name) => startHostProcess(name, ['--capacity', '64MiB', '--key-file', keyFile], key)));
});

afterAll(async () => {
  await Promise.all(hosts.map((h) => h.stop()));
  rmSync(dir, { recursive: true, force: true });
});

/** What a host holds: its memory and the handles and timers keeping its process alive. */
function usage(s: HostStatus): { rssBytes: number; heapBytes: number; resources: number; timers: number } {
  const counts = s.process!.activeResources;
  return {
    rssBytes: s.process!.rssBytes,
    heapBytes: s.process!.heapUsedBytes,
    resources: Object.values(counts).reduce((a, b) => a + b, 0),
    timers: counts.Timeout ?? 0,
  };
}

/** The least of each figure over `window`. */
function least(window: Array<ReturnType<typeof usage>>): ReturnType<typeof usage> {
  return {
    rssBytes: Math.min(...window.map((u) => u.rssBytes)),
    heapBytes: Math.min(...window.map((u) => u.heapBytes)),
    resources: Math.min(...window.map((u) => u.resources)),
    timers: Math.min(...window.map((u) => u.timers)),
  };
}

test(`a guest moves A→B→A ${MOVES} times, keeps its id and name, matches its oracle after each move, and the hosts do not grow`, async () => {
  const [a, b] = hosts as [HostProcess, HostProcess];
  const started = await a.client.startGuest({
    name: 'wanderer',
    memoryBytes: 16 * MiB,
    priority: 7,
    config: { workload: 'uniform', dirtyRateBytesPerSec: 8_000_000, seed: 42 },
  });
  const config = started.config as unknown as SimGuestConfig;
  expect(config.memoryBytes).toBe(16 * MiB);
  let lastSteps = await expectHostGuestMatchesOracle(a.client, started.id, config);
  // Sampled after each move: a collection may run at any time, so each figure is the least of a
  // window of moves. The first window comes after 15 moves, once the process has grown to its
  // working size (its allocator's arenas, the vCPU threads' heaps); from there a host that kept
  // a 16 MiB guest per arrival would grow by about 240 MiB.
  const samples: Array<Array<ReturnType<typeof usage>>> = [];
  for (let move = 1; move <= MOVES; move++) {
    const [from, to] = move % 2 === 1 ? [a, b] : [b, a];
    const begun = await from.client.migrateGuest(started.id, { to: to.url });
    const ended = await from.client.waitForMigration(begun.migrationId, { intervalMs: 25 });
    expect(ended, `move ${move} from ${from.name} to ${to.name}`).toMatchObject({ state: 'completed', guestRunningOn: 'target', guestId: started.id });
    // On exactly one host, under the same id, name and priority.
    expect(await from.client.guests()).toEqual([]);
    const there = await to.client.guests();
    expect(there).toHaveLength(1);
    expect(there[0]).toMatchObject({ id: started.id, name: 'wanderer', priority: 7, state: 'running', memoryBytes: 16 * MiB });
    // The target reports the same migration as having brought it in.
    expect(await to.client.migration(begun.migrationId)).toMatchObject({ direction: 'in', state: 'completed', guestId: started.id });
    const steps = await expectHostGuestMatchesOracle(to.client, started.id, config);
    steps.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(lastSteps[i]!));
    lastSteps = steps;
    samples.push(await Promise.all(hosts.map(async (h) => usage(await h.client.host()))));
  }
  // The guest kept dirtying memory all along.
  expect(lastSteps[0]).toBeGreaterThan(100);
  for (const [i, host] of hosts.entries()) {
    const before = least(samples.slice(15, 21).map((s) => s[i]!));
    const after = least(samples.slice(MOVES - 6).map((s) => s[i]!));
    expect(after.rssBytes - before.rssBytes, `RSS growth of host ${host.name}`).toBeLessThan(128 * MiB);
    expect(after.heapBytes - before.heapBytes, `JavaScript heap growth of host ${host.name}`).toBeLessThan(8 * MiB);
    expect(after.resources, `active handles and requests of host ${host.name}`).toBeLessThanOrEqual(before.resources + 2);
    expect(after.timers, `timers of host ${host.name}`).toBeLessThanOrEqual(before.timers + 1);
  }
  const finalHost = MOVES % 2 === 0 ? a : b;
  expect(await finalHost.client.host()).toMatchObject({ guests: 1, usedBytes: 16 * MiB, reservedBytes: 0, freeBytes: 48 * MiB });
}, 240_000);
