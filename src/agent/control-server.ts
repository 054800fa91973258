/**
 * The control API's HTTP side (docs/api.md): reads a request within its body limit, checks its
 * signature when the host holds the pool key, routes it to the host, and answers JSON, every
 * error as `{ error: { code, message } }` with an HTTP status that follows from the code. Each
 * answer closes its connection: the listener's deadlines bound every exchange.
 */

import type http from 'node:http';
import { asMigrationError, ConflictError, LimitExceededError, MalformedRecordError, type MigrationError, NotFoundError } from '../errors.js';
import { isMetricsBearer, metricsToken, RequestVerifier, RESPONSE_SIGNATURE_HEADER, controlKey, signResponse } from './control-auth.js';
import { parseEvacuate, parseEvacuationClaim, parseMaintenance, parseMigrateGuest, parseStartGuest } from './control-requests.js';
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

/** Largest request body the control API reads, in bytes. */
export const DEFAULT_MAX_CONTROL_BODY_BYTES = 64 * 1024;

/** What the control API asks of its host. */
export interface ControlApi {
  status(): HostStatus;
  setMaintenance(enabled: boolean): HostStatus;
  guests(): GuestInfo[];
  guest(id: string): GuestInfo;
  startGuest(request: StartGuestRequest): Promise<GuestInfo>;
  stopGuest(id: string): Promise<GuestInfo>;
  inspectGuest(id: string): Promise<GuestInspection>;
  migrateGuest(id: string, request: MigrateGuestRequest): MigrationInfo;
  migrations(): MigrationInfo[];
  migration(id: string): MigrationInfo;
  cancelMigration(id: string): MigrationInfo;
  evacuate(request: EvacuateRequest): Promise<EvacuationInfo>;
  evacuation(id: string): Promise<EvacuationInfo>;
  cancelEvacuation(id: string): Promise<EvacuationInfo>;
  claimEvacuation(id: string): void;
  releaseEvacuation(id: string): void;
  metricsText(): Promise<{ contentType: string; text: string }>;
}

/** Options of a {@link ControlServer}. */
export interface ControlServerOptions {
  /** The pool key; without it requests are served unsigned (an agent on loopback only). */
  key: Uint8Array | undefined;
  /** @default DEFAULT_MAX_CONTROL_BODY_BYTES */
  maxBodyBytes?: number;
  /** @default DEFAULT_CONTROL_CLOCK_SKEW_MS */
  clockSkewMs?: number;
}

/** A route's answer: status and JSON (or text, for `/metrics`). */
interface Answer {
  status: number;
  body: unknown;
  contentType?: string;
}

/** Thrown for a route whose hook the host lacks: 501, with ERR_NOT_FOUND. */
export class NotAvailableError extends NotFoundError {}

/** Serves the control API of one host. */
export class ControlServer {
  private readonly macKey: Buffer | undefined;
  private readonly verifier: RequestVerifier | undefined;
  private readonly bearer: string | undefined;
  private readonly maxBodyBytes: number;

  constructor(
    private readonly api: ControlApi,
    options: ControlServerOptions,
  ) {
    this.macKey = options.key === undefined ? undefined : controlKey(options.key);
    this.verifier = this.macKey === undefined ? undefined : new RequestVerifier(this.macKey, options.clockSkewMs);
    this.bearer = options.key === undefined ? undefined : metricsToken(options.key);
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_CONTROL_BODY_BYTES;
  }

