/**
 * The flags `demo` and `migrate` share, and how they become a guest configuration and engine
 * options. Defaults are named here once.
 */

import { DEFAULT_SIM_CONFIG, validateSimConfig, WORKLOADS, type SimGuestConfig, type Workload } from '../domain/sim/config.js';
import { InvalidArgumentError } from '../errors.js';
import { DEFAULT_MAX_CHANNELS } from '../protocol/limits.js';
import { CODEC_CHOICES, DEFAULT_CODEC } from '../precopy/codec-choice.js';
import { DEFAULT_DELTA_MODE, DELTA_MODES } from '../precopy/delta-plan.js';
import type { MigrateOptions } from '../precopy/migrate-options.js';
import type { DowntimeRamp } from '../precopy/policy.js';
import { DEFAULT_DOWNTIME_BUDGET_MS } from '../precopy/policy.js';
import { parsePositiveDuration, parseInteger, parseRate, parseSize } from './units.js';

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
  switchover: { type: 'string' },
  compress: { type: 'string' },
  delta: { type: 'string' },
  channels: { type: 'string' },
  'auto-converge': { type: 'string' },
  'max-bandwidth': { type: 'string' },
  'downtime-ramp': { type: 'string' },
  'stall-timeout': { type: 'string' },
  'completion-timeout': { type: 'string' },
  'timeout-action': { type: 'string' },
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
  --max-rounds N         force the switchover after N rounds (default: no limit; the
                         deadlines and auto-converge govern a guest that does not converge)
  --switchover WHEN      best | first-fit: once the pause fits, iterate on while that
                         shortens it (within a fifth more time), or stop at once (default best)
  --compress CODEC       auto | lz4 | none: auto compresses the batches where it pays
                         (a link slower than lz4, pages that shrink) (default ${DEFAULT_CODEC})
  --delta MODE           auto | on | off: send pages sent again as the bytes that changed
                         since (auto: on behind --max-bandwidth while the pages sent again
                         fit the cache) (default ${DEFAULT_DELTA_MODE})
  --channels N           page channels: N more connections, each with a worker thread per
                         side (default 1: pages on the one connection)
  --auto-converge MODE   off | on | auto: slow the guest when it outruns the link (default auto)
  --max-bandwidth RATE   never send faster, e.g. 1Gbit/s (default: no cap)
  --downtime-ramp R      start with a smaller budget and raise it: INITIAL:STEPS:INTERVAL,
                         e.g. 50ms:5:2s (default: the full budget from the start)
  --stall-timeout DUR    give up or force the switchover when the bytes left set no new
                         low for this long (default 120s)
  --completion-timeout D deadline per GiB of guest memory (default 800s)
  --timeout-action A     abort | force-switchover (default abort)
Output:
  --json                 print one JSON report on stdout and nothing else there`;

type Values = { [K in keyof typeof GUEST_AND_ENGINE_FLAGS]?: (typeof GUEST_AND_ENGINE_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };


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
  const codec = oneOf(values.compress ?? DEFAULT_CODEC, '--compress', CODEC_CHOICES);
  const options: MigrateOptions = { codec };
  if (values.delta !== undefined) options.delta = oneOf(values.delta, '--delta', DELTA_MODES);
  if (values['downtime-budget'] !== undefined) options.downtimeBudgetMs = parsePositiveDuration(values['downtime-budget'], '--downtime-budget');
  if (values.channels !== undefined) options.channels = parseInteger(values.channels, '--channels', 1, DEFAULT_MAX_CHANNELS);
  if (values['max-rounds'] !== undefined) options.maxRounds = parseInteger(values['max-rounds'], '--max-rounds', 1, 10_000);
  if (values.switchover !== undefined) options.switchover = oneOf(values.switchover, '--switchover', ['best', 'first-fit'] as const);
  if (values['auto-converge'] !== undefined) {
    options.autoConverge = oneOf(values['auto-converge'], '--auto-converge', ['off', 'on', 'auto'] as const);
  }
  if (values['max-bandwidth'] !== undefined) {
    const rate = parseRate(values['max-bandwidth'], '--max-bandwidth');
    if (rate <= 0) throw new InvalidArgumentError('--max-bandwidth must be above zero');
    options.maxBandwidthBytesPerSec = rate;
  }
  if (values['downtime-ramp'] !== undefined) options.downtimeRamp = parseRamp(values['downtime-ramp']);
  if (values['stall-timeout'] !== undefined) options.stallTimeoutMs = parsePositiveDuration(values['stall-timeout'], '--stall-timeout');
  if (values['completion-timeout'] !== undefined) {
    options.completionTimeoutMsPerGiB = parsePositiveDuration(values['completion-timeout'], '--completion-timeout');
  }
  if (values['timeout-action'] !== undefined) {
    options.timeoutAction = oneOf(values['timeout-action'], '--timeout-action', ['abort', 'force-switchover'] as const);
  }
  return options;
}

function oneOf<T extends string>(value: string, flag: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`${flag} "${value}" is not ${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}`);
  }
  return value as T;
}

/** `50ms:5:2s` -> a ramp from 50 ms in 5 steps, one every 2 s. */
function parseRamp(text: string): DowntimeRamp {
  const parts = text.split(':');
  if (parts.length !== 3) {
    throw new InvalidArgumentError(`--downtime-ramp "${text}" is not INITIAL:STEPS:INTERVAL (for example 50ms:5:2s)`);
  }
  return {
    initialMs: parsePositiveDuration(parts[0]!, '--downtime-ramp initial budget'),
    steps: parseInteger(parts[1]!, '--downtime-ramp steps', 1, 1000),
    stepIntervalMs: parsePositiveDuration(parts[2]!, '--downtime-ramp interval'),
  };
}
