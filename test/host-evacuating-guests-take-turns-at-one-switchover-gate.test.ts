// A host agent moving several guests out at once gives all its outgoing migrations one switchover
// gate: each guest's pause is taken at that gate, one after another, and every guest arrives. Three
// hosts in this process, on loopback.
import { afterEach, expect, test } from 'vitest';
import { HostAgent } from '../dist/agent/host-agent.js';
import { SwitchoverGate } from '../dist/precopy/switchover-gate.js';

const MiB = 2 ** 20;
const hosts: HostAgent[] = [];
const restore: Array<() => void> = [];
afterEach(async () => {
  while (restore.length) restore.pop()!();
  await Promise.all(hosts.splice(0).map((h) => h.close()));
});

test('four guests leaving one host at once each pause at the host\'s one gate, in turn, and all arrive', async () => {
  // Who took the pause at which gate, as it happened.
  const holds: Array<{ gate: SwitchoverGate; id: string }> = [];
  const proto = SwitchoverGate.prototype;
  const tryHold = proto.tryHold;
  proto.tryHold = function (this: SwitchoverGate, id: string): boolean {
    const was = this.holder;
    const held = tryHold.call(this, id);
    if (held && was !== id) holds.push({ gate: this, id });
    return held;
  };
  restore.push(() => (proto.tryHold = tryHold));

  const a = await HostAgent.start({ name: 'A', capacityBytes: 128 * MiB });
  const b = await HostAgent.start({ name: 'B', capacityBytes: 64 * MiB });
  const c = await HostAgent.start({ name: 'C', capacityBytes: 64 * MiB });
  hosts.push(a, b, c);
  const guests = [];
  for (let i = 0; i < 4; i++) {
    guests.push(await a.startGuest({ name: `g${i}`, memoryBytes: 16 * MiB, config: { workload: 'hotset', dirtyRateBytesPerSec: 4_000_000, hotSetBytes: 2 * MiB, seed: i + 1 } }));
  }
  const begun = guests.map((g, i) => a.migrateGuest(g.id, { to: (i % 2 ? c : b).url }));
  const ended = await Promise.all(begun.map((m) => a.settled(m.migrationId)));

  for (const m of ended) expect(m).toMatchObject({ state: 'completed', guestRunningOn: 'target' });
  expect(a.registry.size).toBe(0);
  // Every migration took its pause once, all at the same gate.
  const ids = begun.map((m) => m.migrationId);
  expect(holds.map((h) => h.id).sort()).toEqual([...ids].sort());
  expect(new Set(holds.map((h) => h.gate)).size).toBe(1);
  expect(holds[0]!.gate.holder).toBeUndefined();
});
