/**
 * Every limit of the migration stream, with its default, in one place. A decoder checks them when
 * a header is decoded and again after decompression; an encoder checks them before sending, so a
 * well-behaved peer never trips the other side's limits.
 */

import { InvalidArgumentError } from '../errors.js';

/** Largest frame (one WebSocket message) either side accepts, in bytes. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** Largest msgpack header of a frame, in bytes. */
export const DEFAULT_MAX_HEADER_BYTES = 512 * 1024;

/** Most data pages in one `pages` record. */
export const DEFAULT_MAX_DATA_PAGES_PER_BATCH = 1024;

/** Most zero pages in one `pages` record. */
export const DEFAULT_MAX_ZERO_PAGES_PER_BATCH = 16384;

/** Largest device-state blob, in bytes: with its header, it fits a frame of the default size. */
export const DEFAULT_MAX_DEVICE_STATE_BYTES = 8 * 1024 * 1024;

/** Largest guest a target agent agrees to allocate, in bytes. */
export const DEFAULT_MAX_GUEST_MEMORY_BYTES = 16 * 1024 * 1024 * 1024;

/** Most vCPUs a domain may announce. */
export const DEFAULT_MAX_VCPUS = 256;

/**
 * Most page channels one migration may open (docs/protocol.md §15). Each is a connection, and a
 * target agent's `maxConnections` (16) counts them too.
 */
export const DEFAULT_MAX_CHANNELS = 8;

/** Limits a decoder or receiver enforces. */
export interface ProtocolLimits {
  /** @default DEFAULT_MAX_FRAME_BYTES */
  maxFrameBytes: number;
  /** @default DEFAULT_MAX_HEADER_BYTES */
  maxHeaderBytes: number;
  /** @default DEFAULT_MAX_DATA_PAGES_PER_BATCH */
  maxDataPagesPerBatch: number;
  /** @default DEFAULT_MAX_ZERO_PAGES_PER_BATCH */
  maxZeroPagesPerBatch: number;
  /** @default DEFAULT_MAX_DEVICE_STATE_BYTES */
  maxDeviceStateBytes: number;
  /** @default DEFAULT_MAX_GUEST_MEMORY_BYTES */
  maxGuestMemoryBytes: number;
  /** @default DEFAULT_MAX_VCPUS */
  maxVcpus: number;
  /** @default DEFAULT_MAX_CHANNELS */
  maxChannels: number;
}

/** The default limits. */
export const DEFAULT_LIMITS: Readonly<ProtocolLimits> = Object.freeze({
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  maxHeaderBytes: DEFAULT_MAX_HEADER_BYTES,
  maxDataPagesPerBatch: DEFAULT_MAX_DATA_PAGES_PER_BATCH,
  maxZeroPagesPerBatch: DEFAULT_MAX_ZERO_PAGES_PER_BATCH,
  maxDeviceStateBytes: DEFAULT_MAX_DEVICE_STATE_BYTES,
  maxGuestMemoryBytes: DEFAULT_MAX_GUEST_MEMORY_BYTES,
  maxVcpus: DEFAULT_MAX_VCPUS,
  maxChannels: DEFAULT_MAX_CHANNELS,
});

/** Limits already checked and completed, so that passing them on costs nothing. */
const resolved = new WeakSet<object>([DEFAULT_LIMITS]);

/**
 * Defaults overlaid with the caller's choices; a choice left `undefined` keeps its default.
 *
 * @throws InvalidArgumentError if a limit is unknown, or not a positive whole number: a limit
 *   that is `NaN` would silently switch its check off.
 */
export function resolveLimits(partial?: Partial<ProtocolLimits>): Readonly<ProtocolLimits> {
  if (partial === undefined) return DEFAULT_LIMITS;
  if (resolved.has(partial)) return partial as ProtocolLimits;
  const limits: ProtocolLimits = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(partial)) {
    if (!(key in DEFAULT_LIMITS)) {
      throw new InvalidArgumentError(`unknown protocol limit "${key}"; the limits are ${Object.keys(DEFAULT_LIMITS).join(', ')}`);
    }
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new InvalidArgumentError(`protocol limit ${key} must be a whole number above 0, got ${String(value)}`);
    }
    limits[key as keyof ProtocolLimits] = value;
  }
  Object.freeze(limits);
  resolved.add(limits);
  return limits;
}
