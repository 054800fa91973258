// A long-lived agent warms its data path before it serves: `livemig listen` and `livemig host`
// migrate a few small simulated guests to themselves, say so on their listening line, and then
// serve a migration that completes true to its oracle; `--no-warm-up` skips it. The library's
// warmUp leaves nothing running behind it, and reports a failure instead of throwing.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { WARM_UP_MIGRATIONS, warmUp } from '../dist/agent/warm-up.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { migrate } from '../dist/precopy/migration.js';
import { BIN } from './helpers/agent-process.js';
import { expectAgentGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;

/** Starts `livemig ARGS --port 0 --json --supervised` and resolves with its listening event. */
async function listening(args: string[]): Promise<{ event: Record<string, unknown>; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, ...args, '--port', '0', '--json', '--supervised'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const event = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start listening within 30 s`)), 30_000);
    void exited.then((code) => reject(new Error(`${args[0]} exited with ${code} before listening`)));
    lines.on('line', (line) => {
      const e = JSON.parse(line) as Record<string, unknown>;
      if (e.type !== 'listening') return;
      clearTimeout(timer);
      resolve(e);
    });
  });
  return {
    event,
    stop: async () => {
      child.stdin!.end();
      return exited;
    },
  };
}

test('listen warms up with a few migrations before it serves, and then receives a guest true to its oracle', async () => {
  const agent = await listening(['listen']);
  try {
    const warm = agent.event.warmUp as { migrations: number; ms: number; error?: unknown };
    expect(warm.error).toBeUndefined();
    expect(warm.migrations).toBe(WARM_UP_MIGRATIONS);
    expect(warm.ms).toBeGreaterThan(0);
    const url = agent.event.url as string;
    const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 8 * MiB, seed: 17 };
    const guest = await SimulatedGuest.boot(config, 'after-warm-up');
    try {
      const report = await migrate(guest, await connectToAgent(url), { destroySource: false, targetName: url });
      expect(report.error).toBeUndefined();
      expect(report.outcome).toBe('completed');
      await expectAgentGuestMatchesOracle(url, report, guest, config);
    } finally {
      await guest.destroy();
    }
  } finally {
    expect(await agent.stop()).toBe(0);
  }
}, 90_000);

test('--no-warm-up serves at once, and host warms up as listen does', async () => {
  const cold = await listening(['listen', '--no-warm-up']);
  expect(cold.event.warmUp).toBeUndefined();
  expect(await cold.stop()).toBe(0);
  const host = await listening(['host', '--name', 'warm-host']);
  expect(host.event.warmUp).toMatchObject({ migrations: WARM_UP_MIGRATIONS });
  expect((host.event.warmUp as { error?: unknown }).error).toBeUndefined();
  expect(await host.stop()).toBe(0);
}, 90_000);

test('warmUp completes its migrations and leaves no thread, socket or timer behind; a failure is reported, not thrown', async () => {
  // What keeps the event loop alive, by kind: the warm-up may add none.
  const held = (): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
    return counts;
  };
  const before = held();
  const report = await warmUp({ migrations: 2, memoryBytes: 16 * MiB });
  expect(report).toMatchObject({ migrations: 2 });
  expect(report.error).toBeUndefined();
  // Closed sockets and exited threads leave the list on the next turn of the loop.
  await new Promise((r) => setTimeout(r, 200));
  const added = [...held()].filter(([kind, n]) => n > (before.get(kind) ?? 0));
  expect(added).toEqual([]);

  // Memory that is not a whole number of pages cannot be a guest: the warm-up stops at once.
  const failed = await warmUp({ migrations: 2, memoryBytes: 1000 });
  expect(failed.migrations).toBe(0);
  expect(failed.error?.code).toBe('ERR_INVALID_ARGUMENT');
}, 60_000);
