/**
 * The records of the livemig migration stream, version 2. `docs/protocol.md` is the normative
 * description; this file is its typed mirror. Every record travels as one frame (one WebSocket
 * binary message):
 *
 *     u32 little-endian header length | msgpack header (a map) | payload bytes (may be empty)
 *
 * Only `pages`, `device-state` and inspecting `status` records carry a payload. Page numbers
 * travel as little-endian u32 arrays packed into byte strings (msgpack bin), never as typed
 * arrays, because msgpackr's default encoding of a Uint32Array truncates its elements.
 */

import type { BatchCodec, PageCodec } from './page-codecs.js';

export type { BatchCodec, PageCodec } from './page-codecs.js';

/** The protocol version every livemig source and target speaks: one connection per migration. */
export const PROTOCOL_VERSION = 2;

/**
 * The version that adds page channels (docs/protocol.md §15): version 2 plus `channel-hello`,
 * `channel-ready` and the `channels` field of `round-end`. A source offers it only when it wants
 * more than one channel, so a migration over one connection looks exactly like version 2.
 */
export const CHANNELS_PROTOCOL_VERSION = 3;

/**
 * Version 2 plus the page encoding `delta` (docs/protocol.md §5): pages sent again may go as
 * their changes against what the target holds. A source offers it only when it may send deltas.
 */
export const DELTA_PROTOCOL_VERSION = 4;

/** Version 3 plus the page encoding `delta`: page channels and deltas both. */
export const CHANNELS_DELTA_PROTOCOL_VERSION = 5;

/** Whether a connection of `version` has page channels (versions 3 and 5). */
export function versionHasChannels(version: number): boolean {
  return version === CHANNELS_PROTOCOL_VERSION || version === CHANNELS_DELTA_PROTOCOL_VERSION;
}

/** Whether a connection of `version` may carry `delta` batches (versions 4 and 5). */
export function versionHasDelta(version: number): boolean {
  return version === DELTA_PROTOCOL_VERSION || version === CHANNELS_DELTA_PROTOCOL_VERSION;
}

export { PAGE_SIZE_BYTES } from './page-size.js';

/**
 * Everything a target needs to build an empty domain of the same shape: the `domain` field of a
 * `hello` record (docs/protocol.md §4), so it must be plain data (numbers, strings, booleans,
 * arrays, maps).
 */
export interface DomainDescriptor {
  /** Backend kind that can rebuild this domain on a target, e.g. `"sim"`. */
  kind: string;
  /** Human-readable domain name, for logs and reports. */
  name: string;
  /** Guest memory size in bytes; a whole number of pages. */
  memoryBytes: number;
  /** Page size in bytes. Always {@link PAGE_SIZE_BYTES} in protocol version 2. */
  pageSize: number;
  /** Number of virtual CPUs. */
  vcpus: number;
  /** Backend-specific configuration the target backend needs; opaque to the engine. */
  config: Record<string, unknown>;
}

/**
 * Client -> agent, first record of a connection that authenticates (docs/protocol.md, section
 * "Authentication"): a fresh random nonce from the client.
 */
export interface AuthHelloRecord {
  type: 'auth-hello';
  /** `AUTH_NONCE_BYTES` random bytes, new for every connection. */
  nonce: Uint8Array;
}

/** Agent -> client, answering `auth-hello` when the agent holds a pool key: its own fresh nonce. */
export interface AuthChallengeRecord {
  type: 'auth-challenge';
  /** `AUTH_NONCE_BYTES` random bytes, new for every connection. */
  nonce: Uint8Array;
}

/** Client -> agent: proof that the client holds the pool key, bound to both nonces. */
export interface AuthProofRecord {
  type: 'auth-proof';
  /** HMAC-SHA256 under the pool key of the client label and both nonces (`AUTH_PROOF_BYTES`). */
  proof: Uint8Array;
}

/**
 * Agent -> client: the client may go on with `hello` or `query`. After an `auth-proof` it carries
 * the agent's own proof; an agent without a pool key answers `auth-hello` with it directly and no
 * proof, and a client that holds a key refuses such an agent.
 */
