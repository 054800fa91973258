// A domain seen through a proxy that counts hook calls and may replace hooks, and a target backend
// of simulated guests whose domains are all seen that way: for tests that make one hook fail or
// take its time, and look at what the engine called.
import { SimTargetBackend } from '../../dist/domain/sim/target-backend.js';
import type { DomainDescriptor, TargetBackend, TargetDomain } from '../../dist/domain/backend.js';

/** Replacements of hooks, called with the real domain as `this`. */
export type HookReplacements = Record<string, (this: never, ...args: never[]) => unknown>;

export interface Watched<T extends object> {
  domain: T;
  /** How often each hook was called. */
  calls: Record<string, number>;
  /** The domain behind the proxy. */
  real: T;
}

/** `real` seen through a proxy that counts calls of its methods and runs `replace`'s instead. */
export function watched<T extends object>(real: T, replace: HookReplacements = {}): Watched<T> {
  const calls: Record<string, number> = {};
  const domain = new Proxy(real, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof key !== 'string' || typeof value !== 'function') return value;
      return (...args: never[]) => {
        calls[key] = (calls[key] ?? 0) + 1;
        return (replace[key] ?? value).apply(target as never, args);
      };
    },
  });
  return { domain, calls, real };
}

/** Builds simulated guests (kind "sim") for incoming migrations, each watched with `replace`. */
export class WatchedSimBackend implements TargetBackend {
  readonly kind = 'sim';
  readonly built: Array<Watched<TargetDomain>> = [];
  private readonly inner = new SimTargetBackend();

  constructor(private readonly replace: HookReplacements = {}) {}

  async create(descriptor: DomainDescriptor): Promise<TargetDomain> {
    const w = watched(await this.inner.create(descriptor), this.replace);
    this.built.push(w);
    return w.domain;
  }

  /** Destroys every domain built (idempotent on simulated guests). */
  async destroyAll(): Promise<void> {
    for (const w of this.built) await w.real.destroy();
  }
}
