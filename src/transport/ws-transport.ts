/**
 * The migration stream over WebSocket (RFC 6455), built on `ws`. Every frame is one binary
 * message. Reading stops when the incoming queue is full, so a slow consumer pushes back through
 * TCP flow control to the sender, whose `send` promises then stay unresolved. A ping every third
 * of `idleTimeoutMs` keeps the connection alive and finds a dead peer.
 *
 * `wss://` runs the same over TLS: a listener given a certificate and its key serves HTTPS, and a
 * client verifies the listener's certificate against the system's CAs or the ones it is given.
 */

import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import {
  asMigrationError,
  ConnectFailedError,
  ConnectionClosedError,
  InvalidArgumentError,
  LimitExceededError,
  MalformedRecordError,
  TimeoutError,
} from '../errors.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/limits.js';
import { checkTimeoutMs, isDeadline, MAX_TIMER_MS } from '../util/deadline.js';
import {
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_MAX_QUEUED_BYTES,
  DEFAULT_MAX_QUEUED_FRAMES,
  type Transport,
} from './transport.js';
import { FrameQueue } from './frame-queue.js';

/** How long `ping()` waits for its pong, in milliseconds. */
const PING_TIMEOUT_MS = 1000;

/** Silence from the peer after which the connection counts as dead, in milliseconds. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/** How long `connectWebSocket` may take, DNS to finished handshake, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

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

/**
 * Bytes a peer may still send after passing a cap set with `limitIncomingBytes` before its socket
 * is torn down rather than closed politely.
 */
const BYTE_CAP_GRACE_BYTES = 64 * 1024;

/** OpenSSL and Node error codes of a certificate that did not verify. */
const CERTIFICATE_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME/;

/** `ws` keeps its payload limit in a 32-bit signed integer. */
const MAX_FRAME_BYTES_LIMIT = 2 ** 31 - 1;

/** Intervals of silence, each a third of `idleTimeoutMs`, that make the peer count as dead. */
const SILENT_TICKS_BEFORE_TIMEOUT = 3;

const CLOSE_NORMAL = 1000;
const CLOSE_ABNORMAL = 1006;
const CLOSE_UNSUPPORTED_DATA = 1003;
const CLOSE_MESSAGE_TOO_BIG = 1009;

const SEND_OPTIONS = { binary: true } as const;

/**
 * RFC 6455 wants client frames masked with an unpredictable key so that scripts in a browser
 * cannot craft bytes a caching proxy would misread. A migration stream runs between two agents
 * of ours, never from a browser, so the key is all zero: `ws` then skips the XOR pass and the copy
 * it needs for it, which raises the loopback throughput of 1 MiB frames by about a fifth.
 */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/** Options every WebSocket transport takes, on either end of the connection. */
export interface WebSocketTransportOptions {
  /**
   * Largest incoming frame, in bytes. A bigger one fails the connection with ERR_LIMIT_EXCEEDED on
   * both ends (close code 1009); a bigger outgoing one is refused by `send` before it is written.
   * At most 2^31 - 1.
   * @default DEFAULT_MAX_FRAME_BYTES (16 MiB)
   */
  maxFrameBytes?: number;
  /**
   * Most frames the incoming queue holds before reading stops.
   * @default DEFAULT_MAX_QUEUED_FRAMES (64)
   */
  maxQueuedFrames?: number;
  /**
   * Most bytes the incoming queue holds before reading stops.
   * @default DEFAULT_MAX_QUEUED_BYTES (32 MiB)
   */
  maxQueuedBytes?: number;
  /**
   * Silence from the peer, in milliseconds, after which the connection is destroyed with
   * ERR_TIMEOUT. Any frame, ping or pong counts as a sign of life; a ping goes out every third of
   * this time. A frame counts once it has fully arrived, so the value must exceed the time the
   * link needs to carry `maxFrameBytes`. While this side has stopped reading because its own
   * queue is full, the peer is not held to account. Detection takes between this time and 4/3 of
   * it. 0 turns keepalive off, and so does Infinity or any time whose third is more than a timer
   * holds (2^31-1 ms, about 24.8 days).
   * @default DEFAULT_IDLE_TIMEOUT_MS (30 s)
   */
  idleTimeoutMs?: number;
  /**
   * How long `close()` may take, in milliseconds, counted from the call: flushing frames still
   * buffered, and the peer's answer to the close frame. After it the socket is torn down. A time
   * beyond what a timer holds (2^31-1 ms, about 24.8 days), Infinity included, counts as that.
   * @default DEFAULT_CLOSE_TIMEOUT_MS (10 s)
   */
  closeTimeoutMs?: number;
}

