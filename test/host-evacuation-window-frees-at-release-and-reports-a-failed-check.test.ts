// A completed migration frees its place in the evacuation window as soon as the guest runs on its
// target: the source's check of the copy it paused goes on apart. The check of the first guest is
// held here until the second guest's migration has started, which a window of one allows only if
// the first slot was freed before the check ended. That held check then fails (its memory reads
// back changed), and the failure still reaches the control API, `waitForMigration` (which
// `livemig vm migrate` turns into exit status 4) and the evacuation's per-guest table.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { ControlClient } from '../dist/agent/control-client.js';
import type { StartGuestRequest } from '../dist/agent/control-types.js';
import { launchSimGuest, type GuestLauncher } from '../dist/agent/guest-launcher.js';
import { HostAgent } from '../dist/agent/host-agent.js';
import { describeResult } from '../dist/cli/evacuate-command.js';
import { migrateExitStatus } from '../dist/cli/vm-command.js';
import type { SourceDomain } from '../dist/domain/backend.js';
import { ControlPoolHosts } from '../dist/pool/control-pool-hosts.js';
import { evacuate } from '../dist/pool/evacuation.js';
import type { PoolMember, PoolStore } from '../dist/pool/pool-store.js';
import type { EvacuationEvent } from '../dist/pool/pool-types.js';
import { watched } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
/** Long enough for a loaded machine; a slot that waited for the held check would never free. */
const WAIT_MS = 60_000;

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

/** A gate a test opens by hand. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/**
 * Simulated guests whose memory the engine reads only through `readPages`, so the check after the
 * switchover reads it here. For the guest named `held`, that check waits for `hold` and then
 * reads every page back changed, as memory damaged after the pause would.
 */
function heldCheckLauncher(held: string, hold: Promise<void>, checkStarted: () => void): GuestLauncher {
  return async (request: StartGuestRequest) => {
    const launched = await launchSimGuest(request);
    const real = launched.domain;
    let released = false;
    const { domain } = watched<SourceDomain>(real, {
      memory: () => ({ kind: 'none' }),
      // The dirty log ends when the engine releases the guest: every read after it is the check's.
      disableDirtyLog: () => {
        released = true;
        return real.disableDirtyLog();
      },
      readPages: async (pfns: Uint32Array, dst: Uint8Array) => {
        if (!released || request.name !== held) return real.readPages(pfns, dst);
        checkStarted();
        await hold;
        await real.readPages(pfns, dst);
        dst[0] = dst[0]! ^ 0xff;
      },
    } as never);
    return { ...launched, domain };
  };
}

async function twoHosts(launcher: GuestLauncher): Promise<{ a: HostAgent; b: HostAgent; store: PoolStore }> {
  const a = await HostAgent.start({ name: 'A', capacityBytes: 128 * MiB, launchers: new Map([['sim', launcher]]) });
  cleanups.push(() => a.close());
  const b = await HostAgent.start({ name: 'B', capacityBytes: 128 * MiB });
  cleanups.push(() => b.close());
  const members: PoolMember[] = [
    { name: 'A', url: a.url },
    { name: 'B', url: b.url },
  ];
  const store: PoolStore = { list: async () => members, add: async () => undefined, remove: async () => undefined };
  return { a, b, store };
}

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${WAIT_MS} ms`)), WAIT_MS)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test('a window of one starts the next guest while the first one\'s check is held; the failed check reaches the table', { timeout: 3 * WAIT_MS }, async () => {
  const hold = gate();
  const checking = gate();
  const { a, b, store } = await twoHosts(heldCheckLauncher('first', hold.opened, checking.open));
  const first = await a.startGuest({ name: 'first', memoryBytes: 16 * MiB, priority: 1, config: { workload: 'uniform', dirtyRateBytesPerSec: 2e6 } });
  await a.startGuest({ name: 'second', memoryBytes: 16 * MiB, config: { workload: 'uniform', dirtyRateBytesPerSec: 2e6 } });
  const dir = await mkdtemp(join(tmpdir(), 'livemig-evac-check-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));

  const secondStarted = gate();
  const events: EvacuationEvent[] = [];
  const report = evacuate(new ControlPoolHosts(store), 'A', {
    parallel: 1,
    perTarget: 1,
    pollIntervalMs: 20,
    ledgerPath: join(dir, 'ledger.json'),
    onEvent: (e) => {
      events.push(e);
      if (e.type === 'started' && e.guestName === 'second') secondStarted.open();
    },
  });
  report.catch(() => undefined);

  await within(checking.opened, "the first guest's check");
  await within(secondStarted.opened, 'the start of the second migration while the first check is held');
  // The first migration is completed, the guest on B, while its source still checks the copy.
  const firstId = events.find((e) => e.type === 'started' && e.guestName === 'first')!;
  const migrationId = (firstId as Extract<EvacuationEvent, { type: 'started' }>).migrationId;
  const during = a.migration(migrationId);
  expect(during).toMatchObject({ state: 'completed', guestRunningOn: 'target', verifying: true });
  expect(during.verified).toBeUndefined();
  expect(during.totalMs).toBeGreaterThan(0);
  expect(b.guests().map((g) => g.id)).toContain(first.id);

  hold.open();
  const done = await within(report, 'the end of the evacuation');
  expect(done.hostEmpty).toBe(true);
  const rows = new Map(done.guests.map((g) => [g.guestName, g]));
  expect(rows.get('first')).toMatchObject({ outcome: 'completed', runsOn: 'B', verified: false, error: { code: 'ERR_DIGEST_MISMATCH' } });
  expect(rows.get('second')).toMatchObject({ outcome: 'completed', runsOn: 'B', verified: true });
  expect(rows.get('second')!.error).toBeUndefined();
  const table = describeResult(done);
  expect(table).toMatch(/first\s+completed\s+B .*ERR_DIGEST_MISMATCH/);
  expect(table).toMatch(/first: ERR_DIGEST_MISMATCH/);

  const after = await new ControlClient(a.url).migration(migrationId);
  expect(after).toMatchObject({ state: 'completed', verifying: false, verified: false });
  expect(after.verifyMs).toBeGreaterThanOrEqual(0);
});

test('waitForMigration answers a completed migration only once its check has ended, and a failed check exits 4', { timeout: 3 * WAIT_MS }, async () => {
  const hold = gate();
  const checking = gate();
  const { a, b } = await twoHosts(heldCheckLauncher('watched', hold.opened, checking.open));
  const guest = await a.startGuest({ name: 'watched', memoryBytes: 16 * MiB, config: { workload: 'uniform', dirtyRateBytesPerSec: 2e6 } });
  const begun = a.migrateGuest(guest.id, { to: b.url });
  let answered = false;
  const waited = new ControlClient(a.url).waitForMigration(begun.migrationId, { intervalMs: 10 }).finally(() => (answered = true));
  await within(checking.opened, 'the check');
  // The outcome is out already; the waiter keeps asking while the check is held.
  await within(a.ended(begun.migrationId), 'the outcome');
  expect(a.migration(begun.migrationId)).toMatchObject({ state: 'completed', verifying: true });
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(answered).toBe(false);
  hold.open();
  const info = await within(waited, 'the answer');
  expect(info).toMatchObject({ state: 'completed', verifying: false, verified: false });
  expect(migrateExitStatus(info)).toBe(4);
  expect(migrateExitStatus({ ...info, verified: true })).toBe(0);
});
