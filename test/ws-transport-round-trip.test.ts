import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { listenWebSocket, type WebSocketListener } from '../dist/transport/ws-listener.js';
import type { WebSocketTransport } from '../dist/transport/ws-transport.js';

const MiB = 1024 * 1024;

/** Frame sizes around the WebSocket length encodings (7-bit, 16-bit, 64-bit) plus a page batch. */
const SIZES = [0, 1, 125, 126, 127, 65_535, 65_536, 65_537, 4096, MiB, 0, 3];

function patterned(size: number, seed: number): Uint8Array {
  const frame = new Uint8Array(size);
  for (let i = 0; i < size; i++) frame[i] = (i * 31 + seed * 7) & 0xff;
  return frame;
}

let listener: WebSocketListener | undefined;

afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

async function connectedPair(): Promise<{ client: WebSocketTransport; server: WebSocketTransport }> {
  let accept!: (t: WebSocketTransport) => void;
  const accepted = new Promise<WebSocketTransport>((resolve) => (accept = resolve));
  listener = await listenWebSocket({ host: '127.0.0.1', port: 0 }, (t) => accept(t));
  const client = await connectWebSocket(listener.url);
  return { client, server: await accepted };
}

async function sendAll(t: WebSocketTransport, frames: Uint8Array[]): Promise<void> {
  await Promise.all(frames.map((f) => t.send(f)));
}

async function receiveCount(t: WebSocketTransport, count: number): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const frame = await t.receive();
    if (frame === undefined) throw new Error(`stream ended after ${i} of ${count} frames`);
    frames.push(frame);
  }
  return frames;
}

describe('WebSocket transport round trip', () => {
  it('delivers frames of every size intact and in order, client to server', async () => {
    const { client, server } = await connectedPair();
    const frames = SIZES.map((size, i) => patterned(size, i));
    const [, received] = await Promise.all([sendAll(client, frames), receiveCount(server, frames.length)]);
    expect(received.map((f) => f.byteLength)).toEqual(SIZES);
    received.forEach((f, i) => expect(Buffer.compare(f, frames[i]!)).toBe(0));
    const total = SIZES.reduce((a, b) => a + b, 0);
    expect(client.bytesSent).toBe(total);
    expect(server.bytesReceived).toBe(total);
    expect(client.bufferedBytes).toBe(0);
  });

  it('delivers frames of every size intact and in order, server to client', async () => {
    const { client, server } = await connectedPair();
    const frames = SIZES.map((size, i) => patterned(size, i + 100));
    const [, received] = await Promise.all([sendAll(server, frames), receiveCount(client, frames.length)]);
    received.forEach((f, i) => expect(Buffer.compare(f, frames[i]!)).toBe(0));
    const total = SIZES.reduce((a, b) => a + b, 0);
    expect(server.bytesSent).toBe(total);
    expect(client.bytesReceived).toBe(total);
  });

  it('keeps many frames in order in both directions at once', async () => {
    const { client, server } = await connectedPair();
    const count = 300;
    const numbered = (i: number): Uint8Array => {
      const f = new Uint8Array(8 + (i % 5) * 1000);
      new DataView(f.buffer).setUint32(0, i);
      return f;
    };
    const send = async (t: WebSocketTransport): Promise<void> => {
      for (let i = 0; i < count; i++) await t.send(numbered(i));
    };
    const order = async (t: WebSocketTransport): Promise<number[]> =>
      (await receiveCount(t, count)).map((f) => new DataView(f.buffer, f.byteOffset).getUint32(0));
    const [, , atServer, atClient] = await Promise.all([send(client), send(server), order(server), order(client)]);
    const expected = Array.from({ length: count }, (_, i) => i);
    expect(atServer).toEqual(expected);
    expect(atClient).toEqual(expected);
  });

  it('lets the sender reuse its buffer once send resolves', async () => {
    const { client, server } = await connectedPair();
    const buffer = new Uint8Array(MiB).fill(1);
    await client.send(buffer);
    buffer.fill(2);
    await client.send(buffer);
    const [first, second] = await receiveCount(server, 2);
    expect(first!.every((b) => b === 1)).toBe(true);
    expect(second!.every((b) => b === 2)).toBe(true);
  });

  it('ends the stream with undefined on both sides after a clean close', async () => {
    const { client, server } = await connectedPair();
    await client.send(patterned(10, 1));
    const closing = client.close();
    expect(client.closed).toBe(true);
    expect((await server.receive())?.byteLength).toBe(10);
    expect(await server.receive()).toBeUndefined();
    expect(await server.receive()).toBeUndefined();
    await closing;
    expect(await client.receive()).toBeUndefined();
    expect(server.closed).toBe(true);
    await expect(client.send(new Uint8Array(1))).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    await client.close();
  });

  it('round-trips frames with a server in another process', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/ws-echo-server.mjs', import.meta.url));
    const child = spawn(process.execPath, [fixture], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = once(child, 'exit');
    try {
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      const { url } = JSON.parse(line) as { url: string };
      const client = await connectWebSocket(url);
      const frames = SIZES.map((size, i) => patterned(size, i + 200));
      for (const frame of frames) {
        await client.send(frame);
        const echo = await client.receive();
        expect(echo && Buffer.compare(echo, frame)).toBe(0);
      }
      await client.close();
      expect(await client.receive()).toBeUndefined();
      const [code] = await exited;
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    } finally {
      child.kill();
    }
  });
});