/**
 * PEM material: a path to a PEM file, the PEM text itself (a string starting with `-----BEGIN`),
 * or its bytes.
 */
export type PemSource = string | Uint8Array;

/** TLS of a listener: `wss://` instead of `ws://`. */
export interface TlsListenOptions {
  /** The certificate chain the listener presents, leaf first (PEM). */
  cert: PemSource;
  /** The certificate's private key (PEM, unencrypted). */
  key: PemSource;
}

/** TLS of a client connecting to a `wss://` URL. */
export interface TlsConnectOptions {
  /**
   * Certificate authorities to trust instead of the system's, e.g. the listener's self-signed
   * certificate (PEM).
   * @default the system's CAs
   */
  ca?: PemSource;
  /**
   * Verify the listener's certificate and that it names the host of the URL. Turning this off
   * lets anyone on the path impersonate the listener; it exists for experiments only.
   * @default true
   */
  rejectUnauthorized?: boolean;
  /**
   * Host name to check the certificate against, when it differs from the URL's host.
   * @default the URL's host
   */
  servername?: string;
}

/** Options of {@link connectWebSocket}. */
export interface ConnectWebSocketOptions extends WebSocketTransportOptions {
  /**
   * Deadline for the whole connection attempt, in milliseconds. Infinity, or anything beyond
   * 2^31-1 ms (about 24.8 days), is no deadline.
   * @default DEFAULT_CONNECT_TIMEOUT_MS (10 s)
   */
  connectTimeoutMs?: number;
  /** TLS settings, for `wss://` URLs only. @default system CAs, verification on */
  tls?: TlsConnectOptions;
}

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
}

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
  /** `ws://host:port`, or `wss://host:port` with TLS, ready for {@link connectWebSocket}. */
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

interface ResolvedOptions {
  maxFrameBytes: number;
  maxQueuedFrames: number;
  maxQueuedBytes: number;
  idleTimeoutMs: number;
  closeTimeoutMs: number;
}

interface PendingSend {
  bytes: number;
  settled: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * One migration connection over WebSocket, as {@link connectWebSocket} and
 * {@link listenWebSocket} give it: a {@link Transport} that also tells its incoming queue and can
 * cap what the peer sends. Only those two functions make one, so that the declarations the
 * package ships name nothing of `ws`.
 */
export interface WebSocketTransport extends Transport {
  /** Frames received and not yet taken by `receive()`. */
  readonly queuedFrames: number;

  /** Bytes of the frames received and not yet taken by `receive()`. */
  readonly queuedBytes: number;

  /**
   * True while reading from the network is suspended because the incoming queue is full. Frames
   * already read from the socket still arrive after the pause begins, so the queue can pass its
   * bound by the frames that complete within one socket read (64 KiB).
   */
  readonly readPaused: boolean;

  /** One WebSocket ping and its pong, in milliseconds; `undefined` if none comes within a second. */
  ping(): Promise<number | undefined>;

  /**
   * Sends a close frame (code 1000) behind every frame already handed to `send`, and resolves
   * once the peer answered and the socket closed, or once `closeTimeoutMs` passed and the socket
   * was torn down; sends still unwritten then reject. Frames that arrive during the closing
   * handshake are queued while there is room and dropped after that (a `receive()` that reaches
   * the end then rejects, saying how many were dropped), so a consumer that stopped reading
   * cannot hold the close up. Never rejects. Idempotent.
   */
  close(): Promise<void>;

  /**
   * Caps what the peer may send from now on, counted on the wire as bytes arrive (WebSocket
   * framing included) rather than per frame, until called again with `undefined`. Past the cap
   * the connection fails with ERR_LIMIT_EXCEEDED and is closed with code 1009 (message too big),
   * which the peer reports as ERR_LIMIT_EXCEEDED; a peer that keeps sending after that is cut off.
   * A listener uses it to keep a peer that has not yet said who it is from making it buffer a
   * whole `maxFrameBytes` frame.
   *
   * @param maxBytes The cap, a positive integer, or `undefined` to lift it.
   * @param during What the cap covers, for the error message, e.g. "before its hello".
   * @throws InvalidArgumentError if the transport was made without its socket.
   */
  limitIncomingBytes(maxBytes: number | undefined, during?: string): void;
}

/** The {@link WebSocketTransport} over one open `ws` WebSocket. */
class WsTransport implements WebSocketTransport {
  readonly #ws: WebSocket;
  readonly #options: ResolvedOptions;

