// A TCP proxy on loopback that forwards a connection faithfully until told to cut it, the way a
// failing switch or a pulled cable would.
import net from 'node:net';

export interface CuttingProxy {
  url: string;
  /** Bytes forwarded from client to server so far. */
  readonly upstreamBytes: number;
  /** Destroys every connection through the proxy at once. */
  cut(): void;
  /** Cuts automatically once `bytes` have gone upstream. */
  cutAfter(bytes: number): void;
  close(): Promise<void>;
}

export async function startCuttingProxy(targetUrl: string): Promise<CuttingProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  let upstream = 0;
  let cutAt = Number.POSITIVE_INFINITY;
  const cut = (): void => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  const server = net.createServer((client) => {
    const server = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(server);
    client.on('data', (chunk: Buffer) => {
      upstream += chunk.length;
      server.write(chunk);
      if (upstream >= cutAt) cut();
    });
    server.on('data', (chunk: Buffer) => client.write(chunk));
    const end = (): void => {
      client.destroy();
      server.destroy();
    };
    client.on('error', end).on('close', end);
    server.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    get upstreamBytes() {
      return upstream;
    },
    cut,
    cutAfter(bytes: number) {
      cutAt = bytes;
    },
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
