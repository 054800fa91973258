// `--backend`, `--qemu-dir` and `--prefault` of `livemig listen` and `livemig host`: the backends
// an agent is given, and what is refused before anything starts.
import { describe, expect, it } from 'vitest';
import { prefaultFromFlags, targetBackendsFromFlag } from '../dist/cli/backend-flags.js';
import { hostBackendsFromFlag } from '../dist/cli/host-backends.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { InvalidArgumentError } from '../dist/errors.js';

describe('backend flags', () => {
  it('gives the simulator with a pre-fault unless told not to', () => {
    const [plain] = targetBackendsFromFlag('sim');
    expect(plain).toBeInstanceOf(SimTargetBackend);
    expect((plain as SimTargetBackend).prefault).toBe(true);
    const [still] = targetBackendsFromFlag('sim', { prefault: false });
    expect((still as SimTargetBackend).prefault).toBe(false);
    const host = hostBackendsFromFlag('sim', { prefault: false });
    expect((host.backends[0] as SimTargetBackend).prefault).toBe(false);
    expect([...host.launchers.keys()]).toEqual(['sim']);
    expect(new SimTargetBackend().prefault).toBe(true);
  });

  it('reads --prefault and --no-prefault: neither leaves the default, both contradict', () => {
    expect(prefaultFromFlags({})).toBeUndefined();
    expect(prefaultFromFlags({ prefault: true })).toBe(true);
    expect(prefaultFromFlags({ 'no-prefault': true })).toBe(false);
    expect(() => prefaultFromFlags({ prefault: true, 'no-prefault': true })).toThrow(/--prefault and --no-prefault contradict/);
  });

  it.each([
    ['', {}, /--backend names no backend/],
    ['xen', {}, /--backend "xen" is not one of sim, qemu/],
    ['sim', { qemuDir: '/dev/shm' }, /--qemu-dir is for --backend qemu/],
    ['qemu', { prefault: true }, /--prefault is for --backend sim/],
    ['qemu', { prefault: false }, /--no-prefault is for --backend sim/],
  ])('refuses --backend %j with %j', (list, options, message) => {
    expect(() => targetBackendsFromFlag(list, options)).toThrow(InvalidArgumentError);
    expect(() => targetBackendsFromFlag(list, options)).toThrow(message);
  });
});
