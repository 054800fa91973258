// The authentication records decode as strictly as every other record, and a proof holds only
// for the role, the two nonces and the key it was made with.
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';

import { AUTH_NONCE_BYTES, AUTH_PROOF_BYTES, authProof, checkPoolKey, newAuthNonce, verifyAuthProof } from '../dist/protocol/auth.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';

const packr = new Packr({ useRecords: false, variableMapSize: true });

/** A frame around any header, bypassing the encoder's checks. */
function rawFrame(header: Record<string, unknown>): Uint8Array {
  const packed = packr.pack(header);
  const frame = Buffer.alloc(4 + packed.length);
  frame.writeUInt32LE(packed.length, 0);
  frame.set(packed, 4);
  return frame;
}

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    return (err as { code?: string }).code ?? 'no code';
  }
  return 'no error';
}

const key = new Uint8Array(32).map((_, i) => i + 100);
const otherKey = new Uint8Array(32).map((_, i) => i + 101);

describe('authentication records', () => {
  it('carry nonces and proofs of exactly 32 bytes', () => {
    expect(AUTH_NONCE_BYTES).toBe(32);
    expect(AUTH_PROOF_BYTES).toBe(32);
    for (const length of [0, 16, 31, 33, 64]) {
      const bytes = new Uint8Array(length);
      expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-hello', nonce: bytes })))).toBe('ERR_MALFORMED_RECORD');
      expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-challenge', nonce: bytes })))).toBe('ERR_MALFORMED_RECORD');
      expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-proof', proof: bytes })))).toBe('ERR_MALFORMED_RECORD');
      expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-ok', proof: bytes })))).toBe('ERR_MALFORMED_RECORD');
      expect(codeOf(() => encodeRecord({ type: 'auth-proof', proof: bytes }))).toBe('ERR_MALFORMED_RECORD');
    }
  });

  it('refuse a nonce sent as text, as an array or missing, and unknown fields', () => {
    expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-hello', nonce: 'a'.repeat(32) })))).toBe('ERR_MALFORMED_RECORD');
    expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-hello', nonce: new Array(32).fill(1) })))).toBe('ERR_MALFORMED_RECORD');
    expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-hello' })))).toBe('ERR_MALFORMED_RECORD');
    expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-proof', proof: new Uint8Array(32), user: 'root' })))).toBe(
      'ERR_MALFORMED_RECORD',
    );
    expect(codeOf(() => decodeFrame(rawFrame({ type: 'auth-ok', proof: null })))).toBe('ERR_MALFORMED_RECORD');
  });

  it('refuse a payload after the header', () => {
    const frame = encodeRecord({ type: 'auth-hello', nonce: new Uint8Array(32) });
    const padded = new Uint8Array(frame.length + 8);
    padded.set(frame);
    expect(codeOf(() => decodeFrame(padded))).toBe('ERR_MALFORMED_RECORD');
  });

  it('round-trip, auth-ok with and without a proof', () => {
    const proof = new Uint8Array(32).fill(7);
    expect(decodeFrame(encodeRecord({ type: 'auth-ok', proof }))).toEqual({ type: 'auth-ok', proof });
    expect(decodeFrame(encodeRecord({ type: 'auth-ok' }))).toEqual({ type: 'auth-ok' });
  });
});

describe('proofs', () => {
  const clientNonce = newAuthNonce();
  const agentNonce = newAuthNonce();

  it('use fresh 32-byte nonces', () => {
    expect(clientNonce).toHaveLength(32);
    expect(Buffer.compare(clientNonce, agentNonce)).not.toBe(0);
    expect(Buffer.compare(newAuthNonce(), newAuthNonce())).not.toBe(0);
  });

  it('verify for the same role, nonces and key', () => {
    const proof = authProof(key, 'client', clientNonce, agentNonce);
    expect(proof).toHaveLength(32);
    expect(verifyAuthProof(key, 'client', clientNonce, agentNonce, proof)).toBe(true);
    expect(Buffer.compare(proof, authProof(key, 'client', clientNonce, agentNonce))).toBe(0);
  });

  it("differ by role, so one side's proof never passes for the other's (no reflection)", () => {
    const client = authProof(key, 'client', clientNonce, agentNonce);
    const agent = authProof(key, 'agent', clientNonce, agentNonce);
    expect(Buffer.compare(client, agent)).not.toBe(0);
    expect(verifyAuthProof(key, 'agent', clientNonce, agentNonce, client)).toBe(false);
    expect(verifyAuthProof(key, 'client', clientNonce, agentNonce, agent)).toBe(false);
  });

  it("fail against another agent nonce, so a recorded exchange is worthless later (no replay)", () => {
    const recorded = authProof(key, 'client', clientNonce, agentNonce);
    expect(verifyAuthProof(key, 'client', clientNonce, newAuthNonce(), recorded)).toBe(false);
    // Swapping the nonces is a different exchange too.
    expect(verifyAuthProof(key, 'client', agentNonce, clientNonce, recorded)).toBe(false);
  });

  it('fail under another key, with a truncated proof, and with a single flipped bit', () => {
    const proof = authProof(key, 'client', clientNonce, agentNonce);
    expect(verifyAuthProof(otherKey, 'client', clientNonce, agentNonce, proof)).toBe(false);
    expect(verifyAuthProof(key, 'client', clientNonce, agentNonce, proof.subarray(0, 31))).toBe(false);
    const flipped = Uint8Array.from(proof);
    flipped[17]! ^= 0x10;
    expect(verifyAuthProof(key, 'client', clientNonce, agentNonce, flipped)).toBe(false);
  });
});

describe('pool keys', () => {
  it('need 32 to 1024 bytes', () => {
    expect(checkPoolKey(key)).toBe(key);
    expect(codeOf(() => checkPoolKey(new Uint8Array(31)))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => checkPoolKey(new Uint8Array(1025)))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => checkPoolKey('a'.repeat(64)))).toBe('ERR_INVALID_ARGUMENT');
  });
});
