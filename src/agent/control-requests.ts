/**
 * The checks of request bodies the control API accepts: each parser takes parsed JSON from the
 * network and returns a typed request, or throws InvalidArgumentError naming the first field
 * that is wrong. Unknown fields are refused, so that a typo is not silently ignored.
 */

import { InvalidArgumentError } from '../errors.js';
import { CODEC_CHOICES, type CodecChoice } from '../precopy/codec-choice.js';
import { MAX_GUEST_PRIORITY } from '../protocol/record-fields.js';
import type { EvacuateRequest, MigrateGuestRequest, StartGuestRequest } from './control-types.js';

/** Longest guest name or id, in characters. */
export const MAX_GUEST_NAME_CHARS = 256;

/** Most vCPUs a started guest may ask for. */
const MAX_START_VCPUS = 256;

/** What an id may be made of: it appears in URLs and logs. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

type Fields = Record<string, unknown>;

function object(body: unknown, what: string): Fields {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidArgumentError(`${what} must be a JSON object`);
  }
  return body as Fields;
}

function only(body: Fields, what: string, allowed: readonly string[]): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) throw new InvalidArgumentError(`${what} has an unknown field "${key}"; known: ${allowed.join(', ')}`);
  }
}

function text(body: Fields, key: string, what: string, required: boolean): string | undefined {
  const value = body[key];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_GUEST_NAME_CHARS) {
    throw new InvalidArgumentError(`${what}.${key} must be a string of 1 to ${MAX_GUEST_NAME_CHARS} characters, got ${describe(value)}`);
  }
  return value;
}

function integer(body: Fields, key: string, what: string, min: number, max: number): number | undefined {
  const value = body[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${what}.${key} must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

function positive(body: Fields, key: string, what: string): number | undefined {
  const value = body[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(`${what}.${key} must be a finite number above 0, got ${describe(value)}`);
  }
  return value;
}

function flag(body: Fields, key: string, what: string): boolean | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`${what}.${key} must be true or false, got ${describe(v)}`);
  return v;
}

/** The engine options a migrate or evacuate request may set, into `request`. */
function engineFields(b: Fields, what: string, request: Pick<MigrateGuestRequest, 'downtimeBudgetMs' | 'maxBandwidthBytesPerSec' | 'codec'>): void {
  const budget = positive(b, 'downtimeBudgetMs', what);
  if (budget !== undefined) request.downtimeBudgetMs = budget;
  const cap = positive(b, 'maxBandwidthBytesPerSec', what);
  if (cap !== undefined) request.maxBandwidthBytesPerSec = cap;
  if (b.codec !== undefined) {
    if (!(CODEC_CHOICES as readonly unknown[]).includes(b.codec)) {
      throw new InvalidArgumentError(`${what}.codec must be one of ${CODEC_CHOICES.join(', ')}, got ${describe(b.codec)}`);
    }
    request.codec = b.codec as CodecChoice;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

/** The body of `POST /v1/guests`. */
export function parseStartGuest(body: unknown): StartGuestRequest {
  const what = 'the start request';
  const b = object(body, what);
  only(b, what, ['name', 'kind', 'memoryBytes', 'vcpus', 'config', 'priority', 'id']);
  const request: StartGuestRequest = {
    name: text(b, 'name', what, true)!,
    memoryBytes: integer(b, 'memoryBytes', what, 1, Number.MAX_SAFE_INTEGER) ?? missing(what, 'memoryBytes'),
  };
  const kind = text(b, 'kind', what, false);
  if (kind !== undefined) request.kind = kind;
  const vcpus = integer(b, 'vcpus', what, 1, MAX_START_VCPUS);
  if (vcpus !== undefined) request.vcpus = vcpus;
  const priority = integer(b, 'priority', what, -MAX_GUEST_PRIORITY, MAX_GUEST_PRIORITY);
  if (priority !== undefined) request.priority = priority;
  if (b.config !== undefined) request.config = object(b.config, `${what}.config`);
  if (b.id !== undefined) {
    if (typeof b.id !== 'string' || !ID_PATTERN.test(b.id)) {
      throw new InvalidArgumentError(`${what}.id must be 1 to 128 letters, digits, ".", "_", ":" or "-", got ${describe(b.id)}`);
    }
    request.id = b.id;
  }
  return request;
}

/** The body of `POST /v1/guests/:id/migrate`. */
export function parseMigrateGuest(body: unknown): MigrateGuestRequest {
  const what = 'the migrate request';
  const b = object(body, what);
  only(b, what, ['to', 'downtimeBudgetMs', 'maxBandwidthBytesPerSec', 'codec']);
  const request: MigrateGuestRequest = { to: text(b, 'to', what, true)! };
  engineFields(b, what, request);
  return request;
}

/** The body of `POST /v1/host/maintenance`: whether maintenance is on. */
export function parseMaintenance(body: unknown): boolean {
  const what = 'the maintenance request';
  const b = object(body, what);
  only(b, what, ['enabled']);
  const enabled = flag(b, 'enabled', what);
  if (enabled === undefined) missing(what, 'enabled');
  return enabled;
}

/** The body of `POST /v1/host/evacuate`. */
export function parseEvacuate(body: unknown): EvacuateRequest {
  const what = 'the evacuate request';
  const b = object(body, what);
  only(b, what, ['to', 'parallel', 'perTarget', 'dryRun', 'moveWhatFits', 'orderByPause', 'downtimeBudgetMs', 'maxBandwidthBytesPerSec', 'codec']);
  const request: EvacuateRequest = {};
  if (b.to !== undefined) {
    if (!Array.isArray(b.to) || b.to.some((h) => typeof h !== 'string' || h.length === 0)) {
      throw new InvalidArgumentError(`${what}.to must be a list of host names, got ${describe(b.to)}`);
    }
    request.to = b.to as string[];
  }
  const parallel = integer(b, 'parallel', what, 1, 64);
  if (parallel !== undefined) request.parallel = parallel;
  const perTarget = integer(b, 'perTarget', what, 1, 64);
  if (perTarget !== undefined) request.perTarget = perTarget;
  const dryRun = flag(b, 'dryRun', what);
  if (dryRun !== undefined) request.dryRun = dryRun;
  const moveWhatFits = flag(b, 'moveWhatFits', what);
  if (moveWhatFits !== undefined) request.moveWhatFits = moveWhatFits;
  const orderByPause = flag(b, 'orderByPause', what);
  if (orderByPause !== undefined) request.orderByPause = orderByPause;
  engineFields(b, what, request);
  return request;
}

/** The body of `POST /v1/host/claim` and `POST /v1/host/release`: an evacuation's id. */
export function parseEvacuationClaim(body: unknown): string {
  const what = 'the claim';
  const b = object(body, what);
  only(b, what, ['evacuationId']);
  if (typeof b.evacuationId !== 'string' || !ID_PATTERN.test(b.evacuationId)) {
    throw new InvalidArgumentError(`${what}.evacuationId must be 1 to 128 letters, digits, ".", "_", ":" or "-", got ${describe(b.evacuationId)}`);
  }
  return b.evacuationId;
}

function missing(what: string, key: string): never {
  throw new InvalidArgumentError(`${what} needs "${key}"`);
}

/**
 * The migration URL (`ws://` or `wss://`) of a host given as its control URL (`http://`,
 * `https://`) or its migration URL.
 * @throws InvalidArgumentError for anything else.
 */
export function migrationUrlOf(to: string): string {
  let url: URL;
  try {
    url = new URL(to);
  } catch {
    throw new InvalidArgumentError(`"${to}" is not a host URL; give the target host as http://HOST:PORT (or ws://HOST:PORT)`);
  }
  const scheme = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[url.protocol];
  if (scheme === undefined || url.hostname === '') {
    throw new InvalidArgumentError(`"${to}" is not an http(s):// or ws(s):// URL of a host`);
  }
  return `${scheme}//${url.host}`;
}
