// A backend whose dirty log lives in another process (as QEMU's write-protect log does) answers
// the log hooks with promises. The engine waits for the log to be enabled before it reads any
// memory, and migrates such a guest as it does one whose log answers at once: here a simulated
// guest whose log answers only after a few milliseconds, checked against its replay oracle.
import { expect, test } from 'vitest';
import type { SourceDomain } from '../dist/domain/backend.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { agentProcessForFile, sleep } from './helpers/agent-process.js';
import { expectTargetDigestAtPause } from './helpers/target-memory.js';

const MiB = 1024 * 1024;
const LOG_DELAY_MS = 5;

/** What the engine did with the log: reads of memory before it was enabled, and how each hook answered. */
interface LogWatch {
  readsBeforeEnabled: number;
  enabled: boolean;
  promises: Record<string, number>;
}

/**
 * `guest` with a log that answers late: enabling takes effect only when its promise settles; a
 * read takes the log at once (read-and-clear is atomic at the call) and hands it over later; a
 * peek counts at once and answers later.
 */
function slowLog(guest: SimulatedGuest): { domain: SourceDomain; watch: LogWatch } {
  const watch: LogWatch = { readsBeforeEnabled: 0, enabled: false, promises: {} };
  const later = <T>(hook: string, value: () => T): Promise<T> => {
    watch.promises[hook] = (watch.promises[hook] ?? 0) + 1;
    return sleep(LOG_DELAY_MS).then(value);
  };
  const domain = new Proxy(guest, {
    get(target, key) {
      if (key === 'enableDirtyLog') {
        return () =>
          later('enableDirtyLog', () => {
            target.enableDirtyLog();
            watch.enabled = true;
          });
      }
      if (key === 'readDirtyLog') {
        return () => {
          const pages = target.readDirtyLog();
          return later('readDirtyLog', () => pages);
        };
      }
      if (key === 'peekDirtyCount') {
        return () => {
          const count = target.peekDirtyCount();
          return later('peekDirtyCount', () => count);
        };
      }
      if (key === 'readPages') {
        return (pfns: Uint32Array, dst: Uint8Array) => {
          if (!watch.enabled) watch.readsBeforeEnabled++;
          return target.readPages(pfns, dst);
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as SourceDomain;
  return { domain, watch };
}

const agent = agentProcessForFile();

test('a guest dirtying 40 MB/s whose log answers with promises arrives true to its oracle', async () => {
  const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 2, workload: 'uniform', dirtyRateBytesPerSec: 40e6, hotSetBytes: 8 * MiB, seed: 23 };
  const guest = await SimulatedGuest.boot(config, 'e2e-async-log');
  try {
    await sleep(100);
    const { domain, watch } = slowLog(guest);
    const report = await migrate(domain, await connectWebSocket(agent.url), {
      codec: 'none',
      destroySource: false,
      targetName: agent.url,
      policy: (s) => (s.round >= 3 ? 'stop-and-copy' : 'continue'),
    });

    expect(report.error).toBeUndefined();
    expect(report.outcome).toBe('completed');
    expect(report.verified).toBe(true);
    expect(watch.readsBeforeEnabled).toBe(0);
    expect(watch.promises.enableDirtyLog).toBe(1);
    // One read per round after the first, and one in the pause.
    expect(watch.promises.readDirtyLog).toBe(4);
    for (const round of report.rounds.slice(1)) expect(round.pages, `round ${round.round}`).toBeGreaterThan(0);
    // The pause paid a read of the log, which the report counts as finding the dirty pages.
    expect(report.switchover!.findDirtyMs).toBeGreaterThan(0);

    expectTargetDigestAtPause(report, guest, config);
  } finally {
    await guest.destroy();
  }
}, 60_000);
