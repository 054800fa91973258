/**
 * One migration connection over a WebSocket (RFC 6455), built on `ws`. Every frame is one binary
 * message. Reading stops when the incoming queue is full, so a slow consumer pushes back through
 * TCP flow control to the sender, whose `send` promises then stay unresolved. A ping every third
 * of `idleTimeoutMs` keeps the connection alive and finds a dead peer.
 *
 * The connection is opened by `connectWebSocket` (ws-connect.ts) or accepted by `listenWebSocket`
 * (ws-listener.ts); over `wss://` the same runs on TLS.
 */

import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import {
  ConnectionClosedError,
  InvalidArgumentError,
  LimitExceededError,
  MalformedRecordError,
  TimeoutError,
} from '../errors.js';
import { isDeadline } from '../util/deadline.js';
import type { FrameLanding, Transport } from './transport.js';
import { FrameQueue } from './frame-queue.js';
import { landPayloads } from './ws-payload-landing.js';
import {
  positiveInteger,
  resolveWebSocketOptions,
  type ResolvedWebSocketOptions,
  type WebSocketTransportOptions,
} from './ws-options.js';

/** How long `ping()` waits for its pong, in milliseconds. */
const PING_TIMEOUT_MS = 1000;

/**
 * Bytes a peer may still send after passing a cap set with `limitIncomingBytes` before its socket
 * is torn down rather than closed politely.
 */
const BYTE_CAP_GRACE_BYTES = 64 * 1024;

/** Intervals of silence, each a third of `idleTimeoutMs`, that make the peer count as dead. */
const SILENT_TICKS_BEFORE_TIMEOUT = 3;

const CLOSE_NORMAL = 1000;
const CLOSE_ABNORMAL = 1006;
const CLOSE_UNSUPPORTED_DATA = 1003;
const CLOSE_MESSAGE_TOO_BIG = 1009;

const SEND_OPTIONS = { binary: true } as const;

interface PendingSend {
  bytes: number;
  settled: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * One migration connection over WebSocket, as `connectWebSocket` and `listenWebSocket` give it: a
 * {@link Transport} that also tells its incoming queue and can cap what the peer sends. Only those
 * two functions make one, so that the declarations the package ships name nothing of `ws`.
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

  /**
   * One WebSocket ping and its pong, in milliseconds; `undefined` if none comes within a second or
   * the connection closes first.
   */
  ping(): Promise<number | undefined>;

  /**
   * Caps what the peer may send from now on, counted on the wire as bytes arrive (WebSocket
   * framing included) rather than per frame, until called again with `undefined`. Past the cap
   * the connection fails with ERR_LIMIT_EXCEEDED and is closed with code 1009 (message too big).
   *
   * @param maxBytes The cap, a positive integer, or `undefined` to lift it.
   * @param during What the cap covers, for the error message, e.g. "before its hello".
   */
  limitIncomingBytes(maxBytes: number | undefined, during?: string): void;
}

/**
 * The {@link WebSocketTransport} over one open `ws` WebSocket, for `ws-connect.ts` and
 * `ws-listener.ts` only (the package's declarations leave it out).
 *
 * @param ws An open WebSocket.
 * @param options Limits and timeouts of the connection.
 * @param socket The stream `ws` reads from, so that `limitIncomingBytes` can count bytes as they
 *   arrive; without it that method refuses.
 * @internal
 */
export function wrapWebSocket(ws: WebSocket, options: WebSocketTransportOptions = {}, socket?: Duplex): WebSocketTransport {
  return new WsTransport(ws, options, socket);
}

class WsTransport implements WebSocketTransport {
  readonly #ws: WebSocket;
  readonly #options: ResolvedWebSocketOptions;

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

  /** Where large frames are assembled, if the consumer gave buffers for them. */
  #landing: FrameLanding | undefined;
  #landingHooked = false;

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
    this.#options = resolveWebSocketOptions(options);
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

  /** Frames received and not yet taken by `receive()`. */
  get queuedFrames(): number {
    return this.#incoming.frames;
  }

  /** Bytes of the frames received and not yet taken by `receive()`. */
  get queuedBytes(): number {
    return this.#incoming.bytes;
  }

  /**
   * True while reading from the network is suspended because the incoming queue is full. Frames
   * already read from the socket still arrive after the pause begins, so the queue can pass its
   * bound by the frames that complete within one socket read (64 KiB).
   */
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

  /**
   * Sends a close frame (code 1000) behind every frame already handed to `send`, and resolves
   * once the peer answered and the socket closed, or once `closeTimeoutMs` passed and the socket
   * was torn down; sends still unwritten then reject. Frames that arrive during the closing
   * handshake are queued while there is room and dropped after that (a `receive()` that reaches
   * the end then rejects, saying how many were dropped), so a consumer that stopped reading
   * cannot hold the close up. Never rejects. Idempotent.
   */
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

  /**
   * Large frames are assembled in `landing`'s buffers from now on (`undefined`: in the
   * transport's own again). Frames already queued keep theirs.
   */
  landFramesIn(landing: FrameLanding | undefined): void {
    this.#landing = landing;
    if (landing === undefined || this.#landingHooked) return;
    this.#landingHooked = landPayloads(
      this.#ws,
      () => this.#landing?.minBytes ?? Infinity,
      (bytes) => (this.#ended ? undefined : this.#landing?.claim(bytes)),
    );
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
