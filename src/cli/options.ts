/**
 * The flags `demo` and `migrate` share, and how they become a guest configuration and engine
 * options. Defaults are named here once.
 */

import { DEFAULT_SIM_CONFIG, validateSimConfig, type SimGuestConfig, type Workload } from '../domain/sim/config.js';
import { InvalidArgumentError } from '../errors.js';
import type { MigrateOptions } from '../precopy/migration.js';
import { DEFAULT_DOWNTIME_BUDGET_MS, DEFAULT_MAX_ROUNDS } from '../precopy/policy.js';
import type { PageCodec } from '../protocol/records.js';
import { parseDuration, parseInteger, parseRate, parseSize } from './units.js';

/** parseArgs option table of the guest and engine flags. */
export const GUEST_AND_ENGINE_FLAGS = {
  memory: { type: 'string' },
  vcpus: { type: 'string' },
  workload: { type: 'string' },
  'dirty-rate': { type: 'string' },
  'hot-set': { type: 'string' },
  seed: { type: 'string' },
  'downtime-budget': { type: 'string' },
  'max-rounds': { type: 'string' },
  compress: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Help text of the shared flags. */
export const GUEST_AND_ENGINE_HELP = `Guest (simulated):
  --memory SIZE          guest memory (default 1GiB; e.g. 256MiB)
  --vcpus N              virtual CPUs (default 1)
  --workload KIND        idle | uniform | hotset | sequential (default uniform)
  --dirty-rate RATE      pages dirtied per second x 4 KiB (default 100MB/s)
  --hot-set SIZE         working set of the hotset workload (default 64MiB)
  --seed N               seed of the memory image and workload (default 1)
Engine:
  --downtime-budget DUR  longest pause to aim for (default ${DEFAULT_DOWNTIME_BUDGET_MS}ms)
  --max-rounds N         stop iterating after N rounds (default ${DEFAULT_MAX_ROUNDS})
  --compress CODEC       lz4 | none (default lz4)
Output:
  --json                 print one JSON report on stdout and nothing else there`;

type Values = { [K in keyof typeof GUEST_AND_ENGINE_FLAGS]?: (typeof GUEST_AND_ENGINE_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

const WORKLOADS: readonly Workload[] = ['idle', 'uniform', 'hotset', 'sequential'];

/** The guest configuration the flags ask for. */
export function guestConfigFromFlags(values: Values): SimGuestConfig {
  const workload = (values.workload ?? DEFAULT_SIM_CONFIG.workload) as Workload;
  if (!WORKLOADS.includes(workload)) {
    throw new InvalidArgumentError(`--workload "${values.workload}" is not one of ${WORKLOADS.join(', ')}`);
  }
  const config: SimGuestConfig = {
    memoryBytes: values.memory !== undefined ? parseSize(values.memory, '--memory') : DEFAULT_SIM_CONFIG.memoryBytes,
    vcpus: values.vcpus !== undefined ? parseInteger(values.vcpus, '--vcpus', 1, 64) : DEFAULT_SIM_CONFIG.vcpus,
    workload,
    dirtyRateBytesPerSec: values['dirty-rate'] !== undefined ? parseRate(values['dirty-rate'], '--dirty-rate') : DEFAULT_SIM_CONFIG.dirtyRateBytesPerSec,
    hotSetBytes: values['hot-set'] !== undefined ? parseSize(values['hot-set'], '--hot-set') : DEFAULT_SIM_CONFIG.hotSetBytes,
    seed: values.seed !== undefined ? parseInteger(values.seed, '--seed', 0, 0xffffffff) : DEFAULT_SIM_CONFIG.seed,
  };
  if (config.hotSetBytes > config.memoryBytes) config.hotSetBytes = config.memoryBytes;
  validateSimConfig(config);
  return config;
}

/** The engine options the flags ask for. */
export function engineOptionsFromFlags(values: Values): MigrateOptions {
  const codec = (values.compress ?? 'lz4') as PageCodec;
  if (codec !== 'lz4' && codec !== 'none') throw new InvalidArgumentError(`--compress "${values.compress}" is not lz4 or none`);
  return {
    codec,
    downtimeBudgetMs: values['downtime-budget'] !== undefined ? parseDuration(values['downtime-budget'], '--downtime-budget') : undefined,
    maxRounds: values['max-rounds'] !== undefined ? parseInteger(values['max-rounds'], '--max-rounds', 1, 10_000) : undefined,
  };
}
