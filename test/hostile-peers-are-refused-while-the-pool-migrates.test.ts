// A target agent with a pool key faces hostile peers, played with raw frames: each is refused
// with a stable code (seen by the peer, and in the agent's events) and disconnected, while a real
// migration from a member of the pool is under way beside it; that one then completes, and the
// guest on the agent matches its replay oracle.
import { compressSync } from 'lz4-napi';
import { afterEach, expect, test } from 'vitest';

import { authenticateToAgent, connectToAgent, queryAgent } from '../dist/agent/agent-client.js';
import { generateKey } from '../dist/agent/key-file.js';
import { TargetAgent, type AgentEvent, type TargetAgentOptions } from '../dist/agent/target-agent.js';
import { encodePages, encodeRecord } from '../dist/protocol/codec.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import type { Transport } from '../dist/transport/transport.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import type { WebSocketTransport } from '../dist/transport/ws-transport.js';
import { helloFor, howItEnds, nextRecord, REAL_GUEST, startRealMigration, waitForEvent } from './helpers/hostile-peer.js';
import { expectGuestMatchesOracle } from './helpers/target-memory.js';
import { specChecksum } from './helpers/spec-checksum.js';

const MiB = 1024 * 1024;
const PAGE = 4096;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

interface Pool {
  agent: TargetAgent;
  key: Uint8Array;
  events: AgentEvent[];
}

async function startPool(options: TargetAgentOptions = {}): Promise<Pool> {
  const key = generateKey();
  const agent = await TargetAgent.start({ key, ...options });
  cleanups.push(() => agent.close());
  const events: AgentEvent[] = [];
  agent.on('event', (e: AgentEvent) => events.push(e));
  return { agent, key, events };
}

/**
 * A real migration from a member of the pool, held in pre-copy (paced at 32 MB/s) until `hostile`
 * is done, so that every attack lands while it is under way, past its first pass; `hostile` calls
 * `stillMigrating()` as each attack lands. Then it switches over: completed, verified, and the guest on the agent
 * and the source's paused copy both hold what the replay oracle says.
 */
async function besideARealMigration(pool: Pool, hostile: (stillMigrating: () => void) => Promise<void>): Promise<void> {
  const real = await startRealMigration(pool.agent.url, { key: pool.key }, { hold: true, maxBandwidthBytesPerSec: 32e6 });
  cleanups.push(() => real.guest.destroy());
  const stillMigrating = (): void => {
    expect(real.ended, 'the real migration ended before the attack landed').toBe(false);
    expect(pool.agent.migrations.get(real.migrationId)?.state).toBe('receiving');
  };
  // The first pass over: the agent has received all the guest's memory once, so what the attacks
  // cost it is not hidden in the guest's arrival (the tests bound the agent's memory growth).
  await expect.poll(() => real.round, { timeout: 30_000 }).toBeGreaterThanOrEqual(1);
  stillMigrating();
  await hostile(stillMigrating);
  stillMigrating();
  // Pages still flow after the attacks: the migration was not merely left waiting.
  const sent = real.bytesRaw;
  await expect.poll(() => real.bytesRaw, { timeout: 10_000 }).toBeGreaterThan(sent);
  real.release();
  const report = await real.report;
  expect(report.error).toBeUndefined();
  expect(report.outcome).toBe('completed');
  expect(report.verified).toBe(true);
  expect(pool.agent.migrations.get(report.migrationId)?.state).toBe('running');
  const atPause = await expectGuestMatchesOracle(real.guest, REAL_GUEST);
  await expectGuestMatchesOracle(pool.agent.migrations.get(report.migrationId)?.domain, REAL_GUEST, atPause);
}

/** A raw connection to play the hostile peer; it may send frames of up to 64 MiB. */
async function rawPeer(url: string): Promise<WebSocketTransport> {
  const transport = await connectWebSocket(url, { maxFrameBytes: 64 * MiB });
  cleanups.push(() => transport.destroy());
  return transport;
}

/** A raw connection that passed authentication with `key`: it may now send anything. */
async function insider(pool: Pool): Promise<WebSocketTransport> {
  const transport = await rawPeer(pool.agent.url);
  await authenticateToAgent(transport, { key: pool.key });
  return transport;
}

