// Mutual authentication between a client and a target agent: each side proves it holds the pool
// key, each refuses a side that cannot, and a fake agent cannot pass by reflecting the client's
// own proof or nonce back at it.
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';

import { authenticateToAgent, connectToAgent, queryAgent } from '../dist/agent/agent-client.js';
import { generateKey } from '../dist/agent/key-file.js';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { newAuthNonce } from '../dist/protocol/auth.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import type { MigrationRecord } from '../dist/protocol/records.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { listenWebSocket } from '../dist/transport/ws-listener.js';
import type { WebSocketTransport } from '../dist/transport/ws-transport.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

type AgentEvent = { type: string; error?: { code: string; message: string } };

async function startAgent(options: Parameters<typeof TargetAgent.start>[0] = {}): Promise<{ agent: TargetAgent; events: AgentEvent[] }> {
  const agent = await TargetAgent.start(options);
  cleanups.push(() => agent.close());
  const events: AgentEvent[] = [];
  agent.on('event', (e: AgentEvent) => events.push(e));
  return { agent, events };
}

async function waitFor<T>(check: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function next(transport: WebSocketTransport): Promise<MigrationRecord | undefined> {
  const frame = await transport.receive();
  return frame === undefined ? undefined : decodeFrame(frame);
}

/**
 * A fake agent on loopback: `script` plays its side of each connection and reports what the
 * client sent last.
 */
async function fakeAgent(script: (t: WebSocketTransport) => Promise<void>): Promise<string> {
  const listener = await listenWebSocket({}, (t) => {
    void script(t).catch(() => undefined);
  });
  cleanups.push(() => listener.close());
  return listener.url;
}

describe('an agent with a key', () => {
  it('serves a client that holds the same key, and proves itself to it', async () => {
    const key = generateKey();
    const { agent, events } = await startAgent({ key });
    expect(agent.requiresKey).toBe(true);
    const status = await queryAgent(agent.url, 'no-such-migration', { key });
    expect(status).toEqual({ type: 'status', migrationId: 'no-such-migration', state: 'unknown' });
    expect(events).toEqual([]);
    expect(agent.stats.authFailures).toBe(0);
  });

  it('refuses a client without a key with ERR_AUTH_FAILED, telling it to pass the pool key', async () => {
    const { agent, events } = await startAgent({ key: generateKey() });
    const err = await connectToAgent(agent.url).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_AUTH_FAILED' });
    expect((err as Error).message).toMatch(/pass the pool key.*--key-file/);
    const refused = await waitFor(() => events.find((e) => e.type === 'connection-refused'));
    expect(refused.error?.message).toContain('ERR_AUTH_FAILED');
    await waitFor(() => (agent.stats.authFailures === 1 ? true : undefined));
  });

  it('refuses a connection that starts with query or hello, before reading anything else', async () => {
    const { agent, events } = await startAgent({ key: generateKey() });
    const raw = await connectWebSocket(agent.url);
    cleanups.push(() => raw.destroy());
    await raw.send(encodeRecord({ type: 'query', migrationId: 'm', inspect: true }));
    const answer = await next(raw);
    expect(answer).toMatchObject({ type: 'abort', code: 'ERR_AUTH_FAILED' });
    expect((answer as { message: string }).message).toMatch(/pool key/);
    expect(await next(raw).catch(() => undefined)).toBeUndefined();
    await waitFor(() => events.find((e) => e.type === 'connection-refused' && e.error?.code === 'ERR_AUTH_FAILED'));
  });

  it('refuses a client with another key, and keeps serving the right one', async () => {
    const key = generateKey();
    const { agent, events } = await startAgent({ key });
    await expect(queryAgent(agent.url, 'm', { key: generateKey() })).rejects.toMatchObject({
      code: 'ERR_AUTH_FAILED',
      message: expect.stringMatching(/does not match this agent's pool key/),
    });
    await waitFor(() => events.find((e) => e.error?.code === 'ERR_AUTH_FAILED'));
    await expect(queryAgent(agent.url, 'm', { key })).resolves.toMatchObject({ state: 'unknown' });
  });

  it('skips an unknown optional record before authentication, as anywhere else', async () => {
    const key = generateKey();
    const { agent, events } = await startAgent({ key });
    const raw = await connectWebSocket(agent.url);
    cleanups.push(() => raw.destroy());
    const header = new Packr({ useRecords: false }).pack({ type: 'hint-from-the-future', optional: true });
    const frame = Buffer.alloc(4 + header.length);
    frame.writeUInt32LE(header.length, 0);
    frame.set(header, 4);
    await raw.send(frame);
    await authenticateToAgent(raw, { key });
    await raw.send(encodeRecord({ type: 'query', migrationId: 'm', inspect: false }));
    expect(await next(raw)).toMatchObject({ type: 'status', state: 'unknown' });
    expect(events).toEqual([]);
  });

  it('refuses a key shorter than 32 bytes at start', async () => {
    await expect(TargetAgent.start({ key: new Uint8Array(16) })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('an agent without a key', () => {
  it('serves clients without a key on loopback, with or without the authentication exchange', async () => {
    const { agent } = await startAgent();
    expect(agent.requiresKey).toBe(false);
    await expect(queryAgent(agent.url, 'm')).resolves.toMatchObject({ state: 'unknown' });
    const raw = await connectWebSocket(agent.url);
    cleanups.push(() => raw.destroy());
    await raw.send(encodeRecord({ type: 'query', migrationId: 'm', inspect: false }));
    expect(await next(raw)).toMatchObject({ type: 'status', state: 'unknown' });
  });

  it('is refused by a client that holds a key: it cannot prove itself', async () => {
    const { agent } = await startAgent();
    await expect(connectToAgent(agent.url, { key: generateKey() })).rejects.toMatchObject({
      code: 'ERR_AUTH_FAILED',
      message: expect.stringMatching(/holds no pool key/),
    });
  });

  it('will not listen on a non-loopback address unless told it is insecure', async () => {
    // Refused before anything is bound.
    await expect(TargetAgent.start({ host: '0.0.0.0' })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringMatching(/without a pool key.*--key-file.*--insecure/),
    });
    const { agent } = await startAgent({ host: 'localhost' });
    expect(agent.url).toMatch(/^ws:\/\//);
  });
});

describe('a client with a key refuses a fake agent', () => {
  const key = generateKey();

  it('that reflects the client proof back as its own', async () => {
    let clientAbort: MigrationRecord | undefined;
    const url = await fakeAgent(async (t) => {
      await next(t); // auth-hello
      await t.send(encodeRecord({ type: 'auth-challenge', nonce: newAuthNonce() }));
      const proof = await next(t);
      if (proof?.type !== 'auth-proof') return;
      await t.send(encodeRecord({ type: 'auth-ok', proof: proof.proof }));
      clientAbort = await next(t);
    });
    await expect(connectToAgent(url, { key })).rejects.toMatchObject({
      code: 'ERR_AUTH_FAILED',
      message: expect.stringMatching(/proof that does not match/),
    });
    // The client says why before it goes, and sends nothing else (no hello).
    expect(await waitFor(() => clientAbort)).toMatchObject({ type: 'abort', code: 'ERR_AUTH_FAILED' });
  });

  it("that sends the client's own nonce back as its challenge", async () => {
    const url = await fakeAgent(async (t) => {
      const hello = await next(t);
      if (hello?.type !== 'auth-hello') return;
      await t.send(encodeRecord({ type: 'auth-challenge', nonce: hello.nonce }));
      await next(t);
    });
    await expect(connectToAgent(url, { key })).rejects.toMatchObject({
      code: 'ERR_AUTH_FAILED',
      message: expect.stringMatching(/own nonce/),
    });
  });

  it('that answers auth-ok at once, without a proof', async () => {
    const url = await fakeAgent(async (t) => {
      await next(t);
      await t.send(encodeRecord({ type: 'auth-ok' }));
      await next(t);
    });
    await expect(connectToAgent(url, { key })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
  });

  it('that never answers, within the deadline', async () => {
    const url = await fakeAgent(async (t) => {
      await next(t);
    });
    const transport = await connectWebSocket(url);
    const started = Date.now();
    await expect(authenticateToAgent(transport, { key, timeoutMs: 200 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(transport.closed).toBe(true);
  });
});