  /** Serves one request; never throws. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    void this.serve(req, res).catch(() => res.destroy());
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let nonce: string | undefined;
    let answer: Answer;
    try {
      const body = await readBody(req, this.maxBodyBytes);
      const method = req.method ?? 'GET';
      const target = req.url ?? '/';
      const path = new URL(target, 'http://host').pathname;
      const scrape = method === 'GET' && path === '/metrics' && this.bearer !== undefined && isMetricsBearer(req.headers.authorization, this.bearer);
      if (this.verifier !== undefined && !scrape) nonce = this.verifier.verify(req.headers.authorization, method, target, body);
      answer = await this.route(method, path, body);
    } catch (err) {
      answer = errorAnswer(asMigrationError(err, 'ERR_DOMAIN_FAILED'));
    }
    this.send(res, answer, nonce);
  }

  private send(res: http.ServerResponse, answer: Answer, nonce: string | undefined): void {
    const text = answer.contentType !== undefined ? String(answer.body) : `${JSON.stringify(answer.body)}\n`;
    const bytes = Buffer.from(text);
    const headers: http.OutgoingHttpHeaders = {
      'content-type': answer.contentType ?? 'application/json; charset=utf-8',
      'content-length': bytes.length,
      connection: 'close',
      'cache-control': 'no-store',
    };
    if (nonce !== undefined && this.macKey !== undefined) headers[RESPONSE_SIGNATURE_HEADER] = signResponse(this.macKey, nonce, answer.status, bytes);
    res.writeHead(answer.status, headers);
    res.end(bytes);
  }

  private async route(method: string, path: string, body: Uint8Array): Promise<Answer> {
    const api = this.api;
    const parts = path.split('/').filter((p) => p !== '');
    const [v1, noun, id, verb] = parts.map((p) => decodeURIComponent(p));
    if (parts.length === 1 && v1 === 'metrics') {
      allow(method, 'GET');
      const metrics = await api.metricsText();
      return { status: 200, body: metrics.text, contentType: metrics.contentType };
    }
    if (v1 !== 'v1' || parts.length > 4) throw new NotFoundError(`no route ${method} ${path}; see docs/api.md`);
    const key = `${noun ?? ''}${id === undefined ? '' : '/:id'}${verb === undefined ? '' : `/${verb}`}`;
    switch (key) {
      case 'host':
        allow(method, 'GET');
        return ok(api.status());
      case 'host/:id':
        return this.hostAction(method, id!, body);
      case 'guests':
        if (allow(method, 'GET', 'POST') === 'GET') return ok(api.guests());
        return { status: 201, body: await api.startGuest(parseStartGuest(json(body))) };
      case 'guests/:id':
        if (allow(method, 'GET', 'DELETE') === 'GET') return ok(api.guest(id!));
        return ok(await api.stopGuest(id!));
      case 'guests/:id/migrate':
        allow(method, 'POST');
        return { status: 202, body: api.migrateGuest(id!, parseMigrateGuest(json(body))) };
      case 'guests/:id/inspect':
        allow(method, 'POST');
        return ok(await api.inspectGuest(id!));
      case 'migrations':
        allow(method, 'GET');
        return ok(api.migrations());
      case 'migrations/:id':
        if (allow(method, 'GET', 'DELETE') === 'GET') return ok(api.migration(id!));
        return ok(api.cancelMigration(id!));
      case 'evacuations/:id':
        if (allow(method, 'GET', 'DELETE') === 'GET') return ok(await api.evacuation(id!));
        return ok(await api.cancelEvacuation(id!));
      default:
        throw new NotFoundError(`no route ${method} ${path}; see docs/api.md`);
    }
  }

  private async hostAction(method: string, action: string, body: Uint8Array): Promise<Answer> {
    allow(method, 'POST');
    if (action === 'maintenance') return ok(this.api.setMaintenance(parseMaintenance(json(body))));
    if (action === 'evacuate') return { status: 202, body: await this.api.evacuate(parseEvacuate(json(body, {}))) };
    if (action === 'claim') {
      this.api.claimEvacuation(parseEvacuationClaim(json(body)));
      return ok(this.api.status());
    }
    if (action === 'release') {
      const id = parseEvacuationClaim(json(body));
      const held = this.api.status().evacuationId;
      if (held !== undefined && held !== id) throw new ConflictError(`this host's evacuation claim is held by ${held}, not ${id}`);
      this.api.releaseEvacuation(id);
      return ok(this.api.status());
    }
    throw new NotFoundError(`no route ${method} /v1/host/${action}; see docs/api.md`);
  }
}

function ok(body: unknown): Answer {
  return { status: 200, body };
}

/** The method, if it is one of `allowed`. */
function allow(method: string, ...allowed: string[]): string {
  if (!allowed.includes(method)) {
    throw new MethodError(`this route answers ${allowed.join(' and ')}, not ${method}`);
  }
  return method;
}

/** A method the route does not answer: 405, with ERR_INVALID_ARGUMENT. */
class MethodError extends MalformedRecordError {}

/** The body as JSON; `empty` stands for an empty body where one is optional. */
function json(body: Uint8Array, empty?: unknown): unknown {
  if (body.length === 0 && empty !== undefined) return empty;
  try {
    return JSON.parse(Buffer.from(body).toString('utf8'));
  } catch (err) {
    throw new MalformedRecordError(`the request body is not JSON: ${(err as Error).message}`);
  }
}

/** The HTTP status of an error, by its code. */
export function statusOf(error: MigrationError): number {
  if (error instanceof NotAvailableError) return 501;
  if (error instanceof MethodError) return 405;
  if (error instanceof BodyTooLargeError) return 413;
  switch (error.code) {
    case 'ERR_INVALID_ARGUMENT':
    case 'ERR_MALFORMED_RECORD':
    case 'ERR_UNKNOWN_BACKEND':
      return 400;
    case 'ERR_AUTH_FAILED':
      return 401;
    case 'ERR_NOT_FOUND':
      return 404;
    case 'ERR_CONFLICT':
      return 409;
    case 'ERR_LIMIT_EXCEEDED':
      return 429;
    case 'ERR_HOST_IN_MAINTENANCE':
      return 503;
    case 'ERR_INSUFFICIENT_CAPACITY':
    case 'ERR_OUT_OF_MEMORY':
      return 507;
    default:
      return 500;
  }
}

function errorAnswer(error: MigrationError): Answer {
  const code = error instanceof MethodError ? 'ERR_INVALID_ARGUMENT' : error.code;
  return { status: statusOf(error), body: { error: { code, message: error.message } } };
}

/** A body beyond the limit: 413, with ERR_LIMIT_EXCEEDED. */
class BodyTooLargeError extends LimitExceededError {}

/** Reads the whole body, refusing it once it passes `maxBytes`. */
function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = (): BodyTooLargeError => new BodyTooLargeError(`the request body is larger than ${maxBytes} bytes, the most this host reads`);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) {
    req.resume();
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length > maxBytes) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}