  #bufferedBytes = 0;
  #bytesSent = 0;
  #bytesReceived = 0;
  readonly #pendingSends = new Set<PendingSend>();

  readonly #incoming: FrameQueue;
  #readPaused = false;
  /** Frames that arrived after `close()` with the queue full, and were dropped. */
  #discardedFrames = 0;

  #closingLocally = false;
  #closePromise: Promise<void> | undefined;
  #socketClosed = false;
  readonly #socketClosedWaiters: Array<() => void> = [];

  #idleTimer: NodeJS.Timeout | undefined;
  #heardFromPeer = false;
  #silentTicks = 0;

  /** The byte stream under `ws`, watched while `limitIncomingBytes` is in force. */
  readonly #socket: Duplex | undefined;
  #byteCapListener: ((chunk: Buffer) => void) | undefined;

  /**
   * @param ws An open WebSocket.
   * @param options Limits and timeouts of the connection.
   * @param socket The stream `ws` reads from, so that {@link limitIncomingBytes} can count bytes
   *   as they arrive; without it that method refuses.
   */
  constructor(ws: WebSocket, options: WebSocketTransportOptions = {}, socket?: Duplex) {
    if (ws.readyState !== WebSocket.OPEN) {
      throw new InvalidArgumentError(`a WebSocket transport needs an open WebSocket (readyState ${ws.readyState})`);
    }
    this.#ws = ws;
    this.#socket = socket;
    this.#options = resolveOptions(options);
    this.#incoming = new FrameQueue(this.#options.maxQueuedFrames, this.#options.maxQueuedBytes);
    ws.binaryType = 'nodebuffer';
    ws.on('message', this.#onMessage);
    ws.on('ping', this.#onSignOfLife);
    ws.on('pong', this.#onSignOfLife);
    ws.on('error', this.#onError);
    ws.on('close', this.#onClose);
    const tickMs = this.#options.idleTimeoutMs / SILENT_TICKS_BEFORE_TIMEOUT;
    // An interval longer than a timer holds would tick every millisecond and cut the link at once.
    if (tickMs > 0 && isDeadline(tickMs)) {
      this.#idleTimer = setInterval(this.#onIdleTick, tickMs);
      this.#idleTimer.unref();
    }
  }

  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  get bytesSent(): number {
    return this.#bytesSent;
  }

  get bytesReceived(): number {
    return this.#bytesReceived;
  }

  get closed(): boolean {
    return this.#ended || this.#closingLocally;
  }

  /**
   * One WebSocket ping and its pong, in milliseconds; `undefined` if none comes within a second or
   * the connection closes first. It settles either way: its timer keeps the process alive while
   * someone waits on it, and a close ends the wait at once.
   */
  ping(): Promise<number | undefined> {
    if (this.closed || this.#ws.readyState !== WebSocket.OPEN) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const started = performance.now();
      const done = (ms: number | undefined): void => {
        clearTimeout(timer);
        this.#ws.off('pong', onPong);
        this.#ws.off('close', onClose);
        resolve(ms);
      };
      const onPong = (): void => done(performance.now() - started);
      const onClose = (): void => done(undefined);
      const timer = setTimeout(() => done(undefined), PING_TIMEOUT_MS);
      this.#ws.on('pong', onPong);
      this.#ws.on('close', onClose);
      try {
        this.#ws.ping();
      } catch {
        done(undefined);
      }
    });
  }

  get queuedFrames(): number {
    return this.#incoming.frames;
  }

  get queuedBytes(): number {
    return this.#incoming.bytes;
  }

  get readPaused(): boolean {
    return this.#readPaused;
  }

  send(frame: Uint8Array): Promise<void> {
    if (this.#ended || this.#closingLocally) {
      return Promise.reject(this.#unusableError());
    }
    const bytes = frame.byteLength;
    if (bytes > this.#options.maxFrameBytes) {
      return Promise.reject(
        new LimitExceededError(
          `frame of ${bytes} bytes exceeds maxFrameBytes (${this.#options.maxFrameBytes}); split it or raise maxFrameBytes on both ends`,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const entry: PendingSend = { bytes, settled: false, resolve, reject };
      this.#pendingSends.add(entry);
      this.#bufferedBytes += bytes;
      this.#ws.send(frame, SEND_OPTIONS, (err) => {
        if (entry.settled) return;
        entry.settled = true;
        this.#pendingSends.delete(entry);
        this.#bufferedBytes -= bytes;
        if (err) {
          reject(this.#endError ?? new ConnectionClosedError(`frame could not be sent: ${err.message}`, { cause: err }));
        } else {
          this.#bytesSent += bytes;
          resolve();
        }
      });
    });
  }

  receive(): Promise<Uint8Array | undefined> {
    const next = this.#incoming.take();
    this.#maybeResumeReading();
    return next;
  }

  close(): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    this.#closePromise = new Promise<void>((resolve) => {
      if (this.#socketClosed) {
        resolve();
        return;
      }
      this.#socketClosedWaiters.push(resolve);
    });
    if (!this.#ended) {
      this.#closingLocally = true;
      this.#setReadPaused(false);
      this.#ws.close(CLOSE_NORMAL);
    }
    return this.#closePromise;
  }

  destroy(reason?: Error): void {
    this.#fail(reason ?? new ConnectionClosedError('the connection was destroyed by this side'), 'terminate');
  }

  limitIncomingBytes(maxBytes: number | undefined, during = 'on this connection'): void {
    if (this.#byteCapListener) {
      this.#socket?.off('data', this.#byteCapListener);
      this.#byteCapListener = undefined;
    }
    if (maxBytes === undefined) return;
    positiveInteger('maxBytes', maxBytes);
    const socket = this.#socket;
    if (!socket) throw new InvalidArgumentError('limitIncomingBytes needs the transport to know its socket');
    let counted = 0;
    this.#byteCapListener = (chunk: Buffer): void => {
      counted += chunk.length;
      if (counted <= maxBytes) return;
      if (!this.#ended) {
        this.#fail(
          new LimitExceededError(`the peer sent more than ${maxBytes} bytes ${during}, the most this side accepts`),
          'close',
          CLOSE_MESSAGE_TOO_BIG,
          'byte limit exceeded',
        );
      } else if (counted > maxBytes + BYTE_CAP_GRACE_BYTES) {
        this.#ws.terminate();
      }
    };
    // Ahead of `ws`'s own listener, so a chunk that crosses the cap fails the connection before
    // `ws` can complete a frame from it.
    socket.prependListener('data', this.#byteCapListener);
  }

  #onMessage = (data: RawData, isBinary: boolean): void => {
    this.#heardFromPeer = true;
    if (this.#ended) return;
    if (!isBinary) {
      this.#fail(
        new MalformedRecordError('received a text WebSocket message; the migration stream carries binary frames only'),
        'close',
        CLOSE_UNSUPPORTED_DATA,
        'binary frames only',
      );
      return;
    }
    // binaryType 'nodebuffer' makes every binary message one Buffer.
    const frame = data as Buffer;
    this.#bytesReceived += frame.byteLength;
    const incoming = this.#incoming;
    if (!incoming.hasWaiter && this.#closingLocally && incoming.full) {
      this.#discardedFrames++;
      return;
    }
    incoming.push(frame);
    if (!this.#closingLocally && incoming.full) this.#setReadPaused(true);
  };

  #onSignOfLife = (): void => {
    this.#heardFromPeer = true;
  };

