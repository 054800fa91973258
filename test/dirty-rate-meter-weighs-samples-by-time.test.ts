import { describe, expect, it } from 'vitest';
import { DirtyRateMeter } from '../dist/dirtylog/dirty-rate.js';

describe('DirtyRateMeter', () => {
  it('reports the rate of the first interval as is', () => {
    const meter = new DirtyRateMeter({ startMs: 1000 });
    meter.sample(500, 1500);
    expect(meter.pagesPerSecond).toBe(1000);
    expect(meter.lastPagesPerSecond).toBe(1000);
    expect(meter.bytesPerSecond(4096)).toBe(4096 * 1000);
    expect(meter.intervals).toBe(1);
  });

  it('without a start time, uses the first sample as the start', () => {
    const meter = new DirtyRateMeter();
    meter.sample(1_000_000, 0);
    expect(meter.pagesPerSecond).toBe(0);
    expect(meter.totalPages).toBe(1_000_000);
    meter.sample(100, 100);
    expect(meter.pagesPerSecond).toBe(1000);
  });

  it('moves half way to a new rate after one half-life', () => {
    const meter = new DirtyRateMeter({ startMs: 0, halfLifeMs: 1000 });
    meter.sample(1000, 1000); // 1000 pages/s
    meter.sample(3000, 2000); // 3000 pages/s over one half-life
    expect(meter.lastPagesPerSecond).toBe(3000);
    expect(meter.pagesPerSecond).toBeCloseTo(2000, 6);
  });

  it('gives a short interval less weight than a long one', () => {
    const burst = new DirtyRateMeter({ startMs: 0 });
    burst.sample(1000, 1000); // 1000 pages/s for a second
    burst.sample(100, 1010); // 10000 pages/s for 10 ms
    expect(burst.lastPagesPerSecond).toBe(10000);
    expect(burst.pagesPerSecond).toBeLessThan(1100);
    const sustained = new DirtyRateMeter({ startMs: 0 });
    sustained.sample(1000, 1000);
    sustained.sample(50000, 6000); // 10000 pages/s for five half-lives
    expect(sustained.pagesPerSecond).toBeGreaterThan(9500);
  });

  it('adds up samples at the same instant and ignores a clock going back', () => {
    const meter = new DirtyRateMeter({ startMs: 0 });
    meter.sample(100, 0);
    meter.sample(100, -5);
    meter.sample(300, 500);
    expect(meter.pagesPerSecond).toBe(1000);
    expect(meter.totalPages).toBe(500);
  });

  it('rejects nonsense', () => {
    expect(() => new DirtyRateMeter({ halfLifeMs: 0 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    const meter = new DirtyRateMeter();
    expect(() => meter.sample(-1, 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => meter.sample(1, Number.NaN)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
