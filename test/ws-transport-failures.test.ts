import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { listenWebSocket, type WebSocketListener } from '../dist/transport/ws-listener.js';
import type { WebSocketTransport } from '../dist/transport/ws-transport.js';

const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** No test here needs more than a second; a hang fails fast instead of at the global timeout. */
const TEST_TIMEOUT_MS = 5000;

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listen(options: Parameters<typeof listenWebSocket>[0] = {}): Promise<{
  listener: WebSocketListener;
  accepted: Promise<WebSocketTransport>;
}> {
  let accept!: (t: WebSocketTransport) => void;
  const accepted = new Promise<WebSocketTransport>((resolve) => (accept = resolve));
  const listener = await listenWebSocket(options, (t) => accept(t));
  cleanups.push(() => listener.close());
  return { listener, accepted };
}

/** A TCP server on loopback; `onSocket` sees every connection. Closed after the test. */
async function tcpServer(onSocket: (socket: net.Socket) => void): Promise<{ port: number; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    onSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return { port: (server.address() as net.AddressInfo).port, sockets };
}

/** Answers the WebSocket opening handshake, then reads and ignores everything: a hung peer. */
function completeHandshakeThenHang(socket: net.Socket): void {
  let head = '';
  const onData = (chunk: Buffer): void => {
    head += chunk.toString('latin1');
    const match = /sec-websocket-key:\s*(\S+)/i.exec(head);
    if (!head.includes('\r\n\r\n') || !match) return;
    socket.off('data', onData);
    const accept = createHash('sha1').update(match[1] + HANDSHAKE_GUID).digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.resume();
  };
  socket.on('data', onData);
}

