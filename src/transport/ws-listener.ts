/**
 * Accepting migration connections: `listenWebSocket` serves `ws://` (or `wss://` with a
 * certificate) and hands every accepted WebSocket to its caller as a {@link WebSocketTransport}.
 *
 * A listener defends itself before any migration code runs. Past `maxConnections` open
 * WebSockets, an upgrade is answered with HTTP 503, which the client reports as
 * ERR_LIMIT_EXCEEDED. TCP connections are bounded too, at twice that: beyond the bound a plain
 * listener answers 503 at once without reading the request, and a TLS listener, which cannot
 * answer before the handshake, closes them unanswered. A socket that neither finishes its TLS
 * handshake nor asks to upgrade within `upgradeTimeoutMs` is cut off.
 */

import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { asMigrationError, ConnectFailedError, ConnectionClosedError, InvalidArgumentError } from '../errors.js';
import { checkTimeoutMs, isDeadline, MAX_TIMER_MS } from '../util/deadline.js';
import { describeError, ignoreError } from './describe-error.js';
import { serverTlsOptions, type TlsListenOptions } from './tls.js';
import {
  positiveInteger,
  resolveWebSocketOptions,
  wsCloseTimeout,
  type ResolvedWebSocketOptions,
  type WebSocketTransportOptions,
} from './ws-options.js';
import { wrapWebSocket, type WebSocketTransport } from './ws-transport.js';

/** Most connections a listener keeps open at once. */
export const DEFAULT_MAX_CONNECTIONS = 16;

/** Address a listener binds when none is given: loopback, so nothing is exposed by accident. */
export const DEFAULT_LISTEN_HOST = '127.0.0.1';

/**
 * How long a listener lets a new TCP connection take to finish its TLS handshake and send its
 * HTTP upgrade request, in milliseconds. A peer that opens sockets and says nothing on them is
 * cut off after this.
 */
export const DEFAULT_UPGRADE_TIMEOUT_MS = 10_000;

/**
 * TCP connections a listener serves at once, as a multiple of `maxConnections`: those beyond
 * `maxConnections` that fit under this bound get their HTTP 503 once they ask to upgrade. Beyond
 * it, a plain listener answers 503 at once without reading the request and lets the socket go
 * after {@link REFUSED_SOCKET_LINGER_MS}, so that every refused peer learns why (ERR_LIMIT_EXCEEDED)
 * while a flood still costs few sockets for long; a TLS listener, which cannot answer before the
 * handshake, closes them unanswered.
 */
const TCP_CONNECTIONS_PER_WEBSOCKET = 2;

/** How long a socket refused at the TCP bound may stay open for its 503 to be read, in milliseconds. */
const REFUSED_SOCKET_LINGER_MS = 250;

const HTTP_503 = 'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

/** Options of {@link listenWebSocket}. */
export interface ListenWebSocketOptions extends WebSocketTransportOptions {
  /**
   * Address to bind. Use `0.0.0.0` or `::` to accept sources on other hosts.
   * @default DEFAULT_LISTEN_HOST ('127.0.0.1')
   */
  host?: string;
  /**
   * TCP port; 0 picks a free one, which the listener's `port` then tells.
   * @default 0
   */
  port?: number;
  /**
   * Most connections open at once; further handshakes are refused with HTTP 503.
   * @default DEFAULT_MAX_CONNECTIONS (16)
   */
  maxConnections?: number;
  /**
   * Time a new TCP connection has to finish its TLS handshake and its HTTP upgrade request, in
   * milliseconds. Infinity, or anything beyond 2^31-1 ms (about 24.8 days), is no deadline
   * for the upgrade; the TLS handshake is then held to 2^31-1 ms.
   * @default DEFAULT_UPGRADE_TIMEOUT_MS (10 s)
   */
  upgradeTimeoutMs?: number;
  /** Serve `wss://` with this certificate and key. @default plain `ws://` */
  tls?: TlsListenOptions;
  /**
   * Serves plain HTTP requests (anything but a WebSocket upgrade) on the same port, for an API
   * beside the migrations. Each such socket is held to the same limits as an upgrade: it counts
   * against the TCP bound, and its whole exchange must end within `upgradeTimeoutMs` of
   * connecting; the handler should answer with `Connection: close`.
   * @default every plain request is answered 426 Upgrade Required
   */
  onHttpRequest?: HttpRequestHandler;
}

/** Serves one plain HTTP request that reached a listener; see `ListenWebSocketOptions.onHttpRequest`. */
export type HttpRequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Where an accepted connection comes from. */
export interface RemoteInfo {
  remoteAddress: string;
  remotePort: number;
}

