/**
 * How a target agent admits a connection: the pool-key exchange (docs/protocol.md,
 * "Authentication"), then the record that says what the peer wants. Nothing is allocated for a
 * peer before this returns.
 */

import { AuthFailedError, ConnectionClosedError, PeerAbortedError, UnexpectedRecordError } from '../errors.js';
import { authProof, newAuthNonce, verifyAuthProof } from '../protocol/auth.js';
import { decodeFrame, encodeRecord } from '../protocol/codec.js';
import type { ProtocolLimits } from '../protocol/limits.js';
import { initialReceiverState, receiverTransition } from '../protocol/receiver-state.js';
import type { ChannelHelloRecord, HelloRecord, QueryRecord } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';

/**
 * Reads the records before `hello`, `query` or `channel-hello`, as the receiver state machine
 * allows them, and answers the authentication exchange; returns that record. With `key`, the peer must
 * prove it holds the pool key before anything else, and gets this side's proof in return.
 *
 * @throws AuthFailedError if the peer cannot prove the key, or skips the proof.
 * @throws PeerAbortedError, ConnectionClosedError if the peer gives up first.
 * @throws the decoder's errors for a record that is malformed or over `limits`, and
 *   UnexpectedRecordError for one out of place.
 */
export async function readHelloOrQuery(
  transport: Transport,
  key: Uint8Array | undefined,
  limits: ProtocolLimits,
): Promise<HelloRecord | QueryRecord | ChannelHelloRecord> {
  let state = initialReceiverState(key !== undefined);
  let clientNonce: Uint8Array | undefined;
  let agentNonce: Uint8Array | undefined;
  for (;;) {
    const frame = await transport.receive();
    if (frame === undefined) throw new ConnectionClosedError(`the peer closed the connection in state ${state}, before its hello or query`);
    const record = decodeFrame(frame, limits);
    if (record.type === 'abort') throw new PeerAbortedError(record.code, record.message);
    // An unknown record its sender marked optional is skipped, as everywhere; the handshake's
    // deadline and byte cap still bound how many a stranger may send.
    if (record.type === 'ignored') continue;
    if (state === 'await-auth' && (record.type === 'hello' || record.type === 'query' || record.type === 'channel-hello')) {
      throw new AuthFailedError(
        `this agent serves only members of its pool, and the connection began with "${record.type}" without proving the pool key; ` +
          'pass the pool key (the key option of connectToAgent, or --key-file PATH)',
      );
    }
    state = receiverTransition(state, record.type);
    switch (record.type) {
      case 'auth-hello':
        clientNonce = Uint8Array.from(record.nonce);
        if (key === undefined) {
          await transport.send(encodeRecord({ type: 'auth-ok' }));
        } else {
          agentNonce = newAuthNonce();
          await transport.send(encodeRecord({ type: 'auth-challenge', nonce: agentNonce }));
        }
        break;
      case 'auth-proof':
        // The state machine admits a proof only after this agent's challenge: the key and both nonces exist.
        if (!verifyAuthProof(key!, 'client', clientNonce!, agentNonce!, record.proof)) {
          throw new AuthFailedError(
            "the proof does not match this agent's pool key: the peer holds a different key, or replays an old exchange; " +
              'check that both sides use the same key file',
          );
        }
        await transport.send(encodeRecord({ type: 'auth-ok', proof: authProof(key!, 'agent', clientNonce!, agentNonce!) }));
        break;
      case 'hello':
      case 'query':
      case 'channel-hello':
        return record;
      default:
        // The state machine admits nothing else here; this guards against the two disagreeing.
        throw new UnexpectedRecordError(`record "${record.type}" is not handled before a hello`);
    }
  }
}
