// A Node timer holds at most 2^31-1 ms (about 24.8 days) and fires after 1 ms when given more.
// A timeout beyond that, Infinity included, is no deadline, as for migrate()'s own deadlines: an
// agent told to wait 35 days must not cut a migration after a millisecond. What is not a
// positive number of milliseconds is refused up front.
import { connect } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { encodeRecord } from '../dist/protocol/codec.js';
import { DeadlineTransport } from '../dist/transport/deadline-transport.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { driveToPrepared, next, StubBackend, stubHello } from './helpers/scripted-source.js';

/** About 35 days: more than a timer holds. */
const HUGE_MS = 3e9;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function collectWarnings(): string[] {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  cleanups.push(() => process.off('warning', onWarning));
  return warnings;
}

test.each([HUGE_MS, Number.POSITIVE_INFINITY])('a receive deadline of %d ms waits for the frame', async (ms) => {
  const [a, b] = createMemoryTransportPair();
  cleanups.push(() => (a.destroy(), b.destroy()));
  const paced = new DeadlineTransport(b, ms, () => 'the test frame');
  const received = paced.receive();
  const early = await Promise.race([received.then(() => 'settled', () => 'rejected'), sleep(50).then(() => 'waiting')]);
  expect(early).toBe('waiting');
  await a.send(Uint8Array.of(7));
  expect(await received).toEqual(Uint8Array.of(7));
});

test('an agent whose every timeout is beyond what a timer holds serves a migration that pauses between records', async () => {
  const warnings = collectWarnings();
  const backend = new StubBackend();
  const agent = await TargetAgent.start({
    backends: [backend],
    handshakeTimeoutMs: HUGE_MS,
    recordIdleTimeoutMs: HUGE_MS,
    goTimeoutMs: HUGE_MS,
    idleTimeoutMs: 10 * HUGE_MS,
  });
  cleanups.push(() => agent.close());

  // The upgrade deadline: a TCP connection that has not upgraded yet is still open.
  const raw = connect(agent.port, '127.0.0.1');
  cleanups.push(() => raw.destroy());
  let rawClosed = false;
  raw.on('close', () => (rawClosed = true));
  raw.on('error', () => undefined);

  const source = await connectToAgent(agent.url, { connectTimeoutMs: HUGE_MS, idleTimeoutMs: 10 * HUGE_MS });
  cleanups.push(() => source.destroy());
  await source.send(encodeRecord(stubHello('patient')));
  expect((await next(source)).type).toBe('ready');
  await sleep(50);
  await driveToPrepared(source);
  await sleep(50);
  await source.send(encodeRecord({ type: 'go' }));
  expect((await next(source)).type).toBe('resumed');
  expect(agent.migrations.get('patient')?.state).toBe('running');

  expect(rawClosed).toBe(false);
  expect(warnings).not.toContain('TimeoutOverflowWarning');
});

test.each([
  ['goTimeoutMs', Number.NaN],
  ['goTimeoutMs', -1],
  ['goTimeoutMs', 0],
  ['goTimeoutMs', '500'],
  ['recordIdleTimeoutMs', Number.NaN],
  ['handshakeTimeoutMs', -5],
])('an agent refuses %s = %s with ERR_INVALID_ARGUMENT', async (name, value) => {
  const err = await TargetAgent.start({ [name]: value } as never).then(
    (agent) => (cleanups.push(() => agent.close()), agent),
    (e: unknown) => e,
  );
  expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  expect((err as Error).message).toContain(name);
});
