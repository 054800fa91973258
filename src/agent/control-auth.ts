/**
 * How requests to a host's control API prove the pool key (docs/api.md, "Authentication"). A
 * request carries, in its `Authorization` header, an HMAC-SHA256 over its method, path, a
 * timestamp, a fresh nonce and the SHA-256 of its body; the host checks the clock window and
 * refuses a nonce it has seen. The host signs its answer in return, over the request's nonce,
 * the status and the answer's body, so that a client holding the key knows who answered.
 *
 * The MAC key is derived from the pool key for this one use, so that a signature here can never
 * stand for a migration's proof (src/protocol/auth.ts) or the other way round.
 */

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthFailedError, LimitExceededError } from '../errors.js';

/** The scheme name in the `Authorization` header. */
export const CONTROL_AUTH_SCHEME = 'LIVEMIG-HMAC-SHA256';

/** The header that carries the host's signature of its answer. */
export const RESPONSE_SIGNATURE_HEADER = 'x-livemig-signature';

/**
 * How far a request's timestamp may be from the host's clock, either way, in milliseconds.
 * Nonces are remembered twice this long, so a replay within the window is refused.
 */
export const DEFAULT_CONTROL_CLOCK_SKEW_MS = 60_000;

/**
 * Nonces a host remembers at once. Past it, requests are refused (ERR_LIMIT_EXCEEDED) until old
 * ones expire: a replay is never let through for want of room.
 */
export const MAX_REMEMBERED_NONCES = 100_000;

/** Bytes of a request nonce: 128 random bits. */
const NONCE_BYTES = 16;

const CONTROL_LABEL = 'livemig control request v1';
const METRICS_LABEL = 'livemig metrics token v1';

/** The MAC key of control requests, derived from the pool key. */
export function controlKey(poolKey: Uint8Array): Buffer {
  return createHmac('sha256', poolKey).update(CONTROL_LABEL).digest();
}

/**
 * The static bearer token a Prometheus scraper may send to `GET /metrics` instead of signing:
 * 64 hex digits derived from the pool key, good for that route only. `livemig host
 * metrics-token --key-file PATH` prints it.
 */
export function metricsToken(poolKey: Uint8Array): string {
  return createHmac('sha256', poolKey).update(METRICS_LABEL).digest('hex');
}

/** SHA-256 of a body, in hex. */
export function bodyHash(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('hex');
}

function requestMac(key: Buffer, method: string, path: string, timestampMs: number, nonce: string, body: Uint8Array): Buffer {
  return createHmac('sha256', key)
    .update(`request\n${method.toUpperCase()}\n${path}\n${timestampMs}\n${nonce}\n${bodyHash(body)}`)
    .digest();
}

function responseMac(key: Buffer, nonce: string, status: number, body: Uint8Array): Buffer {
  return createHmac('sha256', key).update(`response\n${nonce}\n${status}\n${bodyHash(body)}`).digest();
}

/** A signed request's header, and its nonce for checking the answer. */
export interface RequestSignature {
  authorization: string;
  nonce: string;
}

/** Signs a request: `path` is the request target as sent (path and query). */
export function signRequest(key: Buffer, method: string, path: string, body: Uint8Array, nowMs: number = Date.now()): RequestSignature {
  const nonce = randomBytes(NONCE_BYTES).toString('hex');
  const mac = requestMac(key, method, path, nowMs, nonce, body).toString('hex');
  return { authorization: `${CONTROL_AUTH_SCHEME} ts=${nowMs}, nonce=${nonce}, sig=${mac}`, nonce };
}

/** The host's signature of its answer to the request whose nonce is `nonce`. */
export function signResponse(key: Buffer, nonce: string, status: number, body: Uint8Array): string {
  return responseMac(key, nonce, status, body).toString('hex');
}

/** True if `signature` is the host's signature of this answer. */
export function verifyResponse(key: Buffer, nonce: string, status: number, body: Uint8Array, signature: string | undefined): boolean {
  if (signature === undefined || !/^[0-9a-f]{64}$/.test(signature)) return false;
  return timingSafeEqual(Buffer.from(signature, 'hex'), responseMac(key, nonce, status, body));
}

/** Checks signed requests and remembers their nonces. */
export class RequestVerifier {
  /** Nonces seen, with when each may be forgotten (ms since the epoch), oldest first. */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly key: Buffer,
    private readonly skewMs: number = DEFAULT_CONTROL_CLOCK_SKEW_MS,
  ) {}

  /**
   * Checks the `Authorization` header of a request and returns its nonce.
   * @throws AuthFailedError for a missing or malformed header, a timestamp outside the window,
   *   a wrong signature or a nonce seen before.
   * @throws LimitExceededError when too many nonces are remembered to take another.
   */
  verify(header: string | undefined, method: string, path: string, body: Uint8Array, nowMs: number = Date.now()): string {
    const parsed = parseAuthorization(header);
    if (Math.abs(nowMs - parsed.timestampMs) > this.skewMs) {
      throw new AuthFailedError(
        `the request was signed at ${new Date(parsed.timestampMs).toISOString()}, more than ${this.skewMs} ms from this host's clock; check both clocks`,
      );
    }
    const expected = requestMac(this.key, method, path, parsed.timestampMs, parsed.nonce, body);
    if (!timingSafeEqual(Buffer.from(parsed.signature, 'hex'), expected)) {
      throw new AuthFailedError("the request's signature does not match this host's pool key: the client holds a different key, or the request was altered");
    }
    this.forgetExpired(nowMs);
    if (this.seen.has(parsed.nonce)) throw new AuthFailedError('the request repeats a nonce already used: a replayed request is refused');
    if (this.seen.size >= MAX_REMEMBERED_NONCES) {
      throw new LimitExceededError(`this host remembers ${this.seen.size} recent request nonces, the most it holds; try again shortly`);
    }
    this.seen.set(parsed.nonce, nowMs + 2 * this.skewMs);
    return parsed.nonce;
  }

  private forgetExpired(nowMs: number): void {
    // Insertion order is nearly expiry order (clocks aside), so the loop stops at the first live one.
    for (const [nonce, expires] of this.seen) {
      if (expires > nowMs) break;
      this.seen.delete(nonce);
    }
  }
}

interface ParsedAuthorization {
  timestampMs: number;
  nonce: string;
  signature: string;
}

const AUTHORIZATION = new RegExp(`^${CONTROL_AUTH_SCHEME} ts=(\\d{1,16}), nonce=([0-9a-f]{${2 * NONCE_BYTES}}), sig=([0-9a-f]{64})$`);

function parseAuthorization(header: string | undefined): ParsedAuthorization {
  if (header === undefined || header === '') {
    throw new AuthFailedError(
      'this host serves only members of its pool, and the request is not signed; sign it with the pool key (ControlClient, or --key-file PATH)',
    );
  }
  const match = AUTHORIZATION.exec(header);
  if (!match) {
    throw new AuthFailedError(`the Authorization header is not "${CONTROL_AUTH_SCHEME} ts=MS, nonce=HEX32, sig=HEX64" (docs/api.md)`);
  }
  return { timestampMs: Number(match[1]), nonce: match[2]!, signature: match[3]! };
}

/** True if `header` is `Bearer TOKEN` with the metrics token of `poolKey`. */
export function isMetricsBearer(header: string | undefined, token: string): boolean {
  if (header === undefined || !header.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice('Bearer '.length));
  const wanted = Buffer.from(token);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}
