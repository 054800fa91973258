// The client's deadlines are one each, fixed when the wait starts: connectTimeoutMs bounds
// connecting and authenticating together, answerTimeoutMs the wait for a query's answer. An agent
// that keeps sending records which change nothing (unknown optional ones) does not extend them.
import { afterEach, expect, test } from 'vitest';
import { authenticateToAgent, connectToAgent, queryAgent } from '../dist/agent/agent-client.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { listenWebSocket } from '../dist/transport/ws-listener.js';
import type { WebSocketTransport } from '../dist/transport/ws-transport.js';
import { unknownOptionalFrame } from './helpers/scripted-source.js';

const DEADLINE_MS = 300;
const CHATTER_INTERVAL_MS = 50;
/** How long the fake agent chatters, were the client to listen: ten deadlines. */
const CHATTER_MS = 10 * DEADLINE_MS;
/**
 * A client that restarted its wait with each record would wait out the chatter (over 3 s); one
 * deadline ends near 300 ms. Half the chatter tells them apart with room for a loaded machine.
 */
const SETTLED_BY_MS = CHATTER_MS / 2;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** Sends unknown optional records to `transport` every CHATTER_INTERVAL_MS, for CHATTER_MS. */
function chatter(transport: WebSocketTransport): void {
  const interval = setInterval(() => void transport.send(unknownOptionalFrame()).catch(() => undefined), CHATTER_INTERVAL_MS);
  const stop = setTimeout(() => clearInterval(interval), CHATTER_MS);
  cleanups.push(() => (clearInterval(interval), clearTimeout(stop)));
}

/**
 * A fake agent without a key. With `answersAuth` it accepts `auth-hello` with `auth-ok` and then
 * chatters instead of answering the query; otherwise it chatters from the start.
 */
async function chattyAgent(answersAuth: boolean) {
  const listener = await listenWebSocket({}, (transport) => {
    cleanups.push(() => transport.destroy());
    void (async () => {
      if (answersAuth) {
        const first = await transport.receive();
        if (first === undefined || decodeFrame(first).type !== 'auth-hello') return;
        await transport.send(encodeRecord({ type: 'auth-ok' }));
      }
      chatter(transport);
    })().catch(() => undefined);
  });
  cleanups.push(() => listener.close());
  return listener;
}

async function timed<T>(work: Promise<T>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, ms: performance.now() - started };
}

test('authentication gives up once its one deadline passes, however many optional records arrive', async () => {
  const listener = await chattyAgent(false);
  const transport = await connectWebSocket(listener.url);
  const { error, ms } = await timed(authenticateToAgent(transport, { timeoutMs: DEADLINE_MS }));
  expect(error).toMatchObject({ code: 'ERR_TIMEOUT' });
  expect(ms).toBeLessThan(SETTLED_BY_MS);
});

test('connectToAgent: connectTimeoutMs bounds connecting and authenticating together', async () => {
  const listener = await chattyAgent(false);
  const { error, ms } = await timed(connectToAgent(listener.url, { connectTimeoutMs: DEADLINE_MS }));
  expect(error).toMatchObject({ code: 'ERR_TIMEOUT' });
  expect(ms).toBeLessThan(SETTLED_BY_MS);
});

test('queryAgent gives up answerTimeoutMs after asking, however many optional records arrive', async () => {
  const listener = await chattyAgent(true);
  const { error, ms } = await timed(queryAgent(listener.url, 'm', { answerTimeoutMs: DEADLINE_MS }));
  expect(error).toMatchObject({ code: 'ERR_TIMEOUT' });
  expect((error as Error).message).toMatch(/did not answer the query about m within 300 ms/);
  expect(ms).toBeLessThan(SETTLED_BY_MS);
});