/** A listening WebSocket endpoint, as returned by {@link listenWebSocket}. */
export interface WebSocketListener {
  /** The TCP port bound. */
  readonly port: number;
  /** The address bound. */
  readonly host: string;
  /** `ws://host:port`, or `wss://host:port` with TLS, ready for `connectWebSocket`. */
  readonly url: string;
  /** WebSocket connections open now. */
  readonly connections: number;
  /** Upgrade requests refused so far because `maxConnections` were open. */
  readonly refusedConnections: number;
  /**
   * Stops accepting, destroys every open connection (their pending operations reject with
   * ERR_CONNECTION_CLOSED) and resolves once the server is closed. Idempotent.
   */
  close(): Promise<void>;
}

/** What a listener is told to do, checked, with every default filled in. */
interface ListenerSettings {
  host: string;
  port: number;
  maxConnections: number;
  upgradeTimeoutMs: number;
  transportOptions: ResolvedWebSocketOptions;
  onHttpRequest: HttpRequestHandler | undefined;
}

type OnTransport = (transport: WebSocketTransport, info: RemoteInfo) => void;

/**
 * Listens for migration connections. `onTransport` runs once per accepted connection, after the
 * handshake; if it throws, that connection is destroyed. Rejects with ERR_INVALID_ARGUMENT for an
 * option out of range or TLS material that cannot be used, and with ERR_CONNECT_FAILED when the
 * address cannot be bound.
 */
export function listenWebSocket(options: ListenWebSocketOptions, onTransport: OnTransport): Promise<WebSocketListener> {
  let settings: ListenerSettings;
  try {
    settings = resolveListenerSettings(options);
  } catch (err) {
    return Promise.reject(err);
  }
  return serverTlsOptions(options.tls).then(async (tls) => {
    const listener = new Listener(settings, tls, onTransport);
    await listener.listen();
    return listener;
  });
}

function resolveListenerSettings(options: ListenWebSocketOptions): ListenerSettings {
  const transportOptions = resolveWebSocketOptions(options);
  const maxConnections = positiveInteger('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  const upgradeTimeoutMs = checkTimeoutMs('upgradeTimeoutMs', options.upgradeTimeoutMs ?? DEFAULT_UPGRADE_TIMEOUT_MS);
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`port must be an integer from 0 to 65535, got ${port}`);
  }
  if (options.onHttpRequest !== undefined && typeof options.onHttpRequest !== 'function') {
    throw new InvalidArgumentError('onHttpRequest must be a function (req, res) => void');
  }
  return { host: options.host ?? DEFAULT_LISTEN_HOST, port, maxConnections, upgradeTimeoutMs, transportOptions, onHttpRequest: options.onHttpRequest };
}

/** The HTTP(S) server under a listener; it answers plain HTTP requests with `onHttpRequest`, or 426. */
function createServer(tls: https.ServerOptions | undefined, upgradeTimeoutMs: number, onHttpRequest: HttpRequestHandler | undefined): http.Server {
  const refuseHttp = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
    res.end('livemig migration endpoint: connect with a WebSocket client\n');
  };
  const serve: HttpRequestHandler = (req, res) => {
    try {
      (onHttpRequest ?? refuseHttp)(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(500, { connection: 'close' });
      res.end();
    }
  };
  if (!tls) return http.createServer(serve);
  try {
    return https.createServer({ ...tls, handshakeTimeout: Math.min(upgradeTimeoutMs, MAX_TIMER_MS) }, serve);
  } catch (err) {
    throw new InvalidArgumentError(`cannot use the TLS certificate and key: ${describeError(err)}`);
  }
}

function wsServerOptions(options: ResolvedWebSocketOptions): WebSocket.ServerOptions {
  return {
    noServer: true,
    perMessageDeflate: false,
    maxPayload: options.maxFrameBytes,
    clientTracking: false,
    ...wsCloseTimeout(options),
  };
}

/** One listening server: its sockets, its WebSockets and what it refused. */
class Listener implements WebSocketListener {
  readonly #settings: ListenerSettings;
  readonly #tls: boolean;
  readonly #server: http.Server;
  readonly #wss: WebSocketServer;
  readonly #onTransport: OnTransport;
  /** TCP connections served at once; see {@link TCP_CONNECTIONS_PER_WEBSOCKET}. */
  readonly #tcpBound: number;
  /** Sockets counted against the TCP bound, until they close. */
  readonly #sockets = new Set<Socket>();
  /** Sockets answered 503 at the TCP bound; nothing else is done with them. */
  readonly #refusedSockets = new WeakSet<Socket>();
  readonly #upgradeDeadlines = new WeakMap<Socket, NodeJS.Timeout>();
  readonly #transports = new Set<WebSocketTransport>();
  #refusedConnections = 0;
  #closing: Promise<void> | undefined;
  #host = '';
  #port = 0;

