/**
 * The engine's view of a connection: ordered, reliable frames with backpressure in both
 * directions. A WebSocket implementation carries real migrations; an in-memory pair serves unit
 * tests. Only this folder imports `ws`.
 */

/** Most frames an incoming queue holds before the transport stops reading. */
export const DEFAULT_MAX_QUEUED_FRAMES = 64;

/**
 * Most bytes an incoming queue holds before the transport stops reading. Big enough that the
 * receiver always has batches to work on while the socket refills (a 4 MiB queue made a target
 * take about 40% longer to absorb 1 GiB here, and spend more time in the kernel); bounded so a
 * slow receiver stops its sender. It does not stretch a pause: the source waits for each round's
 * acknowledgement, so the queue is empty when the guest is paused.
 */
export const DEFAULT_MAX_QUEUED_BYTES = 32 * 1024 * 1024;

/** How long `close()` waits for the peer to finish the closing handshake, in milliseconds. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

/** A bidirectional, ordered, reliable stream of binary frames. */
export interface Transport {
  /**
   * Sends one frame. Resolves once the frame has been handed to the operating system, after
   * which the caller may reuse `frame`'s memory; until then the caller must not touch it.
   * Rejects with ERR_CONNECTION_CLOSED if the connection is gone, or with the error that ended it
   * (ERR_TIMEOUT, ERR_LIMIT_EXCEEDED, the reason given to `destroy`). A send never fails because
   * the peer is slow: it stays unresolved until the peer reads, so callers bound how many sends
   * they keep unresolved; `bufferedBytes` tells how much is queued.
   */
  send(frame: Uint8Array): Promise<void>;

  /** Bytes handed to `send` whose promises have not resolved yet. */
  readonly bufferedBytes: number;

  /**
   * The next incoming frame, in order; `undefined` once the peer closed cleanly and every frame
   * was read. Rejects with ERR_CONNECTION_CLOSED if the connection was cut, or with the error that
   * ended it. When the peer ends the connection, every frame that already arrived is returned
   * before the end is reported, so a final record (an abort with its reason) is never lost; when
   * this side fails or is destroyed, queued frames are dropped and the rejection comes at once.
   * Incoming frames wait in a bounded queue: when it fills, the transport stops reading from the
   * network until the consumer has drained it to half.
   */
  receive(): Promise<Uint8Array | undefined>;

  /**
   * Measures one round trip to the peer below the record layer (a WebSocket ping), in
   * milliseconds; `undefined` if the connection is gone or no answer came within a second.
   * Meant for a quiet link: behind queued frames it measures the queue too.
   */
  ping(): Promise<number | undefined>;

  /**
   * Closes cleanly after queued frames are sent: the peer reads every one of them, then
   * `undefined`. Resolves once closed, or once the implementation's close timeout passed and the
   * connection was torn down instead (sends not yet written then reject). Never rejects.
   * Idempotent.
   */
  close(): Promise<void>;

  /** Tears the connection down at once; pending sends and receives reject. Idempotent. */
  destroy(reason?: Error): void;

  /** True once closed or destroyed, or once the peer went away. */
  readonly closed: boolean;

  /** Frame bytes sent (payload of WebSocket messages, excluding WebSocket framing). */
  readonly bytesSent: number;

  /** Frame bytes received. */
  readonly bytesReceived: number;

  /**
   * Asks the agent at the other end, over a new connection, what became of a migration
   * (`receiving`, `prepared`, `running`, `discarded` or `unknown`). Set by `connectToAgent`,
   * which knows how to reach and authenticate to that agent again; `migrate()` asks it after a
   * link failure past "go" unless given its own `resolveOutcome`. Absent on a transport that
   * cannot reach its peer again.
   */
  resolveOutcome?: (migrationId: string) => Promise<'unknown' | 'receiving' | 'prepared' | 'running' | 'discarded'>;

  /**
   * Optional capability of transports that read from the network: caps what the peer may send
   * from now on, counted in bytes as they arrive (framing included) rather than per frame, until
   * called again with `undefined`. Past the cap the connection fails with ERR_LIMIT_EXCEEDED. A
   * server calls it before the peer has said who it is, so that a stranger cannot make it buffer
   * a whole frame of the largest size; where it is missing (the in-memory pair, whose frames
   * come from this process), the frame and queue limits are the only bound.
   *
   * @param maxBytes The cap, a positive integer, or `undefined` to lift it.
   * @param during What the cap covers, for the error message, e.g. "before its hello".
   */
  limitIncomingBytes?(maxBytes: number | undefined, during?: string): void;

  /**
   * Optional capability: assemble large incoming frames in buffers the consumer provides (see
   * {@link FrameLanding}) from now on, or in the transport's own again with `undefined`. Where it
   * is missing, or a landing declines a frame, `receive()` returns a buffer of the transport's.
   */
  landFramesIn?(landing: FrameLanding | undefined): void;
}

/**
 * Buffers of a transport's consumer that large incoming frames are assembled in, so that a frame
 * lands where the consumer works on it (a page batch in the page hasher's memory) instead of in
 * a buffer the transport allocates, the consumer copies once more, and the collector then frees.
 */
export interface FrameLanding {
  /** Frames smaller than this, in bytes, are never offered. */
  readonly minBytes: number;

  /**
   * A buffer of exactly `bytes` bytes for the frame completing now, which `receive()` then
   * returns as is (a frame it ends up dropping is never returned); or `undefined`, and the
   * transport uses a buffer of its own. Called in the order frames arrive, synchronously as the
   * frame is read. The consumer must leave the buffer alone until it has received that frame and
   * finished with it; it tells when that is by its own bookkeeping, which the transport does not
   * see.
   */
  claim(bytes: number): Uint8Array | undefined;
}
