/**
 * A client of a host's control API (docs/api.md): signs each request with the pool key, checks
 * the host's signature of the answer, and returns typed results or throws the host's error as a
 * MigrationError with its code. Every call settles: on the answer, a closed socket
 * (ERR_CONNECTION_CLOSED), a refused connection (ERR_CONNECT_FAILED) or its deadline (ERR_TIMEOUT).
 */

import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AuthFailedError,
  ConflictError,
  ConnectFailedError,
  ConnectionClosedError,
  HostInMaintenanceError,
  InsufficientCapacityError,
  InvalidArgumentError,
  LimitExceededError,
  MalformedRecordError,
  MigrationError,
  type MigrationErrorCode,
  NotFoundError,
  TimeoutError,
} from '../errors.js';
import { clientTlsOptions, type ClientTlsSettings, type TlsConnectOptions } from '../transport/tls.js';
import { controlKey, RESPONSE_SIGNATURE_HEADER, signRequest, verifyResponse } from './control-auth.js';
import type {
  EvacuateRequest,
  EvacuationInfo,
  GuestInfo,
  GuestInspection,
  HostStatus,
  MigrateGuestRequest,
  MigrationInfo,
  StartGuestRequest,
} from './control-types.js';

/** Longest a control request may take, connecting included, in milliseconds. */
export const DEFAULT_CONTROL_TIMEOUT_MS = 30_000;

/** Largest answer a client reads, in bytes. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/** How often {@link ControlClient.waitForMigration} asks, in milliseconds. */
export const DEFAULT_POLL_INTERVAL_MS = 250;

/** Options of a {@link ControlClient}. */
export interface ControlClientOptions {
  /** The pool key: requests are signed and answers checked. @default none (a host without a key) */
  key?: Uint8Array;
  /** Trust for an `https://` host. @default the system's CAs */
  tls?: TlsConnectOptions;
  /** @default DEFAULT_CONTROL_TIMEOUT_MS */
  timeoutMs?: number;
}

/** The states in which a migration has ended. */
const ENDED: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled', 'indeterminate']);

/** A client of one host. */
export class ControlClient {
  readonly url: URL;
  private readonly macKey: Buffer | undefined;

