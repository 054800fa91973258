/**
 * Which record is legal when, for both ends of a migration connection (`docs/protocol.md`,
 * "Receiver states"). Each side keeps its state and passes every record it receives, and the
 * few things it sends that change what it may receive next, through one transition function.
 * Anything the table does not list is an `UnexpectedRecordError`; `abort` is listed in every
 * state that is not final. A third, short table covers a client (source or asker) while it
 * authenticates to an agent, before its `hello` or `query`.
 *
 * The tables hold no I/O and no timing: checking digests, allocating domains and sending the
 * replies are the engine's job. A state with no legal records is final.
 */

import { InvalidArgumentError, UnexpectedRecordError } from '../errors.js';
import type { RecordType } from './records.js';

/** States of the target's side of a connection. */
export type ReceiverState =
  /**
   * First state of an agent that holds a pool key: only `auth-hello` may open the connection;
   * the agent answers it with `auth-challenge`.
   */
  | 'await-auth'
  /** `auth-challenge` is sent; the agent waits for the client's `auth-proof`. */
  | 'await-proof'
  /**
   * First state of an agent without a pool key: a migration or a question may start at once, or
   * the client may ask to authenticate (`auth-hello`), which the agent answers with `auth-ok`
   * without a proof.
   */
  | 'await-hello-or-auth'
  /**
   * Ready for the connection's purpose: a migration (`hello`) or a question (`query`) may follow.
   * Reached once the client proved the pool key, or at once on an agent without one.
   */
  | 'await-hello'
  /** Pre-copy rounds and the last pages of the paused guest arrive. */
  | 'receiving'
  /** The device state is in; only `complete` may follow. */
  | 'state-received'
  /** `complete` is in; the target checks the digest and answers `prepared` (or `abort`). */
  | 'complete-received'
  /** `prepared` is sent; the target waits for `go`. */
  | 'prepared'
  /** `go` is in; the target resumes the guest and answers `resumed`. Final. */
  | 'resumed'
  /** Either side aborted. Final. */
  | 'aborted'
  /** The connection carried a `query`; the target answers `status`. Final. */
  | 'answered'
  /**
   * The connection is a page channel of a version 3 migration (`channel-hello`): only batches
   * come on it. It ends when the source closes it, or with its migration.
   */
  | 'channel';

/**
 * What moves the target's state: a record it received, or `sent-prepared`, the target's own
 * `prepared` record going out after its digest matched.
 */
export type ReceiverEvent = RecordType | 'sent-prepared';

/** States of the source's side of a connection. */
export type SourceState =
  /** `hello` is sent; the source waits for `ready`. */
  | 'hello-sent'
  /**
   * Pages, round ends and the device state go out; what may come in is a round's `round-ack`,
   * the `collected` that may precede it after `pause-soon`, or an `abort`.
   */
  | 'streaming'
  /** `complete` is sent; the source waits for `prepared`. */
  | 'complete-sent'
  /** `prepared` is in; the source is about to send `go`. */
  | 'prepared-received'
  /** `go` is sent; the source waits for `resumed`. */
  | 'go-sent'
  /** `resumed` is in: the guest runs on the target. Final. */
  | 'done'
  /** Either side aborted. Final. */
  | 'aborted';

/**
 * What moves the source's state: a record it received, or one of its own records going out:
 * `sent-complete` (after the device state, with the digest) and `sent-go`.
 */
export type SourceEvent = RecordType | 'sent-complete' | 'sent-go';

type Table<S extends string, E extends string> = Readonly<Record<S, Readonly<Partial<Record<E, S>>>>>;

const RECEIVER_TABLE: Table<ReceiverState, ReceiverEvent> = {
  'await-auth': { 'auth-hello': 'await-proof', abort: 'aborted' },
  // The agent checks the proof before it reads anything else, and aborts on a wrong one.
  'await-proof': { 'auth-proof': 'await-hello', abort: 'aborted' },
  'await-hello-or-auth': { 'auth-hello': 'await-hello', hello: 'receiving', query: 'answered', 'channel-hello': 'channel', abort: 'aborted' },
  'await-hello': { hello: 'receiving', query: 'answered', 'channel-hello': 'channel', abort: 'aborted' },
  receiving: { guest: 'receiving', pages: 'receiving', 'pause-soon': 'receiving', 'round-end': 'receiving', 'device-state': 'state-received', abort: 'aborted' },
  'state-received': { complete: 'complete-received', abort: 'aborted' },
  'complete-received': { 'sent-prepared': 'prepared', abort: 'aborted' },
  prepared: { go: 'resumed', abort: 'aborted' },
  resumed: {},
  aborted: {},
  answered: {},
  channel: { pages: 'channel', abort: 'aborted' },
};

const SOURCE_TABLE: Table<SourceState, SourceEvent> = {
  'hello-sent': { ready: 'streaming', abort: 'aborted' },
  streaming: { collected: 'streaming', 'round-ack': 'streaming', 'sent-complete': 'complete-sent', abort: 'aborted' },
  'complete-sent': { 'round-ack': 'complete-sent', prepared: 'prepared-received', abort: 'aborted' },
  'prepared-received': { 'sent-go': 'go-sent', abort: 'aborted' },
  'go-sent': { resumed: 'done', abort: 'aborted' },
  done: {},
  aborted: {},
};