  #onIdleTick = (): void => {
    if (this.#heardFromPeer || this.#readPaused) {
      this.#heardFromPeer = false;
      this.#silentTicks = 0;
    } else if (++this.#silentTicks >= SILENT_TICKS_BEFORE_TIMEOUT) {
      this.#fail(
        new TimeoutError(
          `nothing heard from the peer for ${this.#options.idleTimeoutMs} ms (no frame, ping or pong); ` +
            'it may have died or the network may be partitioned; raise idleTimeoutMs if the link is slow',
        ),
        'terminate',
      );
      return;
    }
    // Ping even while this side does not read: the peer then knows it is alive, only slow.
    this.#ws.ping();
  };

  #onError = (err: Error & { code?: unknown }): void => {
    // `ws` reports protocol violations it found in incoming data here, and has already started
    // closing with the matching code; socket errors surface as an abnormal close instead.
    switch (err.code) {
      case 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH':
        this.#fail(
          new LimitExceededError(
            `received a frame larger than maxFrameBytes (${this.#options.maxFrameBytes} bytes); ` +
              'raise maxFrameBytes on this side or make the peer send smaller frames',
          ),
          'none',
        );
        return;
      case 'WS_ERR_TOO_MANY_BUFFERED_PARTS':
        this.#fail(new LimitExceededError(`the peer split a message into too many fragments: ${err.message}`), 'none');
        return;
      default:
        if (typeof err.code === 'string' && err.code.startsWith('WS_ERR_')) {
          this.#fail(new MalformedRecordError(`the peer broke the WebSocket protocol: ${err.message}`, { cause: err }), 'none');
        } else {
          this.#fail(new ConnectionClosedError(`the connection failed: ${err.message}`, { cause: err }), 'terminate');
        }
    }
  };

  #onClose = (code: number, reason: Buffer): void => {
    this.#socketClosed = true;
    this.#stopIdleTimer();
    if (!this.#ended) this.#end(this.#describeClose(code, reason.toString()));
    for (const resolve of this.#socketClosedWaiters.splice(0)) resolve();
  };

  #describeClose(code: number, reason: string): Error | undefined {
    const because = reason ? `: ${reason}` : '';
    if (code === CLOSE_NORMAL) {
      if (this.#discardedFrames === 0) return undefined;
      return new ConnectionClosedError(
        `this side closed while the peer was still sending; ${this.#discardedFrames} frames that did not fit the receive queue were dropped`,
      );
    }
    if (code === CLOSE_MESSAGE_TOO_BIG) {
      return new LimitExceededError(
        `the peer closed the connection with code 1009 (message too big)${because}; a frame exceeded the peer's maxFrameBytes`,
      );
    }
    if (code === CLOSE_ABNORMAL) {
      return new ConnectionClosedError(
        this.#closingLocally
          ? `the peer did not complete the closing handshake within ${this.#options.closeTimeoutMs} ms (close code 1006)`
          : 'the connection to the peer was lost without a close frame (close code 1006); the peer may have exited or the network failed',
      );
    }
    return new ConnectionClosedError(`the peer closed the connection with code ${code}${because}`);
  }

  /**
   * Ends the transport for a reason found on this side, unless it already ended. Queued frames
   * are dropped either way; the peer learns nothing (`terminate`), gets a close frame (`close`),
   * or `ws` already sent one (`none`).
   */
  #fail(error: Error, how: 'terminate' | 'close' | 'none', closeCode?: number, closeReason?: string): void {
    this.#incoming.clear();
    if (!this.#ended) this.#end(error);
    this.#stopIdleTimer();
    if (how === 'terminate') {
      this.#ws.terminate();
    } else if (how === 'close') {
      // Keep reading so the peer's answer to the close frame is seen; messages are ignored now.
      this.#setReadPaused(false);
      this.#ws.close(closeCode, closeReason);
    }
  }

  #end(error: Error | undefined): void {
    this.#incoming.end(error);
    const sendError = error ?? new ConnectionClosedError('the connection closed before the frame was written');
    for (const entry of this.#pendingSends) {
      entry.settled = true;
      this.#bufferedBytes -= entry.bytes;
      entry.reject(sendError);
    }
    this.#pendingSends.clear();
  }

  #unusableError(): Error {
    if (this.#endError) return this.#endError;
    return new ConnectionClosedError(this.#closingLocally ? 'the transport is closing' : 'the peer closed the connection');
  }

  #maybeResumeReading(): void {
    if (this.#readPaused && this.#incoming.belowHalf) this.#setReadPaused(false);
  }

  /** Set once the outcome of the connection is known; no frame is queued after that. */
  get #ended(): boolean {
    return this.#incoming.ended;
  }

  /** Why the connection ended; `undefined` for a clean close. */
  get #endError(): Error | undefined {
    return this.#incoming.endError;
  }

  #setReadPaused(paused: boolean): void {
    if (paused === this.#readPaused) return;
    this.#readPaused = paused;
    if (paused) this.#ws.pause();
    else this.#ws.resume();
  }

  #stopIdleTimer(): void {
    if (this.#idleTimer !== undefined) {
      clearInterval(this.#idleTimer);
      this.#idleTimer = undefined;
    }
  }
}