  constructor(
    url: string,
    private readonly options: ControlClientOptions = {},
  ) {
    try {
      this.url = new URL(url.replace(/^ws/, 'http'));
    } catch {
      throw new InvalidArgumentError(`"${url}" is not a host URL; give http://HOST:PORT`);
    }
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') {
      throw new InvalidArgumentError(`"${url}" is not an http:// or https:// URL of a host`);
    }
    this.macKey = options.key === undefined ? undefined : controlKey(options.key);
  }

  host(): Promise<HostStatus> {
    return this.call('GET', '/v1/host');
  }
  setMaintenance(enabled: boolean): Promise<HostStatus> {
    return this.call('POST', '/v1/host/maintenance', { enabled });
  }
  guests(): Promise<GuestInfo[]> {
    return this.call('GET', '/v1/guests');
  }
  guest(id: string): Promise<GuestInfo> {
    return this.call('GET', `/v1/guests/${encodeURIComponent(id)}`);
  }
  startGuest(request: StartGuestRequest): Promise<GuestInfo> {
    return this.call('POST', '/v1/guests', request);
  }
  stopGuest(id: string): Promise<GuestInfo> {
    return this.call('DELETE', `/v1/guests/${encodeURIComponent(id)}`);
  }
  inspectGuest(id: string): Promise<GuestInspection> {
    return this.call('POST', `/v1/guests/${encodeURIComponent(id)}/inspect`, {});
  }
  migrateGuest(id: string, request: MigrateGuestRequest): Promise<MigrationInfo> {
    return this.call('POST', `/v1/guests/${encodeURIComponent(id)}/migrate`, request);
  }
  migrations(): Promise<MigrationInfo[]> {
    return this.call('GET', '/v1/migrations');
  }
  migration(id: string): Promise<MigrationInfo> {
    return this.call('GET', `/v1/migrations/${encodeURIComponent(id)}`);
  }
  cancelMigration(id: string): Promise<MigrationInfo> {
    return this.call('DELETE', `/v1/migrations/${encodeURIComponent(id)}`);
  }
  evacuate(request: EvacuateRequest = {}): Promise<EvacuationInfo> {
    return this.call('POST', '/v1/host/evacuate', request);
  }
  evacuation(id: string): Promise<EvacuationInfo> {
    return this.call('GET', `/v1/evacuations/${encodeURIComponent(id)}`);
  }
  /** Asks the host's coordinator to cancel an evacuation; it ends once its migrations in flight have. */
  cancelEvacuation(id: string): Promise<EvacuationInfo> {
    return this.call('DELETE', `/v1/evacuations/${encodeURIComponent(id)}`);
  }
  /** Takes the host's single evacuation claim for `evacuationId` (again, if it holds it already). */
  claimEvacuation(evacuationId: string): Promise<HostStatus> {
    return this.call('POST', '/v1/host/claim', { evacuationId });
  }
  /** Drops the host's evacuation claim of `evacuationId`; ERR_CONFLICT if another id holds it. */
  releaseEvacuation(evacuationId: string): Promise<HostStatus> {
    return this.call('POST', '/v1/host/release', { evacuationId });
  }
  /** The Prometheus text of `/metrics`. */
  async metrics(): Promise<string> {
    const answer = await this.request('GET', '/metrics', undefined);
    return answer.body.toString('utf8');
  }

  /**
   * Asks about migration `id` until it has ended, calling `onProgress` with each answer. A
   * completed migration is waited for until its check has ended too (`verifying` false), so that
   * `verified` is in the answer; `untilChecked: false` returns at the outcome.
   * @throws the host's errors; ERR_CANCELLED-free: `signal` only stops the asking (ERR_TIMEOUT).
   */
  async waitForMigration(
    id: string,
    options: { onProgress?: (info: MigrationInfo) => void; intervalMs?: number; signal?: AbortSignal; untilChecked?: boolean } = {},
  ): Promise<MigrationInfo> {
    for (;;) {
      const info = await this.migration(id);
      options.onProgress?.(info);
      if (ENDED.has(info.state) && (info.verifying !== true || options.untilChecked === false)) return info;
      if (options.signal?.aborted) throw new TimeoutError(`stopped waiting for migration ${id} (${info.state})`);
      await sleep(options.intervalMs ?? DEFAULT_POLL_INTERVAL_MS, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }

  /** A request whose answer is JSON of type `T`. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const answer = await this.request(method, path, body === undefined ? undefined : Buffer.from(JSON.stringify(body)));
    try {
      return JSON.parse(answer.body.toString('utf8')) as T;
    } catch {
      throw new MalformedRecordError(`${this.url.origin} answered ${method} ${path} with something that is not JSON`);
    }
  }

  /** Sends a request and returns a successful answer; a failed one is thrown as its error. */
  async request(method: string, path: string, body: Buffer | undefined): Promise<{ status: number; body: Buffer }> {
    const bytes = body ?? Buffer.alloc(0);
    const signature = this.macKey === undefined ? undefined : signRequest(this.macKey, method, path, bytes);
    const tls = this.url.protocol === 'https:' ? await clientTlsOptions(this.options.tls) : {};
    const answer = await this.send(method, path, bytes, signature?.authorization, tls);
    if (signature !== undefined && answer.status !== 401) {
      if (!verifyResponse(this.macKey!, signature.nonce, answer.status, answer.body, answer.signature)) {
        throw new AuthFailedError(
          answer.signature === undefined
            ? `${this.url.origin} did not sign its answer: it holds no pool key, or is not a livemig host of this pool`
            : `${this.url.origin} signed its answer with another key: it is not a host of this pool, or the answer was altered`,
        );
      }
    }
    if (answer.status >= 200 && answer.status < 300) return answer;
    throw errorOf(answer.status, answer.body, `${method} ${path}`);
  }

  private send(
    method: string,
    path: string,
    body: Buffer,
    authorization: string | undefined,
    tls: ClientTlsSettings,
  ): Promise<{ status: number; body: Buffer; signature?: string }> {
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS;
    const secure = this.url.protocol === 'https:';
    const headers: http.OutgoingHttpHeaders = { 'content-length': body.length, connection: 'close' };
    if (body.length > 0) headers['content-type'] = 'application/json';
    if (authorization !== undefined) headers.authorization = authorization;
    const where = this.url.origin;
    return new Promise((resolve, reject) => {
      const options: https.RequestOptions = { ...tls, method, host: this.url.hostname.replace(/^\[|\]$/g, ''), port: this.url.port, path, headers, agent: false };
      const req = (secure ? https : http).request(options, (res) => {
        const chunks: Buffer[] = [];
        let length = 0;
        res.on('data', (chunk: Buffer) => {
          length += chunk.length;
          if (length > MAX_ANSWER_BYTES) req.destroy(new LimitExceededError(`${where} answered with more than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.once('end', () => {
          clearTimeout(timer);
          const signature = res.headers[RESPONSE_SIGNATURE_HEADER];
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), signature: typeof signature === 'string' ? signature : undefined });
        });
        res.once('aborted', () => req.destroy(new ConnectionClosedError(`${where} closed the connection in the middle of its answer`)));
      });
      const timer = setTimeout(() => req.destroy(new TimeoutError(`${where} did not answer ${method} ${path} within ${timeoutMs} ms`)), timeoutMs);
      req.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (err instanceof MigrationError) reject(err);
        else if (err.code === 'ECONNRESET' || err.code === 'EPIPE') reject(new ConnectionClosedError(`${where} closed the connection: ${err.message}`));
        else reject(new ConnectFailedError(`could not reach ${where}: ${err.message}`, { cause: err }));
      });
      req.end(body);
    });
  }
}

const ERROR_CLASSES: Partial<Record<MigrationErrorCode, new (message: string) => MigrationError>> = {
  ERR_INVALID_ARGUMENT: InvalidArgumentError,
  ERR_MALFORMED_RECORD: MalformedRecordError,
  ERR_AUTH_FAILED: AuthFailedError,
  ERR_NOT_FOUND: NotFoundError,
  ERR_CONFLICT: ConflictError,
  ERR_HOST_IN_MAINTENANCE: HostInMaintenanceError,
  ERR_INSUFFICIENT_CAPACITY: InsufficientCapacityError,
  ERR_LIMIT_EXCEEDED: LimitExceededError,
};

/** The error an answer carries, as its class where there is one. */
function errorOf(status: number, body: Buffer, what: string): MigrationError {
  let error: { code?: unknown; message?: unknown } | undefined;
  try {
    error = (JSON.parse(body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } }).error;
  } catch {
    // Not one of ours; said below.
  }
  if (typeof error?.code !== 'string' || typeof error.message !== 'string') {
    return new MigrationError('ERR_DOMAIN_FAILED', `the host answered ${what} with HTTP ${status} and no error code`);
  }
  const Class = ERROR_CLASSES[error.code as MigrationErrorCode];
  const message = `${error.message} (HTTP ${status})`;
  return Class ? new Class(message) : new MigrationError(error.code as MigrationErrorCode, message);
}
