/**
 * The options every WebSocket transport takes, on either end of the connection, and their checks.
 * The listener and the client connect both resolve them once, before any socket exists.
 */

import { InvalidArgumentError } from '../errors.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/limits.js';
import { checkTimeoutMs, MAX_TIMER_MS } from '../util/deadline.js';
import { DEFAULT_CLOSE_TIMEOUT_MS, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_FRAMES } from './transport.js';

/** Silence from the peer after which the connection counts as dead, in milliseconds. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/** `ws` keeps its payload limit in a 32-bit signed integer. */
const MAX_FRAME_BYTES_LIMIT = 2 ** 31 - 1;

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

/** {@link WebSocketTransportOptions} checked, with every default filled in. */
export interface ResolvedWebSocketOptions {
  maxFrameBytes: number;
  maxQueuedFrames: number;
  maxQueuedBytes: number;
  idleTimeoutMs: number;
  closeTimeoutMs: number;
}

/**
 * `closeTimeout` (ws 8.19 and later) bounds the closing handshake; the installed type definitions
 * predate it.
 */
export interface CloseTimeoutOption {
  closeTimeout: number;
}

/**
 * Checks `options` and fills in the defaults.
 * @throws InvalidArgumentError for a value out of range.
 */
export function resolveWebSocketOptions(options: WebSocketTransportOptions): ResolvedWebSocketOptions {
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

/** The closing-handshake bound handed to `ws`, which keeps it in a timer. */
export function wsCloseTimeout(options: ResolvedWebSocketOptions): CloseTimeoutOption {
  return { closeTimeout: Math.min(options.closeTimeoutMs, MAX_TIMER_MS) };
}

/**
 * Returns `value` if it is a positive safe integer.
 * @throws InvalidArgumentError naming `name` otherwise.
 */
export function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}