/**
 * Opens a migration connection to `url` (`ws://host:port`). Rejects with ERR_CONNECT_FAILED when
 * the URL is not a WebSocket URL, the host cannot be reached or refuses, the server answers
 * without upgrading, or `connectTimeoutMs` passes, and with ERR_LIMIT_EXCEEDED when the server
 * answers HTTP 503 (a target agent at its connection limit); no socket is left behind then.
 */
export function connectWebSocket(url: string, options: ConnectWebSocketOptions = {}): Promise<WebSocketTransport> {
  let transportOptions: ResolvedOptions;
  let connectTimeoutMs: number;
  try {
    transportOptions = resolveOptions(options);
    connectTimeoutMs = checkTimeoutMs('connectTimeoutMs', options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  } catch (err) {
    return Promise.reject(err);
  }
  if (options.tls !== undefined && !/^wss:/i.test(url)) {
    return Promise.reject(
      new InvalidArgumentError(`TLS options were given but ${JSON.stringify(url)} is not a wss:// URL; use wss://host:port`),
    );
  }
  return clientTlsOptions(options.tls).then((tls) => openWebSocket(url, transportOptions, connectTimeoutMs, tls));
}

function openWebSocket(
  url: string,
  transportOptions: ResolvedOptions,
  connectTimeoutMs: number,
  tls: ClientTlsSettings,
): Promise<WebSocketTransport> {
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    let socket: Duplex | undefined;
    try {
      ws = new WebSocket(url, { ...tls, ...wsClientOptions(transportOptions) });
    } catch (err) {
      reject(
        new ConnectFailedError(`cannot connect to ${JSON.stringify(url)}: ${describeError(err)}; expected a URL like ws://host:port`, {
          cause: err,
        }),
      );
      return;
    }

    const settle = (error: ConnectFailedError | undefined): void => {
      clearTimeout(timer);
      ws.off('open', onOpen);
      ws.off('error', onError);
      ws.off('upgrade', onUpgrade);
      ws.off('unexpected-response', onUnexpectedResponse);
      if (error) {
        // `ws` may still report the aborted handshake; nobody listens for it any more.
        ws.on('error', ignore);
        ws.terminate();
        reject(error);
        return;
      }
      try {
        resolve(new WsTransport(ws, transportOptions, socket));
      } catch (err) {
        ws.on('error', ignore);
        ws.terminate();
        reject(err);
      }
    };
    const onOpen = (): void => settle(undefined);
    const onUpgrade = (res: http.IncomingMessage): void => {
      socket = res.socket;
    };
    const onError = (err: Error): void => settle(new ConnectFailedError(`could not connect to ${url}: ${connectHint(url, err)}`, { cause: err }));
    const onUnexpectedResponse = (_req: http.ClientRequest, res: http.IncomingMessage): void => {
      const answered = `${url} answered HTTP ${res.statusCode} ${res.statusMessage ?? ''} instead of accepting a WebSocket`;
      // A target at its connection limit is up and will take the migration later: a caller
      // retries it, where a target that cannot be reached is one to give up on or replace.
      settle(
        res.statusCode === 503
          ? new LimitExceededError(`${answered}; the target is at its connection limit: try again once a migration there has finished`)
          : new ConnectFailedError(`${answered}; check that the URL points at a livemig target agent`),
      );
    };
    const timer = isDeadline(connectTimeoutMs)
      ? setTimeout(
          () =>
            settle(
              new ConnectFailedError(
                `timed out after ${connectTimeoutMs} ms connecting to ${url}; check the host, port and network path, or raise connectTimeoutMs`,
              ),
            ),
          connectTimeoutMs,
        )
      : undefined;
    ws.on('open', onOpen);
    ws.on('error', onError);
    ws.on('upgrade', onUpgrade);
    ws.on('unexpected-response', onUnexpectedResponse);
  });
}

