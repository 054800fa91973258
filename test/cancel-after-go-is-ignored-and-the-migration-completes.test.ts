// A cancel is honoured until "go" is sent; after that it is too late and is ignored
// (protocol.md §11): the guest runs on the target and the source retires its copy.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import type { Transport } from '../dist/transport/transport.js';
import { expectGuestMatchesOracle } from './helpers/target-memory.js';
import { watched } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 2 * MiB, seed: 4 };
const backends = new Map([['sim', new SimTargetBackend()]]);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** `inner`, calling `after` once the "go" frame has been handed to it. */
function onGoSent(inner: Transport, after: () => void): Transport {
  return new Proxy(inner, {
    get(target, key) {
      if (key === 'send') {
        return async (frame: Uint8Array) => {
          await target.send(frame);
          if (decodeFrame(frame).type === 'go') after();
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

test('a cancel right after "go" went out changes nothing: the migration completes on the target', async () => {
  const guest = await SimulatedGuest.boot(config, 'cancelled-too-late');
  cleanups.push(() => guest.destroy());
  // The steps the paused copy had run when the source retired it.
  let stepsAtDestroy: number[] | undefined;
  const source = watched(guest, {
    destroy: function (this: typeof guest) {
      stepsAtDestroy = this.vcpuStates().map((s) => s.steps);
      return this.destroy();
    } as never,
  });
  const cancel = new AbortController();
  const [a, b] = createMemoryTransportPair();
  let resumedThere = false;
  const incoming = acceptMigration(b, { backends, collectGarbage: null, onResumed: () => (resumedThere = true) });
  const report = await migrate(source.domain, onGoSent(a, () => cancel.abort(new Error('operator changed their mind'))), {
    signal: cancel.signal,
    collectGarbage: null,
  });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());

  expect(cancel.signal.aborted).toBe(true);
  expect(report.outcome).toBe('completed');
  expect(report.guestRunningOn).toBe('target');
  expect(report.error).toBeUndefined();
  expect(report.downtimeMs).toBeGreaterThan(0);
  expect(report.verified).toBe(true);
  expect(resumedThere).toBe(true);
  expect(result.outcome).toBe('resumed');
  // The source copy was never resumed, and was retired.
  expect(source.calls.resume).toBeUndefined();
  expect(source.calls.destroy).toBe(1);
  // The target took over exactly the state the source paused it in, and its memory, read
  // itself, is what replay gives for the steps it has run since.
  expect(result.digest).toBe(oracleDigest(config, stepsAtDestroy!).digest);
  await expectGuestMatchesOracle(result.domain, config, stepsAtDestroy);
});
