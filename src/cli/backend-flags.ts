/**
 * `--backend LIST` of `livemig listen`: which kinds of guest an agent receives. The simulator is
 * the default; QEMU is offered only when asked for, since it lets any peer holding the pool key
 * start QEMU processes on this host, and only where QEMU is installed.
 */

import type { TargetBackend } from '../domain/backend.js';
import { QemuTargetBackend } from '../domain/qemu/target-backend.js';
import { SimTargetBackend } from '../domain/sim/target-backend.js';
import { DomainFailedError, InvalidArgumentError } from '../errors.js';

/** The backends `livemig listen` can offer. */
export const BACKEND_NAMES = ['sim', 'qemu'] as const;

/** How the backends are set up beyond their names (`--qemu-dir`, `--prefault`). */
export interface BackendFlagOptions {
  /** Where QEMU guests are kept; only with `qemu` in the list. */
  qemuDir?: string;
  /** Whether a simulated guest's fresh memory is faulted in from a worker while round 0 arrives. */
  prefault?: boolean;
  /** Whether the simulator keeps threads started for the next guest (a long-running agent's choice). */
  spareThreads?: boolean;
}

/**
 * `--prefault` and `--no-prefault` as the backend option: undefined when neither is given (the
 * backend's default, on), a usage error when both are.
 */
export function prefaultFromFlags(values: { prefault?: boolean; 'no-prefault'?: boolean }): boolean | undefined {
  if (values.prefault && values['no-prefault']) throw new InvalidArgumentError('--prefault and --no-prefault contradict each other');
  if (values['no-prefault']) return false;
  return values.prefault ? true : undefined;
}

/** The backends `list` names (comma-separated). */
export function targetBackendsFromFlag(list: string, options: BackendFlagOptions = {}): TargetBackend[] {
  const { qemuDir, prefault, spareThreads } = options;
  const names = [...new Set(list.split(',').map((n) => n.trim()).filter(Boolean))];
  if (names.length === 0) throw new InvalidArgumentError(`--backend names no backend; give one or more of ${BACKEND_NAMES.join(', ')}`);
  if (qemuDir !== undefined && !names.includes('qemu')) throw new InvalidArgumentError('--qemu-dir is for --backend qemu');
  if (prefault !== undefined && !names.includes('sim')) throw new InvalidArgumentError(`--${prefault ? '' : 'no-'}prefault is for --backend sim`);
  return names.map((name) => {
    if (name === 'sim') return new SimTargetBackend({ prefault, spareThreads });
    if (name === 'qemu') {
      const qemu = new QemuTargetBackend(qemuDir === undefined ? {} : { dir: qemuDir });
      if (!qemu.available) throw new DomainFailedError('--backend qemu needs qemu-system-x86_64 on PATH (Debian: apt-get install qemu-system-x86)');
      return qemu;
    }
    throw new InvalidArgumentError(`--backend "${name}" is not one of ${BACKEND_NAMES.join(', ')}`);
  });
}
