/**
 * `--backend LIST` of `livemig host`: the kinds of guest a host starts and receives, as
 * `listen --backend` chooses them (the simulator by default; QEMU only when asked for and
 * installed). Each kind brings its target backend, its launcher, and for QEMU the adopter that
 * lets a guest that arrived move on.
 */

import type { GuestAdopter, GuestLauncher } from '../agent/guest-launcher.js';
import { launchSimGuest } from '../agent/guest-launcher.js';
import { adoptQemuGuest, qemuGuestLauncher } from '../agent/qemu-guest-launcher.js';
import type { TargetBackend } from '../domain/backend.js';
import { QemuTargetBackend } from '../domain/qemu/target-backend.js';
import { targetBackendsFromFlag, type BackendFlagOptions } from './backend-flags.js';

/** What a host is given for the kinds of guest it runs. */
export interface HostBackends {
  backends: TargetBackend[];
  launchers: Map<string, GuestLauncher>;
  adopters: Map<string, GuestAdopter>;
}

/** The backends `list` names (comma-separated). */
export function hostBackendsFromFlag(list: string, options: BackendFlagOptions = {}): HostBackends {
  const backends = targetBackendsFromFlag(list, options);
  const launchers = new Map<string, GuestLauncher>();
  const adopters = new Map<string, GuestAdopter>();
  for (const backend of backends) {
    if (backend instanceof QemuTargetBackend) {
      launchers.set(backend.kind, qemuGuestLauncher({ dir: backend.dir }));
      adopters.set(backend.kind, adoptQemuGuest);
    } else {
      launchers.set(backend.kind, launchSimGuest);
    }
  }
  return { backends, launchers, adopters };
}
