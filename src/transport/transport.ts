/**
 * The engine's view of a connection: ordered, reliable frames with backpressure in both
 * directions. A WebSocket implementation carries real migrations; an in-memory pair serves unit
 * tests. Only this folder imports `ws`.
 */

/** A bidirectional, ordered, reliable stream of binary frames. */
export interface Transport {
  /**
   * Sends one frame. Resolves once the frame has been handed to the operating system, after
   * which the caller may reuse `frame`'s memory; until then the caller must not touch it.
   * Rejects with ERR_CONNECTION_CLOSED if the connection is gone. Callers bound how many sends
   * they keep unresolved; `bufferedBytes` tells how much is queued.
   */
  send(frame: Uint8Array): Promise<void>;

  /** Bytes handed to `send` whose promises have not resolved yet. */
  readonly bufferedBytes: number;

  /**
   * The next incoming frame, in order; `undefined` once the peer closed cleanly and every frame
   * was read. Rejects with ERR_CONNECTION_CLOSED if the connection was cut. Incoming frames wait
   * in a bounded queue: when it fills, the transport stops reading from the network.
   */
  receive(): Promise<Uint8Array | undefined>;

  /** Closes cleanly after queued frames are sent. Idempotent. */
  close(): Promise<void>;

  /** Tears the connection down at once; pending sends and receives reject. Idempotent. */
  destroy(reason?: Error): void;

  /** True once closed or destroyed, or once the peer went away. */
  readonly closed: boolean;

  /** Frame bytes sent (payload of WebSocket messages, excluding WebSocket framing). */
  readonly bytesSent: number;

  /** Frame bytes received. */
  readonly bytesReceived: number;
}
