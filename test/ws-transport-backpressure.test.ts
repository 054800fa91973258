import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { listenWebSocket, type WebSocketListener } from '../dist/transport/ws-listener.js';
import type { WebSocketTransport } from '../dist/transport/ws-transport.js';

const MiB = 1024 * 1024;
const FRAME_BYTES = MiB;
const FRAMES = 48;
const MAX_QUEUED_FRAMES = 4;
const MAX_QUEUED_BYTES = 3 * MiB;
/** Room for what the kernel and Node's stream buffers hold between the two queues on loopback. */
const SOCKET_BUFFER_ALLOWANCE = 16 * MiB;

let listener: WebSocketListener | undefined;

afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

/** Polls until `value()` has not changed for `polls` polls in a row. */
async function settled(value: () => number, polls = 4, intervalMs = 100): Promise<number> {
  let last = value();
  let same = 0;
  while (same < polls) {
    await sleep(intervalMs);
    const now = value();
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

describe('WebSocket transport backpressure', () => {
  it('stalls the sender instead of queueing without bound while the receiver does not read', async () => {
    let accept!: (t: WebSocketTransport) => void;
    const accepted = new Promise<WebSocketTransport>((resolve) => (accept = resolve));
    // A short idle timeout on both ends: the stall below outlasts it, and must not be taken for a
    // dead peer.
    const idleTimeoutMs = 300;
    listener = await listenWebSocket(
      { maxQueuedFrames: MAX_QUEUED_FRAMES, maxQueuedBytes: MAX_QUEUED_BYTES, idleTimeoutMs },
      (t) => accept(t),
    );
    const client = await connectWebSocket(listener.url, { idleTimeoutMs });
    const server = await accepted;

    const frames = Array.from({ length: FRAMES }, (_, i) => new Uint8Array(FRAME_BYTES).fill(i));
    let resolvedSends = 0;
    const sends = frames.map((f) => client.send(f).then(() => resolvedSends++));
    expect(client.bufferedBytes).toBe(FRAMES * FRAME_BYTES);

    const resolvedWhileStalled = await settled(() => resolvedSends);
    expect(server.readPaused).toBe(true);
    expect(server.queuedFrames).toBeLessThanOrEqual(MAX_QUEUED_FRAMES);
    expect(server.queuedBytes).toBeLessThanOrEqual(MAX_QUEUED_BYTES);
    expect(resolvedWhileStalled * FRAME_BYTES).toBeLessThanOrEqual(MAX_QUEUED_BYTES + SOCKET_BUFFER_ALLOWANCE);
    expect(client.bufferedBytes).toBe((FRAMES - resolvedWhileStalled) * FRAME_BYTES);
    expect(client.closed).toBe(false);
    expect(server.closed).toBe(false);

    let highestQueue = 0;
    let highestQueuedBytes = 0;
    for (let i = 0; i < FRAMES; i++) {
      highestQueue = Math.max(highestQueue, server.queuedFrames);
      highestQueuedBytes = Math.max(highestQueuedBytes, server.queuedBytes);
      const frame = await server.receive();
      expect(frame?.byteLength).toBe(FRAME_BYTES);
      expect(frame![0]).toBe(i & 0xff);
      expect(frame![FRAME_BYTES - 1]).toBe(i & 0xff);
    }
    await Promise.all(sends);
    expect(highestQueue).toBeLessThanOrEqual(MAX_QUEUED_FRAMES);
    expect(highestQueuedBytes).toBeLessThanOrEqual(MAX_QUEUED_BYTES);
    expect(client.bufferedBytes).toBe(0);
    expect(client.bytesSent).toBe(FRAMES * FRAME_BYTES);
    expect(server.bytesReceived).toBe(FRAMES * FRAME_BYTES);
    expect(server.readPaused).toBe(false);

    await client.close();
    expect(await server.receive()).toBeUndefined();
  });

  it('resumes reading only once the consumer drained the queue below half', async () => {
    let accept!: (t: WebSocketTransport) => void;
    const accepted = new Promise<WebSocketTransport>((resolve) => (accept = resolve));
    listener = await listenWebSocket({ maxQueuedFrames: 8 }, (t) => accept(t));
    const client = await connectWebSocket(listener.url);
    const server = await accepted;

    const sends = Array.from({ length: 32 }, (_, i) => client.send(new Uint8Array(256 * 1024).fill(i)));
    await settled(() => server.queuedFrames, 3, 50);
    expect(server.readPaused).toBe(true);
    expect(server.queuedFrames).toBe(8);

    for (let taken = 1; taken <= 5; taken++) {
      await server.receive();
      // Down to half (8 / 2) reading stays off; below it, it resumes.
      expect(server.readPaused).toBe(8 - taken >= 4);
    }
    for (let i = 5; i < 32; i++) expect((await server.receive())![0]).toBe(i);
    await Promise.all(sends);
    await client.close();
  });
  it('delivers every frame before the end when the peer closes while this side is not reading', async () => {
    let accept!: (t: WebSocketTransport) => void;
    const accepted = new Promise<WebSocketTransport>((resolve) => (accept = resolve));
    listener = await listenWebSocket({ maxQueuedFrames: 4 }, (t) => accept(t));
    const client = await connectWebSocket(listener.url);
    const server = await accepted;

    const sends = Array.from({ length: 20 }, (_, i) => client.send(new Uint8Array(FRAME_BYTES).fill(i)));
    const closing = client.close();
    await settled(() => server.queuedFrames, 3, 50);
    expect(server.readPaused).toBe(true);
    for (let i = 0; i < 20; i++) expect((await server.receive())![0]).toBe(i);
    expect(await server.receive()).toBeUndefined();
    await Promise.all(sends);
    await closing;
  });

  it('closes without waiting for its own consumer, and reports the frames it dropped', async () => {
    let accept!: (t: WebSocketTransport) => void;
    const accepted = new Promise<WebSocketTransport>((resolve) => (accept = resolve));
    listener = await listenWebSocket({ maxQueuedFrames: 4 }, (t) => accept(t));
    const client = await connectWebSocket(listener.url);
    const server = await accepted;

    const sends = Array.from({ length: 40 }, () => client.send(new Uint8Array(FRAME_BYTES)));
    await settled(() => server.queuedFrames, 3, 50);
    expect(server.readPaused).toBe(true);
    await server.close();
    for (let i = 0; i < 4; i++) expect((await server.receive())?.byteLength).toBe(FRAME_BYTES);
    await expect(server.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED', message: /dropped/ });
    // On the wire every frame went out before the close frame came back, so each send resolved.
    await Promise.all(sends);
    expect(await client.receive()).toBeUndefined();
  });
});
