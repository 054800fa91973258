// The client's deadlines are one each, fixed when the wait starts: connectTimeoutMs bounds
// connecting and authenticating together, answerTimeoutMs the wait for a query's answer. An agent
// that keeps sending records which change nothing (unknown optional ones) does not extend them.
import { afterEach, expect, test, vi } from 'vitest';
import { authenticateToAgent, connectToAgent, queryAgent } from '../dist/agent/agent-client.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { listenWebSocket } from '../dist/transport/ws-listener.js';
import type { WebSocketTransport } from '../dist/transport/ws-transport.js';
import { unknownOptionalFrame } from './helpers/scripted-source.js';

const DEADLINE_MS = 300;
const CHATTER_INTERVAL_MS = 50;
/**
 * How long the fake agent chatters: ten deadlines. A client that restarted its wait with each
 * record would give up only once the chatter stopped; one deadline ends long before.
 */
const CHATTER_MS = 10 * DEADLINE_MS;

/** Records the client read and skipped as unknown optional ones, over every connection it opened. */
const seen = vi.hoisted(() => ({ skipped: 0 }));

// The client's own connections, counting the records they deliver that change nothing: the
// chatter each deadline has to outlast.
vi.mock('../dist/transport/ws-connect.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../dist/transport/ws-connect.js')>();
  const { decodeFrame: decode } = await import('../dist/protocol/codec.js');
  return {
    ...original,
    connectWebSocket: async (...args: Parameters<typeof original.connectWebSocket>) => {
      const transport = await original.connectWebSocket(...args);
      const receive = transport.receive.bind(transport);
      transport.receive = async () => {
        const frame = await receive();
        if (frame !== undefined && decode(frame).type === 'ignored') seen.skipped++;
        return frame;
      };
      return transport;
    },
  };
});

/** Whether the fake agent's chatter is still going. */
const chatterState = { going: false };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
  seen.skipped = 0;
  chatterState.going = false;
});


/** Sends unknown optional records to `transport` now and every CHATTER_INTERVAL_MS, for CHATTER_MS. */
function chatter(transport: WebSocketTransport): void {
  const send = (): void => void transport.send(unknownOptionalFrame()).catch(() => undefined);
  chatterState.going = true;
  send();
  const interval = setInterval(send, CHATTER_INTERVAL_MS);
  const stop = setTimeout(() => {
    clearInterval(interval);
    chatterState.going = false;
  }, CHATTER_MS);
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

/**
 * How `work` fails, and whether the chatter was still going when it did: a deadline that held
 * ends the wait while records that change nothing keep arriving.
 */
async function failure<T>(work: Promise<T>): Promise<{ error: unknown; duringChatter: boolean }> {
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, duringChatter: chatterState.going };
}

test('authentication gives up once its one deadline passes, however many optional records arrive', async () => {
  const listener = await chattyAgent(false);
  const transport = await connectWebSocket(listener.url);
  const { error, duringChatter } = await failure(authenticateToAgent(transport, { timeoutMs: DEADLINE_MS }));
  expect(error).toMatchObject({ code: 'ERR_TIMEOUT' });
  expect(seen.skipped).toBeGreaterThanOrEqual(2);
  expect(duringChatter).toBe(true);
});

test('connectToAgent: connectTimeoutMs bounds connecting and authenticating together', async () => {
  const listener = await chattyAgent(false);
  const { error, duringChatter } = await failure(connectToAgent(listener.url, { connectTimeoutMs: DEADLINE_MS }));
  expect(error).toMatchObject({ code: 'ERR_TIMEOUT' });
  expect(seen.skipped).toBeGreaterThanOrEqual(2);
  expect(duringChatter).toBe(true);
});

test('queryAgent gives up answerTimeoutMs after asking, however many optional records arrive', async () => {
  const listener = await chattyAgent(true);
  const { error, duringChatter } = await failure(queryAgent(listener.url, 'm', { answerTimeoutMs: DEADLINE_MS }));
  expect(error).toMatchObject({ code: 'ERR_TIMEOUT' });
  expect((error as Error).message).toMatch(/did not answer the query about m within 300 ms/);
  expect(seen.skipped).toBeGreaterThanOrEqual(2);
  expect(duringChatter).toBe(true);
});