/** States of a client (a source or an asker) authenticating to an agent, before its `hello` or `query`. */
export type ClientAuthState =
  /** `auth-hello` is sent; the agent answers with a challenge, or at once with `auth-ok` if it holds no key. */
  | 'auth-hello-sent'
  /** The challenge is answered with `auth-proof`; the agent answers with `auth-ok` and its own proof. */
  | 'auth-proof-sent'
  /** The exchange is over; `hello` or `query` may go out. Final. */
  | 'authenticated'
  /** Either side aborted. Final. */
  | 'aborted';

const CLIENT_AUTH_TABLE: Table<ClientAuthState, RecordType> = {
  // The client answers a challenge with its proof at once, so receiving one means the proof is sent.
  'auth-hello-sent': { 'auth-challenge': 'auth-proof-sent', 'auth-ok': 'authenticated', abort: 'aborted' },
  'auth-proof-sent': { 'auth-ok': 'authenticated', abort: 'aborted' },
  authenticated: {},
  aborted: {},
};

/** States of the source's side of a page channel (docs/protocol.md §15). */
export type SourceChannelState =
  /** `channel-hello` is sent; the source waits for `channel-ready`. */
  | 'channel-hello-sent'
  /** Batches go out; nothing but an `abort` may come in. */
  | 'channel-open'
  /** Either side aborted. Final. */
  | 'aborted';

const SOURCE_CHANNEL_TABLE: Table<SourceChannelState, RecordType> = {
  'channel-hello-sent': { 'channel-ready': 'channel-open', abort: 'aborted' },
  'channel-open': { abort: 'aborted' },
  aborted: {},
};

const LOCAL_EVENTS: ReadonlySet<string> = new Set(['sent-prepared', 'sent-complete', 'sent-go']);

/**
 * The state a target's connection starts in: `await-auth` when the agent holds a pool key (every
 * peer must prove it before anything else), `await-hello-or-auth` when it does not.
 */
export function initialReceiverState(keyRequired: boolean): ReceiverState {
  return keyRequired ? 'await-auth' : 'await-hello-or-auth';
}

/**
 * The target's next state after `event`.
 *
 * @throws UnexpectedRecordError if `event` is not legal in `state`.
 * @throws InvalidArgumentError if `state` is not a receiver state.
 */
export function receiverTransition(state: ReceiverState, event: ReceiverEvent): ReceiverState {
  return step('receiver', RECEIVER_TABLE, state, event);
}

/** The record types the target may receive in `state`, in protocol order; empty once final. */
export function expectedRecords(state: ReceiverState): readonly RecordType[] {
  return legalRecords('receiver', RECEIVER_TABLE, state);
}

/**
 * The source's next state after `event`.
 *
 * @throws UnexpectedRecordError if `event` is not legal in `state`.
 * @throws InvalidArgumentError if `state` is not a source state.
 */
export function sourceTransition(state: SourceState, event: SourceEvent): SourceState {
  return step('source', SOURCE_TABLE, state, event);
}

/** The record types the source may receive in `state`, in protocol order; empty once final. */
export function expectedSourceRecords(state: SourceState): readonly RecordType[] {
  return legalRecords('source', SOURCE_TABLE, state);
}

/**
 * A client's next state during authentication after receiving a record of type `event`.
 *
 * @throws UnexpectedRecordError if `event` is not legal in `state`.
 * @throws InvalidArgumentError if `state` is not a client authentication state.
 */
export function clientAuthTransition(state: ClientAuthState, event: RecordType): ClientAuthState {
  return step('client', CLIENT_AUTH_TABLE, state, event);
}

/**
 * The source's next state on a page channel after receiving a record of type `event`.
 *
 * @throws UnexpectedRecordError if `event` is not legal in `state`.
 */
export function sourceChannelTransition(state: SourceChannelState, event: RecordType): SourceChannelState {
  return step('source channel', SOURCE_CHANNEL_TABLE, state, event);
}

function row<S extends string, E extends string>(side: string, table: Table<S, E>, state: S): Readonly<Partial<Record<E, S>>> {
  // hasOwn, so that names such as "constructor" are not found on Object.prototype.
  if (typeof state !== 'string' || !Object.hasOwn(table, state)) {
    throw new InvalidArgumentError(`"${String(state)}" is not a ${side} state; known: ${Object.keys(table).join(', ')}`);
  }
  return table[state];
}

function legalRecords<S extends string, E extends string>(side: string, table: Table<S, E>, state: S): readonly RecordType[] {
  return Object.keys(row(side, table, state)).filter((event) => !LOCAL_EVENTS.has(event)) as RecordType[];
}

function step<S extends string, E extends string>(side: string, table: Table<S, E>, state: S, event: E): S {
  const transitions = row(side, table, state);
  // An unknown optional record changes nothing, wherever the peer may still send records.
  if (event === 'ignored' && Object.keys(transitions).length > 0) return state;
  const next = typeof event === 'string' && Object.hasOwn(transitions, event) ? transitions[event] : undefined;
  if (next !== undefined) return next;
  const expected = legalRecords(side, table, state);
  const wanted = expected.length === 0 ? 'no further records (the state is final)' : `one of: ${expected.join(', ')}`;
  if (typeof event === 'string' && LOCAL_EVENTS.has(event)) {
    throw new UnexpectedRecordError(`the ${side} cannot do "${event}" in state "${state}"; it expects ${wanted}`);
  }
  throw new UnexpectedRecordError(
    `unexpected "${String(event)}" record while the ${side} is in state "${state}"; expected ${wanted}. ` +
      'The peer sent records out of order or does not speak this protocol version; the migration cannot go on.',
  );
}