/** An insider that started a migration of a 16 MiB guest and got `ready`. */
async function insiderWithMigration(pool: Pool): Promise<{ transport: WebSocketTransport; migrationId: string }> {
  const transport = await insider(pool);
  const hello = helloFor(16 * MiB);
  await transport.send(encodeRecord(hello));
  expect(await nextRecord(transport)).toMatchObject({ type: 'ready', migrationId: hello.migrationId });
  return { transport, migrationId: hello.migrationId };
}

function refusedWith(code: string): (e: AgentEvent) => boolean {
  return (e) => e.type === 'connection-refused' && e.error.code === code;
}

function discardedWith(migrationId: string, code: string): (e: AgentEvent) => boolean {
  return (e) => e.type === 'migration-discarded' && e.migrationId === migrationId && e.error?.code === code;
}


/** Records every frame sent through it, to replay them later on another connection. */
class RecordingTransport implements Transport {
  readonly sent: Uint8Array[] = [];
  constructor(private readonly inner: Transport) {}
  get bufferedBytes(): number {
    return this.inner.bufferedBytes;
  }
  get closed(): boolean {
    return this.inner.closed;
  }
  get bytesSent(): number {
    return this.inner.bytesSent;
  }
  get bytesReceived(): number {
    return this.inner.bytesReceived;
  }
  send(frame: Uint8Array): Promise<void> {
    this.sent.push(Uint8Array.from(frame));
    return this.inner.send(frame);
  }
  receive(): Promise<Uint8Array | undefined> {
    return this.inner.receive();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  destroy(reason?: Error): void {
    this.inner.destroy(reason);
  }
}

test('a peer without the key is refused with ERR_AUTH_FAILED before anything is allocated', async () => {
  const pool = await startPool();
  await besideARealMigration(pool, async (stillMigrating) => {
    // Straight to hello, as a source that was given no key would do.
    const raw = await rawPeer(pool.agent.url);
    const hello = helloFor(16 * MiB);
    await raw.send(encodeRecord(hello));
    expect(await howItEnds(raw)).toBe('ERR_AUTH_FAILED');
    stillMigrating();
    await waitForEvent(pool.events, refusedWith('ERR_AUTH_FAILED'));
    expect(pool.agent.migrations.has(hello.migrationId)).toBe(false);
    expect(pool.events.some((e) => e.type === 'migration-started' && e.migrationId === hello.migrationId)).toBe(false);
    // Through the client, which says what to do about it.
    await expect(connectToAgent(pool.agent.url)).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED', message: expect.stringMatching(/pool key/) });
    stillMigrating();
  });
  expect(pool.agent.stats.authFailures).toBe(2);
});

test('a peer with another key is refused with ERR_AUTH_FAILED', async () => {
  const pool = await startPool();
  await besideARealMigration(pool, async (stillMigrating) => {
    const raw = await rawPeer(pool.agent.url);
    await expect(authenticateToAgent(raw, { key: generateKey() })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
    stillMigrating();
    await waitForEvent(pool.events, refusedWith('ERR_AUTH_FAILED'));
  });
});

test('a handshake recorded on one connection and replayed on another is refused', async () => {
  const pool = await startPool();
  await besideARealMigration(pool, async (stillMigrating) => {
    // A valid exchange, recorded: it authenticates the connection it was made on.
    const recorder = new RecordingTransport(await rawPeer(pool.agent.url));
    await authenticateToAgent(recorder, { key: pool.key });
    const [authHello, authProof] = recorder.sent;
    expect(recorder.sent).toHaveLength(2);
    recorder.destroy();

    // The same bytes on a fresh connection: the agent's challenge is new, so the old proof fails.
    const replay = await rawPeer(pool.agent.url);
    await replay.send(authHello!);
    const challenge = await nextRecord(replay);
    expect(challenge?.type).toBe('auth-challenge');
    await replay.send(authProof!);
    expect(await howItEnds(replay)).toBe('ERR_AUTH_FAILED');
    stillMigrating();
    await waitForEvent(pool.events, refusedWith('ERR_AUTH_FAILED'));
    expect(pool.agent.stats.authFailures).toBe(1);
  });
});

test('a frame past the byte limit before authentication, or past maxFrameBytes after it: ERR_LIMIT_EXCEEDED', async () => {
  const pool = await startPool({ limits: { maxFrameBytes: 8 * MiB } });
  await besideARealMigration(pool, async (stillMigrating) => {
    // Before authentication the agent takes 1 MiB at most (twice maxHeaderBytes), counted as it arrives.
    const stranger = await rawPeer(pool.agent.url);
    await stranger.send(new Uint8Array(MiB + 16 * 1024)).catch(() => undefined);
    expect(await howItEnds(stranger)).toBe('ERR_LIMIT_EXCEEDED');
    stillMigrating();
    await waitForEvent(pool.events, refusedWith('ERR_LIMIT_EXCEEDED'));

    // An authenticated source with a migration under way sends one frame over maxFrameBytes.
    const { transport, migrationId } = await insiderWithMigration(pool);
    await transport.send(new Uint8Array(8 * MiB + 1)).catch(() => undefined);
    expect(await howItEnds(transport)).toBe('ERR_LIMIT_EXCEEDED');
    stillMigrating();
    await waitForEvent(pool.events, discardedWith(migrationId, 'ERR_LIMIT_EXCEEDED'));
  });
});

test('a decompression bomb is refused by its size prefix, before anything is decompressed', async () => {
  const pool = await startPool();
  await besideARealMigration(pool, async (stillMigrating) => {
    const { transport, migrationId } = await insiderWithMigration(pool);
    const raw = new Uint8Array(PAGE).fill(0x5a);
    const payload = compressSync(Buffer.from(raw));
    const frame = encodePages(
      { round: 0, pages: writePageNumbers([0]), zeros: new Uint8Array(0), codec: 'lz4', rawLength: PAGE, checksum: specChecksum(raw, 0), seq: 0 },
      payload,
    );
    // The lz4 size prefix now claims about 4 GiB of output for one page.
    const prefixAt = frame.length - payload.length;
    frame.set([0xf0, 0xff, 0xff, 0xff], prefixAt);
    const rssBefore = process.memoryUsage().rss;
    await transport.send(frame);
    expect(await howItEnds(transport)).toBe('ERR_MALFORMED_RECORD');
    stillMigrating();
    const discarded = await waitForEvent(pool.events, discardedWith(migrationId, 'ERR_MALFORMED_RECORD'));
    expect(discarded.type === 'migration-discarded' && discarded.error?.message).toMatch(/size prefix/);
    // Nothing near the claimed size was ever allocated.
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(512 * MiB);
  });
});

test('pages beyond the announced memory are refused with ERR_PAGE_OUT_OF_RANGE', async () => {
  const pool = await startPool();
  await besideARealMigration(pool, async (stillMigrating) => {
    const raw = new Uint8Array(PAGE).fill(7);
    for (const where of ['data', 'zero'] as const) {
      const { transport, migrationId } = await insiderWithMigration(pool);
      // 16 MiB is 4096 pages: page 4096 is the first one past the end.
      const beyond = writePageNumbers([4096]);
      const frame =
        where === 'data'
          ? encodePages({ round: 0, pages: beyond, zeros: new Uint8Array(0), codec: 'none', rawLength: PAGE, checksum: specChecksum(raw, 0), seq: 0 }, raw)
          : encodePages(
              { round: 0, pages: new Uint8Array(0), zeros: beyond, codec: 'none', rawLength: 0, checksum: specChecksum(new Uint8Array(0), 0), seq: 0 },
              new Uint8Array(0),
            );
      await transport.send(frame);
      expect(await howItEnds(transport)).toBe('ERR_PAGE_OUT_OF_RANGE');
      stillMigrating();
      await waitForEvent(pool.events, discardedWith(migrationId, 'ERR_PAGE_OUT_OF_RANGE'));
    }
  });
});

test('records out of order are refused with ERR_UNEXPECTED_RECORD, at every stage', async () => {
  const pool = await startPool();
  await besideARealMigration(pool, async (stillMigrating) => {
    // A proof before any challenge.
    const early = await rawPeer(pool.agent.url);
    await early.send(encodeRecord({ type: 'auth-proof', proof: new Uint8Array(32) }));
    expect(await howItEnds(early)).toBe('ERR_UNEXPECTED_RECORD');
    stillMigrating();

    // Authenticated, then "go" before any hello; then a second authentication.
    for (const record of [{ type: 'go' } as const, { type: 'auth-hello', nonce: new Uint8Array(32) } as const]) {
      const peer = await insider(pool);
      await peer.send(encodeRecord(record));
      expect(await howItEnds(peer)).toBe('ERR_UNEXPECTED_RECORD');
      stillMigrating();
    }

    // A migration under way that claims to be complete before sending its device state.
    const { transport, migrationId } = await insiderWithMigration(pool);
    await transport.send(encodeRecord({ type: 'complete', batches: 0, digest: '0000000000000000' }));
    expect(await howItEnds(transport)).toBe('ERR_UNEXPECTED_RECORD');
    stillMigrating();
    await waitForEvent(pool.events, discardedWith(migrationId, 'ERR_UNEXPECTED_RECORD'));
    expect(pool.events.filter(refusedWith('ERR_UNEXPECTED_RECORD'))).toHaveLength(3);
  });
});

test('a peer that stalls before its hello, or in the middle of a migration, is dropped with ERR_TIMEOUT', async () => {
  const pool = await startPool({ handshakeTimeoutMs: 1000, recordIdleTimeoutMs: 3000 });
  await besideARealMigration(pool, async (stillMigrating) => {
    const silent = await rawPeer(pool.agent.url);
    const authenticatedButSilent = await insider(pool);
    const { transport: stalled, migrationId } = await insiderWithMigration(pool);
    // The WebSocket keepalive answers pings all along; only records count.
    expect(await howItEnds(silent)).toBe('ERR_TIMEOUT');
    stillMigrating();
    expect(await howItEnds(authenticatedButSilent)).toBe('ERR_TIMEOUT');
    stillMigrating();
    expect(await howItEnds(stalled)).toBe('ERR_TIMEOUT');
    stillMigrating();
    expect(pool.events.filter(refusedWith('ERR_TIMEOUT'))).toHaveLength(2);
    await waitForEvent(pool.events, discardedWith(migrationId, 'ERR_TIMEOUT'));
  });
});

test('a flood of 50 connections at once: the excess is refused, memory stays bounded, the agent keeps serving', async () => {
  const pool = await startPool({ maxConnections: 16, maxPendingHandshakes: 8, handshakeTimeoutMs: 1500 });
  await besideARealMigration(pool, async (stillMigrating) => {
    const rssBefore = process.memoryUsage().rss;
    let peakConnections = 0;
    const sampler = setInterval(() => (peakConnections = Math.max(peakConnections, pool.agent.stats.connections)), 5);
    cleanups.push(() => clearInterval(sampler));

    const attempts = await Promise.allSettled(
      Array.from({ length: 50 }, () => connectWebSocket(pool.agent.url, { connectTimeoutMs: 5000 })),
    );
    const opened = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
    for (const t of opened) cleanups.push(() => t.destroy());
    const notOpened = attempts.flatMap((a) => (a.status === 'rejected' ? [(a.reason as { code: string }).code] : []));
    // Refused before the WebSocket opened (HTTP 503 at maxConnections): the listener's count. A
    // caller is told the target is at a limit (retry later), not that it cannot be reached.
    expect(notOpened.every((code) => code === 'ERR_LIMIT_EXCEEDED')).toBe(true);

    // Of those that opened, at most 8 may wait to authenticate; the agent refuses the others at
    // once with an abort, and drops the waiting ones at the handshake deadline.
    const endings = await Promise.all(opened.map((t) => howItEnds(t)));
    stillMigrating();
    const timedOut = endings.filter((c) => c === 'ERR_TIMEOUT').length;
    const overPending = endings.filter((c) => c === 'ERR_LIMIT_EXCEEDED').length;
    expect(timedOut).toBeGreaterThan(0);
    expect(timedOut).toBeLessThanOrEqual(8);
    expect(overPending + timedOut).toBe(opened.length);
    expect(overPending + notOpened.length).toBeGreaterThanOrEqual(42);
    clearInterval(sampler);

    const stats = pool.agent.stats;
    expect(stats.peakPendingHandshakes).toBeLessThanOrEqual(8);
    expect(peakConnections).toBeLessThanOrEqual(16);
    expect(stats.refusedAtConnectionLimit).toBe(notOpened.length);
    expect(stats.refusedConnections).toBe(opened.length);
    // A loose bound: 50 sockets must not cost anything like a frame buffer each.
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(200 * MiB);

    // Once the flood is gone, a member of the pool is served at once.
    await expect(queryAgent(pool.agent.url, 'after-the-flood', { key: pool.key })).resolves.toMatchObject({ state: 'unknown' });
  });
});