export interface AuthOkRecord {
  type: 'auth-ok';
  /** HMAC-SHA256 under the pool key of the agent label and both nonces; absent from an agent without a key. */
  proof?: Uint8Array;
}

/** Source -> target, first record: who is coming, and how the stream will be encoded. */
export interface HelloRecord {
  type: 'hello';
  /** Protocol versions the source speaks, highest first. */
  versions: number[];
  /** Unique id of this migration attempt (UUID). */
  migrationId: string;
  /** Shape of the domain to build on the target. */
  domain: DomainDescriptor;
  /** Codec the source will use for page payloads. */
  codec: PageCodec;
}

/**
 * Source -> target, optional (always sent with `optional: true`), right after `ready`: who the
 * guest is in its pool. A host keeps the guest under this id and priority once it runs there,
 * so that a guest keeps both across migrations; a target that does not know the record skips it.
 */
export interface GuestRecord {
  type: 'guest';
  /** The guest's pool-wide id (a UUID), kept across migrations. */
  id: string;
  /** Its evacuation priority: higher moves first. */
  priority: number;
}

/** Target -> source: the empty domain is allocated and the target waits for pages. */
export interface ReadyRecord {
  type: 'ready';
  /** The version chosen for the rest of the stream. */
  version: number;
  migrationId: string;
}

/**
 * Source -> target: a batch of pages from one round. `pages` lists the data pages whose contents
 * make up the payload, in order; `zeros` lists pages to fill with zeros, which have no payload.
 */
export interface PagesRecord {
  type: 'pages';
  /** Round the batch belongs to: 0 is the full pass, the stop-and-copy round is the last. */
  round: number;
  /** Data page numbers, u32 little-endian, 4 bytes each. */
  pages: Uint8Array;
  /** Zero page numbers, u32 little-endian, 4 bytes each. */
  zeros: Uint8Array;
  /** Codec of the payload, or the page encoding `delta` (versions 4 and 5 only). */
  codec: BatchCodec;
  /** Length of the payload after decompression: `pages.length / 4 * pageSize`. */
  rawLength: number;
  /** XXH64 of the XXH32 hashes of its data pages (`batchChecksum`), seeded with the batch's sequence number, as 16 lowercase hex digits. */
  checksum: string;
  /** Sequence number of this batch in the stream, starting at 0; one more than the previous. */
  seq: number;
  /** The payload bytes (the frame's tail); filled by the decoder, ignored by the encoder. */
  payload: Uint8Array;
}

/** Source -> target: the end of a pre-copy round. */
export interface RoundEndRecord {
  type: 'round-end';
  round: number;
  /** Pages sent in the round (data and zero). */
  pages: number;
  /**
   * Version 3 with page channels only, where it is required: for each channel, in channel order,
   * the batches sent on it so far (its next `seq`). The target acknowledges the round once every
   * channel has written that many.
   */
  channels?: number[];
}

/**
 * Source -> target, first record after authentication on an extra connection of a version 3
 * migration: this connection is page channel `channel` of `of` for migration `migrationId`.
 */
export interface ChannelHelloRecord {
  type: 'channel-hello';
  migrationId: string;
  /** Index of the channel, from 0 to `of - 1`. */
  channel: number;
  /** How many page channels the migration has, from 2 to `maxChannels`. */
  of: number;
}

/** Target -> source on a page channel: the channel is joined to its migration; batches may come. */
export interface ChannelReadyRecord {
  type: 'channel-ready';
  /** Echo of `channel-hello.channel`. */
  channel: number;
}

/**
 * Source -> target, optional (always sent with `optional: true`): the source expects to pause the
 * guest once the round this record closes is acknowledged. It comes after the round's last batch
 * and before its `round-end`. A target may use the moment to get ready, before it acknowledges the
 * round (the engine collects garbage then, so that no collection lands in the pause); a target
 * that does not know the record skips it. Only a hint: the source may still go on iterating.
 */
export interface PauseSoonRecord {
  type: 'pause-soon';
}

/**
 * Target -> source, optional (always sent with `optional: true`): how long the target spent
 * getting ready after `pause-soon` (collecting garbage), before the acknowledgement that follows.
 * The source leaves that time out of the round's duration when it predicts the pause.
 */
