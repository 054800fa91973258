// The downtime the source reports follows protocol.md §12: pause to "go" on the source's clock,
// plus the target's own resume time, plus half of the go/resumed round trip net of that time;
// and the time from pause to "resumed" is its upper bound.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import type { Transport } from '../dist/transport/transport.js';
import { WatchedSimBackend } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 2 * MiB, seed: 12 };
/** How long the target's resume takes. */
const RESUME_MS = 120;
/** How long the target's "resumed" is held on the link: a slow way back. */
const RETURN_DELAY_MS = 60;
/** Each part of the report is rounded to a microsecond. */
const ROUNDING_MS = 0.01;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** `inner`, except that a "resumed" record waits `ms` before it goes out. */
function slowResumed(inner: Transport, ms: number): Transport {
  return new Proxy(inner, {
    get(target, key) {
      if (key === 'send') {
        return async (frame: Uint8Array) => {
          if (decodeFrame(frame).type === 'resumed') await sleep(ms);
          return target.send(frame);
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

test('the reported downtime includes the target resume time and half the go round trip, within its upper bound', async () => {
  const guest = await SimulatedGuest.boot(config, 'downtime-parts');
  cleanups.push(() => guest.destroy());
  const backend = new WatchedSimBackend({
    resume: async function (this: InstanceType<typeof SimulatedGuest>) {
      await sleep(RESUME_MS);
      await this.resume();
    } as never,
  });
  cleanups.push(() => backend.destroyAll());
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(slowResumed(b, RETURN_DELAY_MS), { backends: new Map([['sim', backend]]), collectGarbage: null });
  const report = await migrate(guest, a, { collectGarbage: null });
  const result = await incoming;
  expect(report.outcome).toBe('completed');
  expect(result.outcome).toBe('resumed');

  const s = report.switchover!;
  const downtime = report.downtimeMs!;
  const upper = report.downtimeUpperBoundMs!;
  // The target measured its resume, and the slow way back shows in the round trip, not in it.
  expect(s.targetResumeMs).toBeGreaterThanOrEqual(RESUME_MS - 1);
  expect(s.goRoundTripMs).toBeGreaterThanOrEqual(RETURN_DELAY_MS - 1);
  // §12, term by term: pause to "go" is the pause, the last round and the wait for "prepared".
  const pauseToGo = s.pauseMs + s.sendMs + s.prepareMs;
  expect(Math.abs(downtime - (pauseToGo + s.targetResumeMs + s.goRoundTripMs / 2))).toBeLessThanOrEqual(ROUNDING_MS);
  expect(downtime).toBeGreaterThanOrEqual(s.targetResumeMs);
  expect(downtime).toBeLessThanOrEqual(upper);
  // The upper bound counts the whole round trip, the estimate half of it.
  expect(Math.abs(upper - downtime - s.goRoundTripMs / 2)).toBeLessThanOrEqual(ROUNDING_MS);
});