/** What went wrong opening a connection to `url`, and what to do about it. */
function connectHint(url: string, err: Error): string {
  const code = (err as { code?: unknown }).code;
  const text = describeError(err);
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the listener's TLS certificate does not name the host of the URL: ${text}; connect by a name or address the certificate lists, or set tls.servername`;
  }
  if (typeof code === 'string' && CERTIFICATE_ERROR.test(code)) {
    return (
      `the listener's TLS certificate was not accepted: ${text} (${code}); trust the certificate of the CA that signed it, ` +
      'or the self-signed certificate itself (tls.ca, --tls-ca PATH)'
    );
  }
  if (code === 'EPROTO' || /wrong version number|packet length too long/i.test(text)) {
    return 'the listener does not speak TLS at that address (the TLS handshake failed); use a ws:// URL, or start the agent with a certificate';
  }
  const plainToTls = /^ws:/i.test(url) && (code === 'ECONNRESET' || /socket hang up/i.test(text));
  return (
    `${text}; check that a livemig target is listening at that address and that the network lets it through` +
    (plainToTls ? ' (an agent started with a TLS certificate listens on wss://)' : '')
  );
}

/** What `ws` passes on to `tls.connect`; its type definitions omit `servername`. */
type ClientTlsSettings = Pick<WebSocket.ClientOptions, 'ca' | 'rejectUnauthorized'> & { servername?: string };

async function clientTlsOptions(tls: TlsConnectOptions | undefined): Promise<ClientTlsSettings> {
  if (tls === undefined) return {};
  const options: ClientTlsSettings = { rejectUnauthorized: tls.rejectUnauthorized ?? true };
  if (tls.ca !== undefined) options.ca = await loadPem(tls.ca, 'the trusted CA certificate (tls.ca)');
  if (tls.servername !== undefined) options.servername = tls.servername;
  return options;
}

