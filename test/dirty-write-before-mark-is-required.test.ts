import { describe, expect, it } from 'vitest';
import { DirtyBitmap } from '../dist/dirtylog/dirty-bitmap.js';
import {
  cloneVcpuState,
  fillImage,
  initialVcpuState,
  runSteps,
  vcpuPartition,
  workloadParams,
} from '../dist/domain/sim/index.js';

// The interleavings are driven by hand in one thread, so the outcome never depends on timing.

const config = {
  memoryBytes: 64 * 4096,
  vcpus: 1,
  workload: 'uniform' as const,
  dirtyRateBytesPerSec: 0,
  hotSetBytes: 0,
  seed: 42,
};
const pageCount = config.memoryBytes / 4096;
const partition = vcpuPartition(pageCount, 1, 0);
const params = workloadParams(config);

function setup() {
  const memory = new Uint8Array(config.memoryBytes);
  fillImage(memory, config.seed);
  const mem32 = new Int32Array(memory.buffer);
  const bitmap = DirtyBitmap.create(pageCount);
  // The state after round 0: the target holds all memory and the log is clean.
  const mirror = memory.slice();
  /** One engine round: read and clear the log, copy the pages it names. */
  const engineRound = (): number[] => {
    const pages = Array.from(bitmap.readAndClear());
    for (const pfn of pages) mirror.set(memory.subarray(pfn * 4096, pfn * 4096 + 4096), pfn * 4096);
    return pages;
  };
  const state = initialVcpuState(config.seed, 0);
  return { memory, mem32, bitmap, mirror, engineRound, state };
}

describe('the order of a guest write and its dirty mark', () => {
  it('write-then-mark: an engine round between the two loses nothing', () => {
    const { memory, mem32, bitmap, mirror, engineRound, state } = setup();
    for (let step = 0; step < 50; step++) {
      // runSteps calls markDirty after the write: run a whole engine round right there, then mark.
      runSteps(mem32, state, partition, params, 1, (pfn) => {
        engineRound();
        bitmap.mark(pfn);
      });
    }
    expect(Buffer.from(mirror).equals(Buffer.from(memory))).toBe(false); // the last writes are still owed
    engineRound();
    expect(Buffer.from(mirror).equals(Buffer.from(memory))).toBe(true);
  });

  it('mark-then-write: an engine round between the two loses the update for good', () => {
    const { memory, mem32, bitmap, mirror, engineRound, state } = setup();
    // Which page will the next step write? The step is a pure function of state and memory,
    // so running it on copies tells us.
    let target = -1;
    runSteps(new Int32Array(memory.slice().buffer), cloneVcpuState(state), partition, params, 1, (pfn) => {
      target = pfn;
    });
    expect(target).toBeGreaterThanOrEqual(0);

    bitmap.mark(target); // mark first...
    expect(engineRound()).toEqual([target]); // ...the engine clears the bit and copies the old page...
    runSteps(mem32, state, partition, params, 1, () => {}); // ...then the write lands, unmarked.

    expect(engineRound()).toEqual([]); // nothing tells the engine to send the page again
    const at = target * 4096;
    expect(Buffer.from(mirror.subarray(at, at + 4096)).equals(Buffer.from(memory.subarray(at, at + 4096)))).toBe(false);
  });

  it('write-then-mark: the same single-step scenario keeps the page', () => {
    const { memory, mem32, bitmap, mirror, engineRound, state } = setup();
    let target = -1;
    runSteps(mem32, state, partition, params, 1, (pfn) => {
      target = pfn;
      expect(engineRound()).toEqual([]); // the round between write and mark finds nothing...
      bitmap.mark(pfn);
    });
    expect(engineRound()).toEqual([target]); // ...but the next one does
    expect(Buffer.from(mirror).equals(Buffer.from(memory))).toBe(true);
  });
});
