// An agent under a flood of connections refuses a real peer with ERR_LIMIT_EXCEEDED every time,
// whichever of its limits the flood reached (raw TCP sockets, WebSocket connections, connections
// still authenticating), and serves it again once the flood is gone.
import net from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';

const TRIES = 6;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function agent(options: { maxConnections?: number; maxPendingHandshakes?: number } = {}) {
  const a = await TargetAgent.start({ host: '127.0.0.1', port: 0, key: new Uint8Array(32).fill(7), ...options });
  cleanups.push(() => a.close());
  return a;
}

const key = new Uint8Array(32).fill(7);

async function rawSockets(url: string, n: number): Promise<net.Socket[]> {
  const { hostname, port } = new URL(url);
  const out: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect(Number(port), hostname);
    s.on('error', () => undefined);
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    out.push(s);
  }
  cleanups.push(() => out.forEach((s) => s.destroy()));
  return out;
}

/** Every try is refused with ERR_LIMIT_EXCEEDED, never a hang-up or a closing socket. */
async function expectRefusedEveryTime(url: string): Promise<void> {
  const codes: string[] = [];
  for (let i = 0; i < TRIES; i++) {
    try {
      const t = await connectToAgent(url, { key });
      t.destroy();
      codes.push('connected');
    } catch (err) {
      codes.push(`${(err as { code?: string }).code}: ${(err as Error).message}`);
    }
  }
  expect(codes.every((c) => c.startsWith('ERR_LIMIT_EXCEEDED')), codes.join('\n')).toBe(true);
}

async function expectServed(url: string): Promise<void> {
  const t = await connectToAgent(url, { key });
  t.destroy();
}

test('raw TCP sockets past the bound: a 503 for each peer, not a hang-up', async () => {
  const a = await agent({ maxConnections: 2 });
  const flood = await rawSockets(a.url, 8);
  await expectRefusedEveryTime(a.url);
  flood.forEach((s) => s.destroy());
  await new Promise((r) => setTimeout(r, 100));
  await expectServed(a.url);
});

test('every WebSocket connection taken: a 503 for each peer', async () => {
  const a = await agent({ maxConnections: 3, maxPendingHandshakes: 3 });
  const held = [];
  for (let i = 0; i < 3; i++) held.push(await connectWebSocket(a.url));
  cleanups.push(() => held.forEach((t) => t.destroy()));
  await expectRefusedEveryTime(a.url);
});

test('every handshake slot taken by peers that never authenticate: the agent says why', async () => {
  const a = await agent({ maxConnections: 16, maxPendingHandshakes: 2 });
  const held = [];
  for (let i = 0; i < 2; i++) held.push(await connectWebSocket(a.url));
  cleanups.push(() => held.forEach((t) => t.destroy()));
  // The agent counts a connection as pending once it is upgraded; give it that moment.
  await new Promise((r) => setTimeout(r, 50));
  await expectRefusedEveryTime(a.url);
  held.forEach((t) => t.destroy());
  await new Promise((r) => setTimeout(r, 100));
  await expectServed(a.url);
});