export interface CollectedRecord {
  type: 'collected';
  /** Milliseconds on the target's clock; finite, at least 0. */
  ms: number;
}

/**
 * Target -> source, answering each `round-end` of a pre-copy round: every batch up to the end of
 * that round has been checked and written. The source waits for it before deciding on the next
 * round, so nothing sent earlier still waits in buffers when it pauses the guest, and the round's
 * duration measures what the target can absorb, not what the sockets can buffer.
 */
export interface RoundAckRecord {
  type: 'round-ack';
  round: number;
  /** Batches written so far (the next expected `seq`). */
  batches: number;
}

/** Source -> target, while the guest is paused: vCPU and device state, opaque to the engine. */
export interface DeviceStateRecord {
  type: 'device-state';
  /**
   * Backend-specific blob from `SourceDomain.saveState`, at most `maxDeviceStateBytes`. It travels
   * as the frame's payload (the header holds only the type), so no header limit bounds it.
   */
  state: Uint8Array;
}

/** Source -> target: everything is sent; here is the digest of what the target should hold. */
export interface CompleteRecord {
  type: 'complete';
  /** Total batches sent (the next `seq`), so the target can tell that none went missing. */
  batches: number;
  /** Memory digest over what was sent (see page-digest.ts), 16 lowercase hex digits. */
  digest: string;
}

/** Target -> source: the target holds all memory and state, and its digest matches. */
export interface PreparedRecord {
  type: 'prepared';
  /** The target's digest of the memory it holds. */
  digest: string;
}

/** Source -> target: resume the guest. After this the source never resumes its copy on its own. */
export interface GoRecord {
  type: 'go';
}

/** Target -> source: the guest runs on the target. */
export interface ResumedRecord {
  type: 'resumed';
  /** Milliseconds the target spent between receiving `go` and the vCPUs running. */
  resumeMs: number;
  /** The target's memory digest at resume. */
  digest: string;
}

/** Either way, any time: the sender gives up; the receiver must not resume anything on its behalf. */
export interface AbortRecord {
  type: 'abort';
  /** Stable error code, e.g. `ERR_CHECKSUM_MISMATCH`. */
  code: string;
  /** Human-readable reason. */
  message: string;
}

/** Anyone -> target agent, on a fresh connection: what became of a migration? */
export interface QueryRecord {
  type: 'query';
  migrationId: string;
  /** When true, the agent also pauses the guest briefly and reports its state and digest. */
  inspect: boolean;
}

/** Target agent -> asker: the answer to a query. */
export interface StatusRecord {
  type: 'status';
  migrationId: string;
  /** `unknown` if the agent never heard of the id (or forgot it). */
  state: 'unknown' | 'receiving' | 'prepared' | 'running' | 'discarded';
  /** With `inspect`: the digest of guest memory at the moment of inspection. */
  digest?: string;
  /**
   * With `inspect`: the backend's state blob at the moment of inspection. Present exactly when
   * `digest` is; it travels as the frame's payload.
   */
  domainState?: Uint8Array;
}

/**
 * Any direction: a record of a type this version does not know, which its sender marked
 * optional (`optional: true` in its header). The decoder returns this in its place instead of
 * failing, and receivers skip it in every state that is not final, so a newer peer can add
 * records that older ones may ignore. An unknown record without the mark is malformed.
 */
export interface IgnoredRecord {
  type: 'ignored';
  /** The `type` the sender gave it. */
  recordType: string;
}

/** Every record of version 2, plus the stand-in for an unknown optional one. */
export type MigrationRecord =
  | IgnoredRecord
  | AuthHelloRecord
  | AuthChallengeRecord
  | AuthProofRecord
  | AuthOkRecord
  | HelloRecord
  | GuestRecord
  | ReadyRecord
  | PagesRecord
  | RoundEndRecord
  | ChannelHelloRecord
  | ChannelReadyRecord
  | PauseSoonRecord
  | CollectedRecord
  | RoundAckRecord
  | DeviceStateRecord
  | CompleteRecord
  | PreparedRecord
  | GoRecord
  | ResumedRecord
  | AbortRecord
  | QueryRecord
  | StatusRecord;

/** The `type` strings of every record. */
export type RecordType = MigrationRecord['type'];
