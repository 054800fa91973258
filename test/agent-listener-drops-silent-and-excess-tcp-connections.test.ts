// Below the WebSocket: a target agent's listener holds raw TCP connections to two bounds. Beyond
// twice `maxConnections` TCP connections it answers new ones 503 at once and closes them, and one
// that has not
// finished its HTTP upgrade within the handshake deadline (saying nothing, or half a request) is
// dropped. Neither needs the peer to speak WebSocket.
import { connect, type Socket } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { TargetAgent, type TargetAgentOptions } from '../dist/agent/target-agent.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startAgent(options: TargetAgentOptions): Promise<TargetAgent> {
  const agent = await TargetAgent.start(options);
  cleanups.push(() => agent.close());
  return agent;
}

interface RawClient {
  socket: Socket;
  /** Settles once the socket closed, whoever closed it. */
  closed: Promise<void>;
  isClosed(): boolean;
  /** Everything the agent wrote to it. */
  received(): string;
}

/** A TCP connection to the agent, opened and then left to the test. */
async function rawClient(agent: TargetAgent): Promise<RawClient> {
  const socket = connect(agent.port, '127.0.0.1');
  let data = '';
  let isClosed = false;
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
  // A peer that drops the connection may reset it; that is the close this test waits for.
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  void closed.then(() => (isClosed = true));
  cleanups.push(() => void socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('close', () => reject(new Error('the connection closed before it was established')));
  });
  return { socket, closed, isClosed: () => isClosed, received: () => data };
}

/** Resolves once `n` of `clients` have closed; rejects after `timeoutMs` (a generous ceiling). */
async function closedCount(clients: RawClient[], n: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (clients.filter((c) => c.isClosed()).length < n) {
    if (Date.now() > deadline) {
      throw new Error(`only ${clients.filter((c) => c.isClosed()).length} of ${clients.length} connections closed, expected ${n}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const UPGRADE_REQUEST =
  'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

test('with maxConnections 1 and one WebSocket open, the second raw connection is answered 503 when it asks, and those beyond at once, then closed', async () => {
  // A deadline far away: whatever closes below is closed for its number, not its silence.
  const agent = await startAgent({ maxConnections: 1, handshakeTimeoutMs: 120_000 });
  const open = await connectWebSocket(agent.url);
  cleanups.push(() => open.destroy());
  expect(agent.stats.connections).toBe(1);

  const clients: RawClient[] = [];
  for (let i = 0; i < 4; i++) clients.push(await rawClient(agent));
  // Two TCP connections per WebSocket connection are kept: the WebSocket's and one more.
  await closedCount(clients, 3);
  const kept = clients.filter((c) => !c.isClosed());
  expect(kept).toHaveLength(1);
  // Those past the bound are told why before anything is read from them, so a peer always learns the code.
  expect(clients.filter((c) => c.isClosed()).every((c) => /^HTTP\/1\.1 503 /.test(c.received()))).toBe(true);

  // The one kept is answered, and told the agent is at its limit.
  kept[0]!.socket.write(UPGRADE_REQUEST);
  await kept[0]!.closed;
  expect(kept[0]!.received()).toMatch(/^HTTP\/1\.1 503 /);
  expect(agent.stats.refusedAtConnectionLimit).toBe(4);

  // The WebSocket that was open is untouched, and with the flood gone a new one is taken.
  expect(open.closed).toBe(false);
  await open.close();
  const next = await connectWebSocket(agent.url);
  cleanups.push(() => next.destroy());
  expect(next.closed).toBe(false);
});

test('a connection that says nothing, or sends half an HTTP request, is dropped at the handshake deadline; with a later deadline it is not yet', async () => {
  const strict = await startAgent({ handshakeTimeoutMs: 300 });
  const patient = await startAgent({ handshakeTimeoutMs: 120_000 });
  const clientsOf = async (agent: TargetAgent): Promise<RawClient[]> => {
    const silent = await rawClient(agent);
    const partial = await rawClient(agent);
    partial.socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
    return [silent, partial];
  };
  const patientClients = await clientsOf(patient);
  const strictClients = await clientsOf(strict);

  await closedCount(strictClients, 2);
  // Dropped without an answer: there was no request to answer.
  expect(strictClients.map((c) => c.received())).toEqual(['', '']);
  // Opened before the strict ones and still open after they were dropped: what dropped them was
  // the deadline, not anything else about them.
  expect(patientClients.map((c) => c.isClosed())).toEqual([false, false]);

  // The patient agent still completes the handshake on the half-sent request.
  patientClients[1]!.socket.write('Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  const deadline = Date.now() + 10_000;
  while (!patientClients[1]!.received().includes('\r\n\r\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  expect(patientClients[1]!.received()).toMatch(/^HTTP\/1\.1 101 /);
});
