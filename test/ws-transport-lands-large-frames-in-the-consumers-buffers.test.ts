// A WebSocket transport given a FrameLanding assembles each large frame in the buffer the landing
// claims for it, and receive() returns that very buffer with the frame's bytes; small frames, a
// frame the landing declines and a frame larger than its slots arrive in buffers of the
// transport's, intact and in order. If an upgrade of `ws` moved the internals the landing hooks
// into, the identity checks here fail. The LandingRing hands its slots out in turn and takes
// them back in order.
import { afterEach, expect, test } from 'vitest';
import { LANDING_MIN_BYTES, LandingRing } from '../dist/precopy/landing-ring.js';
import type { FrameLanding } from '../dist/transport/transport.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { listenWebSocket, type WebSocketListener } from '../dist/transport/ws-listener.js';
import type { WebSocketTransport } from '../dist/transport/ws-transport.js';

const KiB = 1024;
const MiB = 1024 * KiB;

let listener: WebSocketListener | undefined;
afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

async function pair(): Promise<{ client: WebSocketTransport; server: WebSocketTransport }> {
  let accept!: (t: WebSocketTransport) => void;
  const accepted = new Promise<WebSocketTransport>((resolve) => (accept = resolve));
  listener = await listenWebSocket({}, (t) => accept(t));
  const client = await connectWebSocket(listener.url);
  return { client, server: await accepted };
}

/** A frame of `bytes` bytes whose every byte depends on `tag` and its position. */
function frame(bytes: number, tag: number): Uint8Array {
  const f = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) f[i] = (i * 7 + tag * 31 + (i >> 12)) & 0xff;
  return f;
}

test('large frames land in the claimed buffers; the rest come in buffers of the transport, all intact and in order', async () => {
  const { client, server } = await pair();
  const memory = new ArrayBuffer(4 * MiB);
  const claims: number[] = [];
  let decline = false;
  const landing: FrameLanding = {
    minBytes: 64 * KiB,
    claim(bytes) {
      claims.push(bytes);
      if (decline || bytes > 2 * MiB) return undefined;
      // Two slots of 2 MiB, taken in turn; this test reads each frame before the next lands.
      return new Uint8Array(memory, ((claims.length - 1) % 2) * 2 * MiB, bytes);
    },
  };
  server.landFramesIn(landing);
  const sizes = [100, 64 * KiB + 3, MiB, 2 * MiB, 3 * MiB, 200 * KiB, 5];
  const sent = sizes.map((bytes, i) => frame(bytes, i));
  for (const [i, f] of sent.entries()) {
    decline = i === 5;
    await client.send(f);
    const got = await server.receive();
    expect(got).toBeDefined();
    expect(Buffer.compare(Buffer.from(got!), Buffer.from(f))).toBe(0);
    const landed = got!.buffer === memory;
    // Landed: frames of at least 64 KiB that span socket reads, fit a slot and were not declined.
    expect(landed, `frame ${i} of ${f.length} bytes`).toBe(f.length >= 64 * KiB && f.length <= 2 * MiB && !decline);
  }
  // Offered: every frame of at least minBytes, and nothing smaller.
  expect(claims).toEqual([64 * KiB + 3, MiB, 2 * MiB, 3 * MiB, 200 * KiB]);

  // With the landing withdrawn, frames come in the transport's buffers again.
  server.landFramesIn(undefined);
  const after = frame(MiB, 9);
  await client.send(after);
  const got = await server.receive();
  expect(got!.buffer).not.toBe(memory);
  expect(Buffer.compare(Buffer.from(got!), Buffer.from(after))).toBe(0);
  await client.close();
  await server.close();
});

test('frames queued behind a slow consumer each keep their own slot', async () => {
  const { client, server } = await pair();
  const region = new Uint8Array(8 * MiB);
  const ring = new LandingRing(region, MiB + 64 * KiB, 6);
  server.landFramesIn(ring);
  const sent = Array.from({ length: 12 }, (_, i) => frame(MiB, i));
  await Promise.all(sent.map((f) => client.send(f)));
  // Every frame has arrived before any is read: six landed, the others came in buffers of the transport.
  for (const [i, f] of sent.entries()) {
    const got = await server.receive();
    expect(Buffer.compare(Buffer.from(got!), Buffer.from(f)), `frame ${i}`).toBe(0);
    ring.release(got!);
  }
  expect(ring.landed + ring.missed).toBe(12);
  expect(ring.landed).toBeGreaterThanOrEqual(6);
  await client.close();
  await server.close();
});

test('a landing ring hands slots out in turn and takes them back in order', () => {
  const region = new Uint8Array(4 * 100);
  const ring = new LandingRing(region, 100, 4);
  expect(ring.minBytes).toBe(LANDING_MIN_BYTES);
  expect(ring.claim(101)).toBeUndefined();
  const a = ring.claim(100)!;
  const b = ring.claim(50)!;
  const c = ring.claim(10)!;
  const d = ring.claim(1)!;
  expect([a.byteOffset, b.byteOffset, c.byteOffset, d.byteOffset]).toEqual([0, 100, 200, 300]);
  expect([a.length, b.length, c.length, d.length]).toEqual([100, 50, 10, 1]);
  expect(ring.claim(10)).toBeUndefined();
  expect(ring.missed).toBe(1);
  // A buffer that did not land here gives nothing back.
  ring.release(new Uint8Array(100));
  expect(ring.claim(10)).toBeUndefined();
  // Releasing c gives back a and b too (a frame the transport dropped never comes back itself).
  ring.release(c);
  const e = ring.claim(100)!;
  const f = ring.claim(100)!;
  const g = ring.claim(100)!;
  expect([e.byteOffset, f.byteOffset, g.byteOffset]).toEqual([0, 100, 200]);
  expect(ring.claim(100)).toBeUndefined();
  // d, the oldest, gives back its slot alone.
  ring.release(d);
  expect(ring.claim(100)!.byteOffset).toBe(300);
  expect(ring.claim(100)).toBeUndefined();
  expect(ring.landed).toBe(8);
});
