import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SIM_CONFIG,
  MAX_SIM_VCPUS,
  decodeSimState,
  encodeSimState,
  initialVcpuState,
  simConfigFromDescriptor,
  simDescriptor,
  validateSimConfig,
  type VcpuState,
} from '../dist/domain/sim/index.js';

const states: VcpuState[] = [initialVcpuState(9, 0), { steps: 123456789, rng: [1, 0, 0xffffffff, 7], regs: [0, 1, 2, 3, 4, 5, 6, 0xffffffff] }];
const good = () => ({ version: 1, vcpus: states.map((s) => ({ steps: s.steps, rng: [...s.rng], regs: [...s.regs] })) });
const malformed = expect.objectContaining({ code: 'ERR_MALFORMED_RECORD' });
const invalid = expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' });

describe('the vCPU state codec', () => {
  it('round-trips states', () => {
    expect(decodeSimState(encodeSimState(states))).toEqual(states);
    expect(decodeSimState(pack(good()))).toEqual(states);
  });

  const cases: Array<[string, () => Uint8Array]> = [
    ['empty bytes', () => new Uint8Array(0)],
    ['garbage', () => new Uint8Array([0xc1, 0xff, 0x00])],
    ['truncated', () => encodeSimState(states).subarray(0, 20)],
    ['trailing bytes', () => new Uint8Array([...encodeSimState(states), 0])],
    ['a top-level array', () => pack([1, 2])],
    ['a top-level number', () => pack(1)],
    ['another version', () => pack({ ...good(), version: 2 })],
    ['an unknown top-level field', () => pack({ ...good(), extra: 1 })],
    ['no vcpus', () => pack({ version: 1, vcpus: [] })],
    ['too many vcpus', () => pack({ version: 1, vcpus: Array.from({ length: MAX_SIM_VCPUS + 1 }, () => good().vcpus[0]) })],
    ['vcpus not an array', () => pack({ version: 1, vcpus: { 0: good().vcpus[0] } })],
    ['a missing field', () => pack({ version: 1, vcpus: [{ steps: 1, rng: [1, 2, 3, 4] }] })],
    ['an unknown vcpu field', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], pc: 0 }] })],
    ['negative steps', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], steps: -1 }] })],
    ['fractional steps', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], steps: 1.5 }] })],
    ['steps as a string', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], steps: '5' }] })],
    ['a short rng', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], rng: [1, 2, 3] }] })],
    ['an all-zero rng', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], rng: [0, 0, 0, 0] }] })],
    ['a register above u32', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], regs: [0, 0, 0, 0, 0, 0, 0, 2 ** 32] }] })],
    ['a negative register', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], regs: [0, 0, 0, 0, 0, 0, 0, -1] }] })],
    ['nine registers', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], regs: [0, 0, 0, 0, 0, 0, 0, 0, 0] }] })],
    ['registers as bytes', () => pack({ version: 1, vcpus: [{ ...good().vcpus[0], regs: new Uint8Array(8) }] })],
    ['an oversized blob', () => new Uint8Array(1024 * 1024)],
  ];

  it.each(cases)('rejects %s with ERR_MALFORMED_RECORD', (_name, build) => {
    expect(() => decodeSimState(build())).toThrow(malformed);
  });
});

describe('the simulated guest configuration', () => {
  it('accepts the defaults and round-trips through a descriptor', () => {
    expect(validateSimConfig({ ...DEFAULT_SIM_CONFIG })).toEqual(DEFAULT_SIM_CONFIG);
    const descriptor = simDescriptor({ ...DEFAULT_SIM_CONFIG }, 'vm1');
    expect(descriptor).toMatchObject({ kind: 'sim', name: 'vm1', memoryBytes: 1 << 30, pageSize: 4096, vcpus: 1 });
    expect(JSON.parse(JSON.stringify(descriptor))).toEqual(descriptor);
    expect(simConfigFromDescriptor(descriptor)).toEqual(DEFAULT_SIM_CONFIG);
  });

  const badConfigs: Array<[string, object]> = [
    ['memory not whole pages', { memoryBytes: 4097 }],
    ['zero memory', { memoryBytes: 0 }],
    ['memory above 64 GiB', { memoryBytes: 65 * 1024 ** 3, hotSetBytes: 0 }],
    ['zero vcpus', { vcpus: 0 }],
    ['65 vcpus', { vcpus: 65 }],
    ['fractional vcpus', { vcpus: 1.5 }],
    ['too little memory per vcpu', { memoryBytes: 16 * 4096 * 4 - 4096, vcpus: 4, hotSetBytes: 0 }],
    ['an unknown workload', { workload: 'bursty' }],
    ['a negative rate', { dirtyRateBytesPerSec: -1 }],
    ['an infinite rate', { dirtyRateBytesPerSec: Infinity }],
    ['a hot set larger than memory', { memoryBytes: 16 * 1024 * 1024 }],
    ['a negative seed', { seed: -1 }],
    ['a seed above u32', { seed: 2 ** 32 }],
    ['a fractional seed', { seed: 0.5 }],
  ];

  it.each(badConfigs)('rejects %s with ERR_INVALID_ARGUMENT', (_name, change) => {
    expect(() => validateSimConfig({ ...DEFAULT_SIM_CONFIG, ...change } as never)).toThrow(invalid);
  });

  it('rejects descriptors from a peer that do not add up', () => {
    const descriptor = simDescriptor({ ...DEFAULT_SIM_CONFIG });
    const broken: unknown[] = [
      null,
      { ...descriptor, kind: 'xen' },
      { ...descriptor, pageSize: 8192 },
      { ...descriptor, config: null },
      { ...descriptor, config: [] },
      { ...descriptor, memoryBytes: 2 << 30 },
      { ...descriptor, vcpus: 2 },
      { ...descriptor, config: { ...descriptor.config, seed: '1' } },
      { ...descriptor, config: { ...descriptor.config, workload: 3 } },
      { ...descriptor, config: { memoryBytes: 1 << 30 } },
    ];
    for (const d of broken) expect(() => simConfigFromDescriptor(d as never)).toThrow(invalid);
  });
});
