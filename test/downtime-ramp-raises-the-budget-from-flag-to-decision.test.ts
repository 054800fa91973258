// A downtime ramp (`--downtime-ramp INITIAL:STEPS:INTERVAL`, `MigrateOptions.downtimeRamp`)
// starts the budget low and raises it in steps to `downtimeBudgetMs`: the flag parses to the
// option, and the engine's decisions, progress and report carry the budget in force.
import { afterEach, describe, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { engineOptionsFromFlags } from '../dist/cli/options.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import type { MigrationProgress } from '../dist/precopy/report.js';
import type { PrecopyStats } from '../dist/precopy/policy.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 8 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 10e6, hotSetBytes: MiB, seed: 17 };
const backends = new Map([['sim', new SimTargetBackend()]]);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('--downtime-ramp', () => {
  test('INITIAL:STEPS:INTERVAL becomes the ramp, with units', () => {
    expect(engineOptionsFromFlags({ 'downtime-ramp': '50ms:5:2s' }).downtimeRamp).toEqual({ initialMs: 50, steps: 5, stepIntervalMs: 2000 });
    expect(engineOptionsFromFlags({ 'downtime-ramp': '20:3:1min' }).downtimeRamp).toEqual({ initialMs: 20, steps: 3, stepIntervalMs: 60_000 });
    expect(engineOptionsFromFlags({}).downtimeRamp).toBeUndefined();
  });

  test.each([
    ['50ms:5', /INITIAL:STEPS:INTERVAL/],
    ['50ms:5:2s:1', /INITIAL:STEPS:INTERVAL/],
    ['soon:5:2s', /initial budget/],
    ['50ms:0:2s', /steps/],
    ['50ms:2.5:2s', /steps/],
    ['50ms:5:fast', /interval/],
    // The engine refuses a ramp that starts at nothing or never steps; so does the flag, before
    // a guest is booted or an agent asked.
    ['0ms:5:2s', /initial budget/],
    ['50ms:5:0s', /interval/],
  ])('"%s" is refused with ERR_INVALID_ARGUMENT', (text, why) => {
    let error: unknown;
    try {
      engineOptionsFromFlags({ 'downtime-ramp': text });
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(why) });
    expect((error as Error).message).toContain('--downtime-ramp');
  });
});

test('the budget starts at the ramp\'s initial value and rises step by step in what the policy, the progress and the report see', async () => {
  const ramp = { initialMs: 5, steps: 2, stepIntervalMs: 200 };
  const finalMs = 100;
  const stepValue = (step: number) => ramp.initialMs + ((finalMs - ramp.initialMs) * step) / ramp.steps;
  const guest = await SimulatedGuest.boot(config, 'ramped');
  cleanups.push(() => guest.destroy());
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends, collectGarbage: null });
  const decisions: PrecopyStats[] = [];
  const progress: MigrationProgress[] = [];
  const report = await migrate(guest, a, {
    downtimeBudgetMs: finalMs,
    downtimeRamp: ramp,
    collectGarbage: null,
    autoConverge: 'off',
    onProgress: (p) => progress.push(p),
    // Keeps going until the budget in force is the final one: the ramp must get there.
    policy: (stats) => {
      decisions.push(stats);
      return stats.downtimeBudgetMs >= finalMs ? 'stop-and-copy' : 'continue';
    },
  });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');

  // The first progress comes as the migration starts: the initial budget is in force.
  expect(progress[0]!.downtimeBudgetMs).toBe(ramp.initialMs);
  // Each decision saw the step its time into the migration had reached (or, on a boundary, the next).
  for (const d of decisions) {
    const step = Math.min(ramp.steps, Math.floor(d.elapsedMs / ramp.stepIntervalMs));
    expect([stepValue(step), stepValue(Math.min(ramp.steps, step + 1))]).toContain(d.downtimeBudgetMs);
  }
  const budgets = [...progress.map((p) => p.downtimeBudgetMs), ...decisions.map((d) => d.downtimeBudgetMs)];
  for (const budget of budgets) expect([0, 1, 2].map(stepValue)).toContain(budget);
  for (let i = 1; i < progress.length; i++) expect(progress[i]!.downtimeBudgetMs).toBeGreaterThanOrEqual(progress[i - 1]!.downtimeBudgetMs);
  expect(decisions.at(-1)!.downtimeBudgetMs).toBe(finalMs);
  expect(report.downtimeBudgetMs).toBe(finalMs);
});
