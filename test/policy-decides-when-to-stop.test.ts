import { expect, test } from 'vitest';
import { defaultPolicy, expectedDowntimeMs } from '../dist/precopy/policy.js';
import { mergeSorted } from '../dist/precopy/migration.js';

const base = {
  round: 1,
  elapsedMs: 1000,
  dirtyPages: 0,
  dirtyBytes: 0,
  bandwidthBytesPerSec: 1e9,
  dirtyRateBytesPerSec: 0,
  expectedDowntimeMs: 0,
  bytesSent: 1e9,
  memoryBytes: 1e9,
};

test('stops once what is dirty fits the budget', () => {
  const policy = defaultPolicy({ downtimeBudgetMs: 100 });
  expect(policy({ ...base, expectedDowntimeMs: 99 })).toBe('stop-and-copy');
  expect(policy({ ...base, expectedDowntimeMs: 100 })).toBe('stop-and-copy');
  expect(policy({ ...base, expectedDowntimeMs: 101 })).toBe('continue');
});

test('stops after the last allowed round even if it does not fit', () => {
  const policy = defaultPolicy({ downtimeBudgetMs: 10, maxRounds: 5 });
  expect(policy({ ...base, round: 4, expectedDowntimeMs: 1e6 })).toBe('continue');
  expect(policy({ ...base, round: 5, expectedDowntimeMs: 1e6 })).toBe('stop-and-copy');
});

test('expected downtime is transfer time plus overhead', () => {
  expect(expectedDowntimeMs(100e6, 1e9, 5)).toBeCloseTo(105);
  expect(expectedDowntimeMs(0, 0, 5)).toBe(5);
  expect(expectedDowntimeMs(1, 0, 5)).toBe(Number.POSITIVE_INFINITY);
});

test('page lists merge ascending without duplicates', () => {
  expect([...mergeSorted(Uint32Array.of(1, 3, 5), Uint32Array.of(2, 3, 9))]).toEqual([1, 2, 3, 5, 9]);
  expect([...mergeSorted(Uint32Array.of(), Uint32Array.of(4))]).toEqual([4]);
  expect([...mergeSorted(Uint32Array.of(4), Uint32Array.of())]).toEqual([4]);
});