/** Reads PEM material given as a path, as PEM text, or as bytes. */
async function loadPem(source: PemSource, what: string): Promise<Buffer> {
  if (source instanceof Uint8Array) return Buffer.from(source.buffer, source.byteOffset, source.length);
  if (typeof source !== 'string' || source === '') {
    throw new InvalidArgumentError(`${what} must be a path to a PEM file, PEM text or PEM bytes`);
  }
  if (source.startsWith('-----BEGIN')) return Buffer.from(source, 'utf8');
  try {
    return await readFile(source);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${what} from ${source}: ${describeError(err)}`);
  }
}

/**
 * Listens for migration connections. `onTransport` runs once per accepted connection, after the
 * handshake; if it throws, that connection is destroyed. Rejects with ERR_CONNECT_FAILED when the
 * address cannot be bound.
 */
export function listenWebSocket(
  options: ListenWebSocketOptions,
  onTransport: (transport: WebSocketTransport, info: RemoteInfo) => void,
): Promise<WebSocketListener> {
  let transportOptions: ResolvedOptions;
  let maxConnections: number;
  let upgradeTimeoutMs: number;
  let port: number;
  const host = options.host ?? DEFAULT_LISTEN_HOST;
  try {
    transportOptions = resolveOptions(options);
    maxConnections = positiveInteger('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
    upgradeTimeoutMs = checkTimeoutMs('upgradeTimeoutMs', options.upgradeTimeoutMs ?? DEFAULT_UPGRADE_TIMEOUT_MS);
    port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new InvalidArgumentError(`port must be an integer from 0 to 65535, got ${port}`);
    }
  } catch (err) {
    return Promise.reject(err);
  }
  return serverTlsOptions(options.tls).then((tls) =>
    startListener(host, port, maxConnections, upgradeTimeoutMs, transportOptions, tls, onTransport),
  );
}

async function serverTlsOptions(tls: TlsListenOptions | undefined): Promise<https.ServerOptions | undefined> {
  if (tls === undefined) return undefined;
  if (typeof tls !== 'object' || tls === null || tls.cert === undefined || tls.key === undefined) {
    throw new InvalidArgumentError('TLS needs both a certificate (tls.cert) and its private key (tls.key)');
  }
  return {
    cert: await loadPem(tls.cert, 'the TLS certificate (tls.cert)'),
    key: await loadPem(tls.key, 'the TLS private key (tls.key)'),
  };
}

function startListener(
  host: string,
  port: number,
  maxConnections: number,
  upgradeTimeoutMs: number,
  transportOptions: ResolvedOptions,
  tls: https.ServerOptions | undefined,
  onTransport: (transport: WebSocketTransport, info: RemoteInfo) => void,
): Promise<WebSocketListener> {
  const refuseHttp = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
    res.end('livemig migration endpoint: connect with a WebSocket client\n');
  };
  let server: http.Server;
  try {
    server = tls
      ? https.createServer({ ...tls, handshakeTimeout: Math.min(upgradeTimeoutMs, MAX_TIMER_MS) }, refuseHttp)
      : http.createServer(refuseHttp);
  } catch (err) {
    return Promise.reject(new InvalidArgumentError(`cannot use the TLS certificate and key: ${describeError(err)}`));
  }
  const tcpBound = maxConnections * TCP_CONNECTIONS_PER_WEBSOCKET;
  if (tls) server.maxConnections = tcpBound;
  const wss = new WebSocketServer(wsServerOptions(transportOptions));
  const sockets = new Set<Socket>();
  const refusedSockets = new WeakSet<Socket>();
  const transports = new Set<WebSocketTransport>();
  let refusedConnections = 0;
  let closing: Promise<void> | undefined;

  server.on('connection', (socket: Socket) => {
    if (!tls && sockets.size >= tcpBound) {
      // Read and drop what the peer sends, so that closing does not reset the connection before
      // the peer has read its answer.
      refusedConnections++;
      refusedSockets.add(socket);
      socket.on('error', ignore);
      socket.resume();
      socket.end(HTTP_503);
      setTimeout(() => socket.destroy(), REFUSED_SOCKET_LINGER_MS).unref();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  // Node's own request timeouts never fire for a socket that does not start a request, so one that
  // says nothing would stay forever: give each its own deadline to upgrade (counted after the TLS
  // handshake, which `handshakeTimeout` bounds).
  const upgradeDeadlines = new WeakMap<Socket, NodeJS.Timeout>();
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    if (refusedSockets.has(socket) || !isDeadline(upgradeTimeoutMs)) return;
    const timer = setTimeout(() => socket.destroy(), upgradeTimeoutMs);
    timer.unref();
    upgradeDeadlines.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  });

  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    if (refusedSockets.has(socket)) return;
    if (closing) {
      socket.destroy();
      return;
    }
    if (transports.size >= maxConnections) {
      refusedConnections++;
      socket.end(HTTP_503);
      return;
    }
    clearTimeout(upgradeDeadlines.get(socket));
    wss.handleUpgrade(req, socket, head, (ws) => {
      const transport = new WsTransport(ws, transportOptions, socket);
      transports.add(transport);
      ws.once('close', () => transports.delete(transport));
      try {
        onTransport(transport, { remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 });
      } catch (err) {
        transport.destroy(asMigrationError(err, 'ERR_CONNECTION_CLOSED'));
      }
    });
  });

  return new Promise((resolve, reject) => {
    const onListenError = (err: Error): void => {
      reject(
        new ConnectFailedError(
          `could not listen on ${formatHost(host)}:${port}: ${describeError(err)}; choose another address or port`,
          { cause: err },
        ),
      );
    };
    server.once('error', onListenError);
    server.listen({ host, port }, () => {
      server.off('error', onListenError);
      // Once listening, the server only reports failures to accept a connection (EMFILE, say);
      // the connections already open are unaffected, so it keeps serving them.
      server.on('error', ignore);
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new ConnectFailedError(`listening on ${formatHost(host)}:${port} gave no TCP address`));
        return;
      }
      const boundHost = address.address;
      const boundPort = address.port;
      resolve({
        host: boundHost,
        port: boundPort,
        url: `${tls ? 'wss' : 'ws'}://${formatHost(boundHost)}:${boundPort}`,
        get connections(): number {
          return transports.size;
        },
        get refusedConnections(): number {
          return refusedConnections;
        },
        close(): Promise<void> {
          closing ??= new Promise<void>((done) => {
            server.close(() => done());
            for (const transport of transports) {
              transport.destroy(new ConnectionClosedError('the listener was closed while this connection was open'));
            }
            // Sockets still in their HTTP exchange would otherwise keep the server open.
            for (const socket of sockets) socket.destroy();
          });
          return closing;
        },
      });
    });
  });
}

