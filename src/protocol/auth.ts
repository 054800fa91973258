/**
 * The proofs of the authentication exchange (`docs/protocol.md`, "Authentication"). Both ends of
 * a connection hold the pool key; each sends a fresh random nonce, and each proves it holds the
 * key with an HMAC-SHA256 over a label naming its role followed by both nonces:
 *
 *     client proof = HMAC-SHA256(key, "livemig auth v1 client\0" || clientNonce || agentNonce)
 *     agent proof  = HMAC-SHA256(key, "livemig auth v1 agent\0"  || clientNonce || agentNonce)
 *
 * The agent's nonce is new on every connection, so a client proof recorded once is worthless on
 * the next connection (no replay); the two labels differ, so one side's proof can never pass for
 * the other's (no reflection). Nonces have a fixed length, so the concatenation is unambiguous.
 *
 * Nothing here does I/O; the randomness comes from the operating system's CSPRNG.
 */

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import { InvalidArgumentError } from '../errors.js';

/**
 * Length of the nonces in `auth-hello` and `auth-challenge`, in bytes: 256 random bits, so a
 * nonce never repeats and an exchange recorded once can never be replayed against a fresh one.
 */
export const AUTH_NONCE_BYTES = 32;

/** Length of the proofs in `auth-proof` and `auth-ok`, in bytes: one HMAC-SHA256. */
export const AUTH_PROOF_BYTES = 32;

/**
 * Shortest pool key accepted, in bytes: 256 bits, the strength of HMAC-SHA256 itself. A shorter
 * key would be the weakest link.
 */
export const MIN_POOL_KEY_BYTES = 32;

/**
 * Longest pool key accepted, in bytes. HMAC hashes longer keys first, so more brings no
 * strength; the bound only keeps a wrong file (a certificate, a log) from being taken as a key.
 */
export const MAX_POOL_KEY_BYTES = 1024;

/** Which end of the connection a proof speaks for. */
export type AuthRole = 'client' | 'agent';

const LABELS: Readonly<Record<AuthRole, Buffer>> = {
  client: Buffer.from('livemig auth v1 client\0', 'latin1'),
  agent: Buffer.from('livemig auth v1 agent\0', 'latin1'),
};

/** A fresh random nonce of {@link AUTH_NONCE_BYTES} bytes. */
export function newAuthNonce(): Uint8Array {
  return new Uint8Array(randomBytes(AUTH_NONCE_BYTES));
}

/**
 * Checks that `key` can serve as a pool key.
 *
 * @throws InvalidArgumentError if it is not a Uint8Array of {@link MIN_POOL_KEY_BYTES} to
 *   {@link MAX_POOL_KEY_BYTES} bytes.
 */
export function checkPoolKey(key: unknown, what = 'the pool key'): Uint8Array {
  if (!(key instanceof Uint8Array)) {
    throw new InvalidArgumentError(`${what} must be a Uint8Array of at least ${MIN_POOL_KEY_BYTES} random bytes`);
  }
  if (key.length < MIN_POOL_KEY_BYTES || key.length > MAX_POOL_KEY_BYTES) {
    throw new InvalidArgumentError(
      `${what} is ${key.length} bytes long; it must hold ${MIN_POOL_KEY_BYTES} to ${MAX_POOL_KEY_BYTES} random bytes ` +
        '(make one with "livemig keygen PATH")',
    );
  }
  return key;
}

/**
 * The proof that the end playing `role` holds `key`, for the exchange identified by both nonces.
 *
 * @returns {@link AUTH_PROOF_BYTES} bytes.
 * @throws InvalidArgumentError if a nonce is not {@link AUTH_NONCE_BYTES} bytes long.
 */
export function authProof(key: Uint8Array, role: AuthRole, clientNonce: Uint8Array, agentNonce: Uint8Array): Uint8Array {
  if (clientNonce.length !== AUTH_NONCE_BYTES || agentNonce.length !== AUTH_NONCE_BYTES) {
    throw new InvalidArgumentError(`authentication nonces must be ${AUTH_NONCE_BYTES} bytes long`);
  }
  const mac = createHmac('sha256', key).update(LABELS[role]).update(clientNonce).update(agentNonce).digest();
  return new Uint8Array(mac.buffer, mac.byteOffset, AUTH_PROOF_BYTES);
}

/**
 * Whether `proof` is the proof {@link authProof} gives for the same arguments. Compares in
 * constant time, so how long a refusal takes says nothing about how much of a guess was right.
 */
export function verifyAuthProof(
  key: Uint8Array,
  role: AuthRole,
  clientNonce: Uint8Array,
  agentNonce: Uint8Array,
  proof: Uint8Array,
): boolean {
  const expected = authProof(key, role, clientNonce, agentNonce);
  return proof.length === expected.length && timingSafeEqual(expected, proof);
}