  constructor(settings: ListenerSettings, tls: https.ServerOptions | undefined, onTransport: OnTransport) {
    this.#settings = settings;
    this.#tls = tls !== undefined;
    this.#onTransport = onTransport;
    this.#server = createServer(tls, settings.upgradeTimeoutMs, settings.onHttpRequest);
    this.#tcpBound = settings.maxConnections * TCP_CONNECTIONS_PER_WEBSOCKET;
    // A TLS server cannot answer before the handshake, so it leaves the bound to Node, which
    // closes the surplus unanswered.
    if (this.#tls) this.#server.maxConnections = this.#tcpBound;
    this.#wss = new WebSocketServer(wsServerOptions(settings.transportOptions));
    // In this order: a socket refused at the TCP bound gets no upgrade deadline.
    this.#server.on('connection', this.#onConnection);
    this.#server.on(this.#tls ? 'secureConnection' : 'connection', this.#armUpgradeDeadline);
    this.#server.on('upgrade', this.#onUpgrade);
  }

  get port(): number {
    return this.#port;
  }

  get host(): string {
    return this.#host;
  }

  get url(): string {
    return `${this.#tls ? 'wss' : 'ws'}://${formatHost(this.#host)}:${this.#port}`;
  }

  get connections(): number {
    return this.#transports.size;
  }

  get refusedConnections(): number {
    return this.#refusedConnections;
  }

  /** Binds the address; rejects with ERR_CONNECT_FAILED if it cannot. */
  listen(): Promise<void> {
    const { host, port } = this.#settings;
    const server = this.#server;
    return new Promise((resolve, reject) => {
      const onListenError = (err: Error): void => {
        reject(
          new ConnectFailedError(`could not listen on ${formatHost(host)}:${port}: ${describeError(err)}; choose another address or port`, {
            cause: err,
          }),
        );
      };
      server.once('error', onListenError);
      server.listen({ host, port }, () => {
        server.off('error', onListenError);
        // Once listening, the server only reports failures to accept a connection (EMFILE, say);
        // the connections already open are unaffected, so it keeps serving them.
        server.on('error', ignoreError);
        const address = server.address();
        if (address === null || typeof address === 'string') {
          server.close();
          reject(new ConnectFailedError(`listening on ${formatHost(host)}:${port} gave no TCP address`));
          return;
        }
        this.#host = address.address;
        this.#port = address.port;
        resolve();
      });
    });
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((done) => {
      this.#server.close(() => done());
      for (const transport of this.#transports) {
        transport.destroy(new ConnectionClosedError('the listener was closed while this connection was open'));
      }
      // Sockets still in their HTTP exchange would otherwise keep the server open.
      for (const socket of this.#sockets) socket.destroy();
    });
    return this.#closing;
  }

  /** Counts a new TCP connection, or, on a plain listener past the TCP bound, refuses it. */
  #onConnection = (socket: Socket): void => {
    if (!this.#tls && this.#sockets.size >= this.#tcpBound) {
      // Read and drop what the peer sends, so that closing does not reset the connection before
      // the peer has read its answer.
      this.#refusedConnections++;
      this.#refusedSockets.add(socket);
      socket.on('error', ignoreError);
      socket.resume();
      socket.end(HTTP_503);
      setTimeout(() => socket.destroy(), REFUSED_SOCKET_LINGER_MS).unref();
      return;
    }
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
  };

  /**
   * Node's own request timeouts never fire for a socket that does not start a request, so one that
   * says nothing would stay forever: each gets its own deadline to upgrade (counted after the TLS
   * handshake, which `handshakeTimeout` bounds).
   */
  #armUpgradeDeadline = (socket: Socket): void => {
    const upgradeTimeoutMs = this.#settings.upgradeTimeoutMs;
    if (this.#refusedSockets.has(socket) || !isDeadline(upgradeTimeoutMs)) return;
    const timer = setTimeout(() => socket.destroy(), upgradeTimeoutMs);
    timer.unref();
    this.#upgradeDeadlines.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  };

  /** Accepts an upgrade request, or refuses it with 503 when `maxConnections` are open. */
  #onUpgrade = (req: http.IncomingMessage, socket: Socket, head: Buffer): void => {
    if (this.#refusedSockets.has(socket)) return;
    if (this.#closing) {
      socket.destroy();
      return;
    }
    if (this.#transports.size >= this.#settings.maxConnections) {
      this.#refusedConnections++;
      socket.end(HTTP_503);
      return;
    }
    clearTimeout(this.#upgradeDeadlines.get(socket));
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, socket));
  };

  /** Wraps an upgraded WebSocket and hands it to `onTransport`; destroys it if that throws. */
  #accept(ws: WebSocket, socket: Socket): void {
    const transport = wrapWebSocket(ws, this.#settings.transportOptions, socket);
    this.#transports.add(transport);
    ws.once('close', () => this.#transports.delete(transport));
    try {
      this.#onTransport(transport, { remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 });
    } catch (err) {
      transport.destroy(asMigrationError(err, 'ERR_CONNECTION_CLOSED'));
    }
  }
}

/** `host` as it goes before `:port`: an IPv6 address in brackets. */
function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
