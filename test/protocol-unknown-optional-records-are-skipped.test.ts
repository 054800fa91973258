// Forward compatibility: a newer peer may send records this version does not know. Marked
// optional, they are skipped in any state that is not final; unmarked, they are malformed.
import { afterEach, expect, test } from 'vitest';
import { Packr } from 'msgpackr';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { receiverTransition, sourceTransition } from '../dist/protocol/receiver-state.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import type { Transport } from '../dist/transport/transport.js';

const packr = new Packr({ useRecords: false });
function rawFrame(header: Record<string, unknown>, payload = new Uint8Array(0)): Uint8Array {
  const body = packr.pack(header);
  const frame = new Uint8Array(4 + body.length + payload.length);
  new DataView(frame.buffer).setUint32(0, body.length, true);
  frame.set(body, 4);
  frame.set(payload, 4 + body.length);
  return frame;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

test('an unknown record marked optional decodes as "ignored", payload or not', () => {
  expect(decodeFrame(rawFrame({ type: 'telemetry', optional: true, cpu: 0.5 }))).toEqual({ type: 'ignored', recordType: 'telemetry' });
  expect(decodeFrame(rawFrame({ type: 'blob', optional: true }, new Uint8Array(100)))).toEqual({ type: 'ignored', recordType: 'blob' });
});

test('an unknown record not marked optional is malformed', () => {
  expect(codeOf(() => decodeFrame(rawFrame({ type: 'telemetry', cpu: 0.5 })))).toBe('ERR_MALFORMED_RECORD');
  expect(codeOf(() => decodeFrame(rawFrame({ type: 'telemetry', optional: false })))).toBe('ERR_MALFORMED_RECORD');
  expect(codeOf(() => decodeFrame(rawFrame({ type: 'telemetry', optional: 'yes' })))).toBe('ERR_MALFORMED_RECORD');
});

test('a known record marked optional is still the known record, checked as strictly', () => {
  expect(decodeFrame(rawFrame({ type: 'go', optional: true }))).toEqual({ type: 'go' });
  expect(codeOf(() => decodeFrame(rawFrame({ type: 'go', optional: true, extra: 1 })))).toBe('ERR_MALFORMED_RECORD');
});

test('the state machines skip "ignored" in every state that is not final, and only there', () => {
  for (const state of ['await-hello', 'receiving', 'state-received', 'complete-received', 'prepared'] as const) {
    expect(receiverTransition(state, 'ignored')).toBe(state);
  }
  for (const state of ['resumed', 'aborted', 'answered'] as const) {
    expect(codeOf(() => receiverTransition(state, 'ignored'))).toBe('ERR_UNEXPECTED_RECORD');
  }
  for (const state of ['hello-sent', 'streaming', 'complete-sent', 'go-sent'] as const) {
    expect(sourceTransition(state, 'ignored')).toBe(state);
  }
});

const MiB = 1024 * 1024;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** Sends `extra` just before the first frame of type `before`. */
function injecting(inner: Transport, before: string, extra: Uint8Array): Transport {
  let done = false;
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'send') {
        return async (frame: Uint8Array) => {
          if (!done && decodeFrame(frame).type === before) {
            done = true;
            await target.send(extra);
          }
          return target.send(frame);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

test.each([
  { kind: 'optional', optional: true, outcome: 'completed' },
  { kind: 'mandatory', optional: false, outcome: 'failed' },
])('a migration with an unknown $kind record in the middle of its stream ends $outcome', async ({ optional, outcome }) => {
  const guest = await SimulatedGuest.boot({ memoryBytes: 16 * MiB, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 5e6, hotSetBytes: MiB, seed: 9 });
  cleanups.push(() => guest.destroy());
  const [a, b] = createMemoryTransportPair();
  const extra = rawFrame({ type: 'future-hint', optional, note: 'from a newer source' });
  const incoming = acceptMigration(b, { backends: new Map([['sim', new SimTargetBackend()]]) });
  const report = await migrate(guest, injecting(a, 'round-end', extra));
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe(outcome);
  if (optional) {
    expect(result.outcome).toBe('resumed');
    expect(report.verified).toBe(true);
  } else {
    expect(result.error?.code).toBe('ERR_MALFORMED_RECORD');
    expect(report.guestRunningOn).toBe('source');
  }
});

test('encodeRecord never produces an "ignored" record', () => {
  expect(codeOf(() => encodeRecord({ type: 'ignored', recordType: 'x' } as never))).toMatch(/^ERR_/);
});
