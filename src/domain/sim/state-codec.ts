/**
 * The simulated guest's device-state blob: the registers of every vCPU, as msgpack. It travels
 * from source to target in the migration stream, so the decoder treats it as untrusted and
 * accepts exactly one shape:
 *
 *     { version: 1, vcpus: [ { steps: uint, rng: [u32 x 4, not all 0], regs: [u32 x 8] }, ... ] }
 */

import { Packr } from 'msgpackr';
import { MalformedRecordError } from '../../errors.js';
import { MAX_SIM_VCPUS } from './config.js';
import { VCPU_REGISTERS, type VcpuState } from './workload.js';

/** Version of the state blob's layout. */
export const SIM_STATE_VERSION = 1;

/**
 * Largest state blob the decoder looks at, in bytes. A real one of {@link MAX_SIM_VCPUS} vCPUs
 * takes under 8 KiB, so anything larger is malformed.
 */
export const MAX_SIM_STATE_BYTES = 64 * 1024;

// Plain maps and arrays only: no msgpackr record extension, so any msgpack reader can inspect it.
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/** Encodes vCPU states into a state blob. */
export function encodeSimState(states: readonly VcpuState[]): Uint8Array {
  const body = {
    version: SIM_STATE_VERSION,
    vcpus: states.map((state) => ({
      steps: state.steps,
      rng: [state.rng[0], state.rng[1], state.rng[2], state.rng[3]],
      regs: state.regs.slice(0, VCPU_REGISTERS),
    })),
  };
  // packr.pack returns a view into a buffer it reuses; the caller gets bytes of its own.
  return new Uint8Array(packr.pack(body));
}

function fail(message: string): never {
  throw new MalformedRecordError(`simulated guest state: ${message}`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function expectKeys(value: Record<string, unknown>, keys: readonly string[], where: string): void {
  const own = Object.keys(value);
  for (const key of own) {
    if (!keys.includes(key)) fail(`${where} has an unknown field "${key}"`);
  }
  for (const key of keys) {
    if (!Object.hasOwn(value, key)) fail(`${where} lacks the field "${key}"`);
  }
}

function u32Array(value: unknown, length: number, where: string): number[] {
  if (!Array.isArray(value) || value.length !== length) fail(`${where} must be an array of ${length} u32 integers`);
  const out: number[] = [];
  for (let i = 0; i < length; i++) {
    const item: unknown = value[i];
    if (!(typeof item === 'number' && Number.isInteger(item) && item >= 0 && item <= 0xffffffff)) {
      fail(`${where}[${i}] must be a u32 integer`);
    }
    out.push(item);
  }
  return out;
}

/**
 * Decodes a state blob. Throws MalformedRecordError, naming the offending field, for anything
 * but the exact shape above.
 */
export function decodeSimState(blob: Uint8Array): VcpuState[] {
  if (!(blob instanceof Uint8Array)) fail('blob must be bytes');
  if (blob.length === 0) fail('blob is empty');
  if (blob.length > MAX_SIM_STATE_BYTES) fail(`blob of ${blob.length} bytes exceeds ${MAX_SIM_STATE_BYTES}`);
  let body: unknown;
  try {
    // msgpackr caches a DataView on the array it reads; give it a view of our own, not the caller's.
    body = packr.unpack(new Uint8Array(blob.buffer, blob.byteOffset, blob.byteLength));
  } catch (err) {
    throw new MalformedRecordError(`simulated guest state: not valid msgpack (${(err as Error).message})`, { cause: err });
  }
  if (!isPlainObject(body)) fail('top level must be a map');
  expectKeys(body, ['version', 'vcpus'], 'top level');
  if (body.version !== SIM_STATE_VERSION) {
    fail(`version ${String(body.version)} is not supported (expected ${SIM_STATE_VERSION})`);
  }
  const vcpus = body.vcpus;
  if (!Array.isArray(vcpus) || vcpus.length < 1 || vcpus.length > MAX_SIM_VCPUS) {
    fail(`vcpus must be an array of 1 to ${MAX_SIM_VCPUS} entries`);
  }
  return vcpus.map((entry: unknown, i): VcpuState => {
    const where = `vcpus[${i}]`;
    if (!isPlainObject(entry)) fail(`${where} must be a map`);
    expectKeys(entry, ['steps', 'rng', 'regs'], where);
    const steps = entry.steps;
    if (!(typeof steps === 'number' && Number.isSafeInteger(steps) && steps >= 0)) {
      fail(`${where}.steps must be a whole number, 0 or more`);
    }
    const rng = u32Array(entry.rng, 4, `${where}.rng`);
    if (rng.every((word) => word === 0)) fail(`${where}.rng must not be all zeros`);
    const regs = u32Array(entry.regs, VCPU_REGISTERS, `${where}.regs`);
    return { steps, rng: [rng[0]!, rng[1]!, rng[2]!, rng[3]!], regs };
  });
}
