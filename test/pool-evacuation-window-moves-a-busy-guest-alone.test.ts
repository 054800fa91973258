// The window and the pause estimates: a guest whose expected pause is close to the budget (or
// over it) migrates alone: it starts only once the window is empty, nothing starts while it flies,
// and nothing queued behind it overtakes it. The other guests share the window as before.
import { expect, test } from 'vitest';
import type { PauseEstimate } from '../dist/agent/control-types.js';
import { evacuate } from '../dist/pool/evacuation.js';
import type { EvacuationEvent } from '../dist/pool/pool-types.js';
import { FakePool } from './helpers/fake-pool.js';

function known(bestPauseMs: number, totalMs: number): PauseEstimate {
  return { state: 'known', bestPauseMs, totalMs, downtimeBudgetMs: 300, fitsBudget: bestPauseMs <= 255, dirtySource: 'declared', linkSource: 'measured' };
}

/** Six calm guests and two busy ones on A, two roomy targets; the calm ones of priority 1 go first. */
function mixedPool(): FakePool {
  const pool = new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 4096 }, { name: 'C', capacityMiB: 4096 }]);
  for (let i = 0; i < 3; i++) pool.addGuest('A', { name: `calm-hi${i}`, memoryMiB: 128, priority: 1, durationMs: 15, pauseEstimate: known(5, 1000 + i) });
  pool.addGuest('A', { name: 'busy', memoryMiB: 128, durationMs: 25, pauseEstimate: known(180, 6000) });
  pool.addGuest('A', { name: 'over', memoryMiB: 128, durationMs: 25, pauseEstimate: known(400, 9000) });
  for (let i = 0; i < 3; i++) pool.addGuest('A', { name: `calm${i}`, memoryMiB: 256, durationMs: 15, pauseEstimate: known(5, 1000 + i) });
  return pool;
}

/** Follows the evacuation's events: which guests fly together, and in what order they start. */
function watch(): { onEvent: (e: EvacuationEvent) => void; started: string[]; together: Array<string[]> } {
  const flying = new Set<string>();
  const started: string[] = [];
  const together: Array<string[]> = [];
  return {
    started,
    together,
    onEvent: (e) => {
      if (e.type === 'started') {
        flying.add(e.guestName);
        started.push(e.guestName);
        together.push([...flying].sort());
      } else if (e.type === 'finished') {
        flying.delete(e.guest.guestName);
      }
    },
  };
}

test('busy guests fly alone, within their priority and before the calm ones; the calm ones share the window', async () => {
  const pool = mixedPool();
  const w = watch();
  const report = await evacuate(pool, 'A', { parallel: 3, perTarget: 2, pollIntervalMs: 2, onEvent: w.onEvent });
  expect(report.hostEmpty).toBe(true);
  expect(report.guests.every((g) => g.outcome === 'completed')).toBe(true);
  expect(w.started.slice(0, 3).sort()).toEqual(['calm-hi0', 'calm-hi1', 'calm-hi2']);
  expect(w.started.slice(3, 5)).toEqual(['over', 'busy']);
  // Whenever a migration started, a busy guest in flight was alone in the window.
  for (const set of w.together) {
    if (set.includes('busy') || set.includes('over')) expect(set).toHaveLength(1);
  }
  // The calm guests still shared it: three at once, the window's width.
  expect(Math.max(...w.together.map((s) => s.length))).toBe(3);
  expect(report.plan.filter((m) => m.alone).map((m) => m.guestName)).toEqual(['over', 'busy']);
});

test('with ordering by pause off, the same busy guests share the window', async () => {
  const pool = mixedPool();
  const w = watch();
  const report = await evacuate(pool, 'A', { parallel: 3, perTarget: 2, pollIntervalMs: 2, orderByPause: false, onEvent: w.onEvent });
  expect(report.hostEmpty).toBe(true);
  expect(w.together.some((set) => set.length > 1 && (set.includes('busy') || set.includes('over')))).toBe(true);
});
