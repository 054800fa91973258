// The evacuation plan's start order: priority first; within a priority, by each guest's pause
// estimate (over budget even alone, then busy, then the rest by total time, unknown last), busy
// and over-budget guests marked to move alone, and every guest's expected pause, total and the
// reason of its place in the plan, which the dry run shows.
import { expect, test } from 'vitest';
import type { GuestInfo, HostStatus, PauseEstimate } from '../dist/agent/control-types.js';
import { describePlan } from '../dist/cli/evacuate-command.js';
import { planEvacuation } from '../dist/pool/evacuation-plan.js';
import { planHostEvacuation } from '../dist/pool/evacuation.js';
import { FakePool, MiB } from './helpers/fake-pool.js';

function known(bestPauseMs: number, totalMs: number, downtimeBudgetMs = 300): PauseEstimate {
  return { state: 'known', bestPauseMs, totalMs, downtimeBudgetMs, fitsBudget: bestPauseMs <= 0.85 * downtimeBudgetMs, dirtySource: 'declared', linkSource: 'measured' };
}

function guest(name: string, memoryMiB: number, pauseEstimate?: PauseEstimate, priority = 0): GuestInfo {
  return { id: `id-${name}`, name, kind: 'sim', memoryBytes: memoryMiB * MiB, vcpus: 1, state: 'running', since: '', priority, pauseEstimate };
}

function host(name: string, freeMiB: number): HostStatus {
  const capacityBytes = 8192 * MiB;
  return { name, url: `http://${name}`, capacityBytes, usedBytes: capacityBytes - freeMiB * MiB, reservedBytes: 0, freeBytes: freeMiB * MiB, maintenance: false, guests: 0, migrationsIn: 0, migrationsOut: 0, version: 't' };
}

const hosts = [host('A', 0), host('B', 4096), host('C', 4096)];
// Sizes run against the estimates, so that the order by size (the old one) differs from the order by pause.
const mix = [
  guest('idle', 512, known(3, 1000)),
  guest('long', 384, known(20, 5000)),
  guest('busy', 256, known(200, 4000)),
  guest('over', 128, known(500, 9000)),
  guest('unknown', 1024, { state: 'unknown', downtimeBudgetMs: 300, reason: 'no link figure' }),
  guest('first', 64, known(250, 3000), 5),
];

test('within a priority: over budget, then busy, then longest total, then unknown; priority still first', () => {
  const plan = planEvacuation({ source: 'A', hosts, guests: mix });
  expect(plan.fits).toBe(true);
  expect(plan.moves.map((m) => m.guestName)).toEqual(['first', 'over', 'busy', 'long', 'idle', 'unknown']);
  expect(plan.moves.map((m) => m.alone ?? false)).toEqual([true, true, true, false, false, false]);
  expect(plan.moves.find((m) => m.guestName === 'busy')).toMatchObject({ expectedPauseMs: 200, expectedTotalMs: 4000 });
  expect(plan.moves.find((m) => m.guestName === 'busy')!.orderReason).toMatch(/67% of the 300 ms budget: moves alone/);
  expect(plan.moves.find((m) => m.guestName === 'unknown')!.orderReason).toMatch(/pause unknown \(no link figure\)/);
  // Placement is still by size: the two largest go to different targets.
  expect(plan.moves.find((m) => m.guestName === 'unknown')!.to).not.toBe(plan.moves.find((m) => m.guestName === 'idle')!.to);
});

test('only a guest over budget even alone is flagged, against the evacuation budget when it sets one', () => {
  const plan = planEvacuation({ source: 'A', hosts, guests: mix });
  expect(plan.moves.filter((m) => m.overBudget).map((m) => m.guestName)).toEqual(['over']);
  expect(plan.moves.find((m) => m.guestName === 'over')!.orderReason).toMatch(/expected pause 500 ms exceeds the 300 ms budget even alone/);
  const tighter = planEvacuation({ source: 'A', hosts, guests: mix, downtimeBudgetMs: 150 });
  expect(tighter.moves.filter((m) => m.overBudget).map((m) => m.guestName).sort()).toEqual(['busy', 'first', 'over']);
  expect(tighter.moves.filter((m) => m.alone).map((m) => m.guestName)).toEqual(['first', 'over', 'busy']);
});

test('with ordering off, priority then larger first, nobody alone, and the estimates still shown', () => {
  const plan = planEvacuation({ source: 'A', hosts, guests: mix, orderByPause: false });
  expect(plan.moves.map((m) => m.guestName)).toEqual(['first', 'unknown', 'idle', 'long', 'busy', 'over']);
  expect(plan.moves.some((m) => m.alone)).toBe(false);
  expect(plan.moves.find((m) => m.guestName === 'over')).toMatchObject({ overBudget: true, expectedPauseMs: 500 });
});

test('the dry run flags the guest expected over budget and says why each guest goes where it does', async () => {
  const pool = new FakePool([{ name: 'A', capacityMiB: 4096 }, { name: 'B', capacityMiB: 4096 }]);
  pool.addGuest('A', { name: 'calm', memoryMiB: 256, pauseEstimate: known(4, 1500) });
  pool.addGuest('A', { name: 'hot', memoryMiB: 128, pauseEstimate: known(420, 12_000) });
  const plan = await planHostEvacuation(pool, 'A');
  expect(plan.moves.map((m) => [m.guestName, m.overBudget ?? false, m.alone ?? false])).toEqual([
    ['hot', true, true],
    ['calm', false, false],
  ]);
  const text = describePlan({ evacuationId: 'x', host: 'A', state: 'planning', startedAt: '', plan: plan.moves, guests: [], hostEmpty: false, dryRun: true });
  const lines = text.split('\n');
  expect(lines.find((l) => l.includes('hot') && l.includes('OVER BUDGET'))).toMatch(/~420 ms OVER BUDGET\s+~12\.00 s\s+alone/);
  expect(lines.find((l) => /^\s+calm\s/.test(l))).toMatch(/~4\.0 ms\s+~1\.50 s\s+shared/);
  expect(text).toMatch(/hot: expected pause 420 ms exceeds the 300 ms budget even alone: moves alone/);
  expect(text).toMatch(/calm: expected pause 4\.0 ms, total 1\.50 s: shares the window/);
});