/** Opens a WebSocket by hand, so the test can put frames on the wire that the transport never would. */
async function rawClient(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  cleanups.push(() => void socket.destroy());
  await once(socket, 'connect');
  socket.write(
    'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${Buffer.alloc(16, 1).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let head = '';
  while (!head.includes('\r\n\r\n')) head += ((await once(socket, 'data')) as [Buffer])[0].toString('latin1');
  expect(head).toMatch(/^HTTP\/1\.1 101/);
  return socket;
}

describe('connectWebSocket failures', { timeout: TEST_TIMEOUT_MS }, () => {
  it('reports a refused connection as ERR_CONNECT_FAILED naming the URL', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as net.AddressInfo;
    probe.close();
    await once(probe, 'close');
    const url = `ws://127.0.0.1:${port}`;
    const err = await connectWebSocket(url).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_CONNECT_FAILED' });
    expect((err as Error).message).toContain(url);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
  });

  it('reports a malformed URL as ERR_CONNECT_FAILED', async () => {
    await expect(connectWebSocket('not a url')).rejects.toMatchObject({ code: 'ERR_CONNECT_FAILED' });
    await expect(connectWebSocket('ftp://127.0.0.1:1')).rejects.toMatchObject({ code: 'ERR_CONNECT_FAILED' });
  });

  it('reports an HTTP server that does not upgrade as ERR_CONNECT_FAILED', async () => {
    const server = http.createServer((_req, res) => res.writeHead(404).end());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => void server.close());
    const { port } = server.address() as net.AddressInfo;
    const err = await connectWebSocket(`ws://127.0.0.1:${port}`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_CONNECT_FAILED' });
    expect((err as Error).message).toContain('404');
  });

  it('times out a server that never answers the handshake and leaves no socket open', async () => {
    // Reading (and discarding) lets this end see the client's FIN or RST.
    const { port, sockets } = await tcpServer((socket) => socket.resume());
    const err = await connectWebSocket(`ws://127.0.0.1:${port}`, { connectTimeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_CONNECT_FAILED' });
    expect((err as Error).message).toMatch(/timed out after 200 ms/);
    expect(sockets).toHaveLength(1);
    const peer = sockets[0]!;
    if (!peer.closed) await once(peer, 'close');
    expect(peer.closed).toBe(true);
  });

  it('refuses a connection beyond maxConnections as a limit to retry, and takes it once one closed', async () => {
    const { listener } = await listen({ maxConnections: 1 });
    const first = await connectWebSocket(listener.url);
    await expect(connectWebSocket(listener.url)).rejects.toMatchObject({
      code: 'ERR_LIMIT_EXCEEDED',
      message: expect.stringMatching(/HTTP 503 .*connection limit: try again/),
    });
    first.destroy();
    // The listener counts the first one gone once its socket closed; then the retry gets in.
    let retry: Awaited<ReturnType<typeof connectWebSocket>> | undefined;
    for (let i = 0; i < 50 && !retry; i++) {
      retry = await connectWebSocket(listener.url).catch(() => undefined);
      if (!retry) await new Promise((r) => setTimeout(r, 20));
    }
    expect(retry).toBeDefined();
    retry!.destroy();
  });

  it('rejects invalid options with ERR_INVALID_ARGUMENT', async () => {
    await expect(connectWebSocket('ws://127.0.0.1:1', { maxQueuedFrames: 0 })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(listenWebSocket({ maxFrameBytes: 2 ** 32 }, () => {})).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
  });
});

describe('WebSocket transport failures', { timeout: TEST_TIMEOUT_MS }, () => {
  it('rejects receive and send with ERR_CONNECTION_CLOSED once the peer terminates', async () => {
    const { listener, accepted } = await listen();
    const client = await connectWebSocket(listener.url);
    const server = await accepted;
    await server.send(new Uint8Array([1, 2, 3]));
    server.destroy();
    // A frame that arrived before the connection was cut is still delivered.
    expect(Array.from((await client.receive())!)).toEqual([1, 2, 3]);
    await expect(client.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    expect(client.closed).toBe(true);
    await expect(client.send(new Uint8Array(8))).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    await expect(server.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  });

  it('rejects pending operations with the reason given to destroy', async () => {
    const { listener } = await listen();
    const client = await connectWebSocket(listener.url);
    const pending = client.receive();
    const reason = new Error('operator cancelled');
    client.destroy(reason);
    await expect(pending).rejects.toBe(reason);
    await expect(client.send(new Uint8Array(1))).rejects.toBe(reason);
    client.destroy();
    await client.close();
  });

  it('times out with ERR_TIMEOUT when the peer stops answering pings', async () => {
    const { port } = await tcpServer(completeHandshakeThenHang);
    const client = await connectWebSocket(`ws://127.0.0.1:${port}`, { idleTimeoutMs: 300 });
    await expect(client.receive()).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(client.closed).toBe(true);
    await expect(client.send(new Uint8Array(1))).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  });

  it('gives up the closing handshake after closeTimeoutMs', async () => {
    const { port } = await tcpServer(completeHandshakeThenHang);
    const client = await connectWebSocket(`ws://127.0.0.1:${port}`, { idleTimeoutMs: 0, closeTimeoutMs: 200 });
    await client.close();
    await expect(client.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
  });

  it('fails both ends with ERR_LIMIT_EXCEEDED on a frame above the receiver maxFrameBytes', async () => {
    const { listener, accepted } = await listen({ maxFrameBytes: 64 * 1024 });
    const client = await connectWebSocket(listener.url);
    const server = await accepted;
    const receiving = server.receive();
    await client.send(new Uint8Array(100 * 1024)).catch(() => {});
    await expect(receiving).rejects.toMatchObject({ code: 'ERR_LIMIT_EXCEEDED' });
    await expect(client.receive()).rejects.toMatchObject({ code: 'ERR_LIMIT_EXCEEDED' });
  });

  it('refuses to send a frame above its own maxFrameBytes and stays usable', async () => {
    const { listener, accepted } = await listen();
    const client = await connectWebSocket(listener.url, { maxFrameBytes: 1024 });
    const server = await accepted;
    await expect(client.send(new Uint8Array(1025))).rejects.toMatchObject({ code: 'ERR_LIMIT_EXCEEDED' });
    await client.send(new Uint8Array(1024));
    expect((await server.receive())?.byteLength).toBe(1024);
  });

  it('fails with ERR_MALFORMED_RECORD on a text message and tells the peer with close code 1003', async () => {
    const { listener, accepted } = await listen();
    const socket = await rawClient(listener.port);
    const server = await accepted;
    const receiving = server.receive();
    const payload = Buffer.from('hello');
    // FIN + text opcode, masked with an all-zero key.
    socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]));
    await expect(receiving).rejects.toMatchObject({ code: 'ERR_MALFORMED_RECORD' });
    const [reply] = (await once(socket, 'data')) as [Buffer];
    expect(reply[0]).toBe(0x88);
    expect(reply.readUInt16BE(2)).toBe(1003);
  });

  it('destroys open connections when the listener closes', async () => {
    const { listener, accepted } = await listen();
    const client = await connectWebSocket(listener.url);
    const server = await accepted;
    const serverReceive = server.receive();
    await listener.close();
    await expect(serverReceive).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    await expect(client.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
    await listener.close();
  });
});
