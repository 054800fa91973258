// `--backend`, `--qemu-dir` and `--prefault` of `livemig listen` and `livemig host`: the backends
// an agent is given, and what is refused before anything starts.
import { describe, expect, it } from 'vitest';
import { targetBackendsFromFlag } from '../dist/cli/backend-flags.js';
import { hostBackendsFromFlag } from '../dist/cli/host-backends.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { InvalidArgumentError } from '../dist/errors.js';

describe('backend flags', () => {
  it('gives the simulator without a pre-fault unless asked, and with one when asked', () => {
    const [plain] = targetBackendsFromFlag('sim');
    expect(plain).toBeInstanceOf(SimTargetBackend);
    expect((plain as SimTargetBackend).prefault).toBe(false);
    const [faulting] = targetBackendsFromFlag('sim', { prefault: true });
    expect((faulting as SimTargetBackend).prefault).toBe(true);
    const host = hostBackendsFromFlag('sim', { prefault: true });
    expect((host.backends[0] as SimTargetBackend).prefault).toBe(true);
    expect([...host.launchers.keys()]).toEqual(['sim']);
  });

  it.each([
    ['', {}, /--backend names no backend/],
    ['xen', {}, /--backend "xen" is not one of sim, qemu/],
    ['sim', { qemuDir: '/dev/shm' }, /--qemu-dir is for --backend qemu/],
    ['qemu', { prefault: true }, /--prefault is for --backend sim/],
  ])('refuses --backend %j with %j', (list, options, message) => {
    expect(() => targetBackendsFromFlag(list, options)).toThrow(InvalidArgumentError);
    expect(() => targetBackendsFromFlag(list, options)).toThrow(message);
  });
});