/**
 * `closeTimeout` (ws 8.19 and later) bounds the closing handshake; the installed type definitions
 * predate it.
 */
interface CloseTimeoutOption {
  closeTimeout: number;
}

function wsClientOptions(options: ResolvedOptions): WebSocket.ClientOptions & CloseTimeoutOption {
  return {
    perMessageDeflate: false,
    maxPayload: options.maxFrameBytes,
    generateMask: zeroMask,
    followRedirects: false,
    closeTimeout: Math.min(options.closeTimeoutMs, MAX_TIMER_MS),
  };
}

function wsServerOptions(options: ResolvedOptions): WebSocket.ServerOptions & CloseTimeoutOption {
  return {
    noServer: true,
    perMessageDeflate: false,
    maxPayload: options.maxFrameBytes,
    clientTracking: false,
    closeTimeout: Math.min(options.closeTimeoutMs, MAX_TIMER_MS),
  };
}

function resolveOptions(options: WebSocketTransportOptions): ResolvedOptions {
  const maxFrameBytes = positiveInteger('maxFrameBytes', options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
  if (maxFrameBytes > MAX_FRAME_BYTES_LIMIT) {
    throw new InvalidArgumentError(`maxFrameBytes must be at most ${MAX_FRAME_BYTES_LIMIT}, got ${maxFrameBytes}`);
  }
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  if (typeof idleTimeoutMs !== 'number' || !(idleTimeoutMs >= 0)) {
    throw new InvalidArgumentError(`idleTimeoutMs must be 0 or Infinity (off), or a positive number of milliseconds, got ${idleTimeoutMs}`);
  }
  return {
    maxFrameBytes,
    maxQueuedFrames: positiveInteger('maxQueuedFrames', options.maxQueuedFrames ?? DEFAULT_MAX_QUEUED_FRAMES),
    maxQueuedBytes: positiveInteger('maxQueuedBytes', options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES),
    idleTimeoutMs,
    closeTimeoutMs: checkTimeoutMs('closeTimeoutMs', options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS),
  };
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Node reports a refused connection to a name with several addresses as an empty AggregateError. */
function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return err.errors.map(describeError).join('; ');
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (err.message) return err.message;
    if (typeof code === 'string') return code;
  }
  return String(err);
}

function ignore(): void {}
