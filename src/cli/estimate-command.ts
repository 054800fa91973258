/**
 * `livemig estimate`: boot the guest the flags describe, watch it for a moment, and predict its
 * migration over a link of a given speed before running it.
 */

import { SimulatedGuest } from '../domain/sim/guest.js';
import { InvalidArgumentError } from '../errors.js';
import { parse } from './args.js';
import { DEFAULT_SAMPLE_MS, estimateMigration } from '../precopy/preflight.js';
import { GUEST_AND_ENGINE_FLAGS, engineOptionsFromFlags, guestConfigFromFlags } from './options.js';
import { formatBytes, formatRate, parseDuration, parseRate } from './units.js';

/** Link speed assumed when `--link` is not given: 10 Gbit/s. */
export const DEFAULT_ESTIMATE_LINK_BYTES_PER_SEC = 1.25e9;

/** Help text of `estimate`. */
export const ESTIMATE_HELP = `estimate:
  --link RATE            bandwidth the target absorbs (default 10Gbit/s)
  --sample DUR           how long to watch the dirty log (default ${DEFAULT_SAMPLE_MS}ms)
  (and the guest flags, --downtime-budget, --max-rounds, --warmup, --json)`;

/** Engine flags the estimate has no use for; given anyway, they are refused rather than ignored. */
const ENGINE_FLAGS_ESTIMATE_IGNORES = ['compress', 'delta', 'channels', 'auto-converge', 'max-bandwidth', 'downtime-ramp', 'stall-timeout', 'completion-timeout', 'timeout-action'] as const;

/** Runs `livemig estimate`; returns the exit status. */
export async function runEstimate(args: string[]): Promise<number> {
  const { values } = parse(args, { ...GUEST_AND_ENGINE_FLAGS, link: { type: 'string' }, sample: { type: 'string' }, warmup: { type: 'string' } } as const);
  const unused = ENGINE_FLAGS_ESTIMATE_IGNORES.filter((flag) => values[flag] !== undefined);
  if (unused.length > 0) {
    throw new InvalidArgumentError(
      `estimate does not take --${unused.join(', --')}: it predicts from the guest's dirty rate and --link (give a capped link as --link), with the downtime budget and round limit only`,
    );
  }
  const config = guestConfigFromFlags(values);
  const engine = engineOptionsFromFlags(values);
  const bandwidth = values.link !== undefined ? parseRate(values.link, '--link') : DEFAULT_ESTIMATE_LINK_BYTES_PER_SEC;
  if (bandwidth <= 0) throw new InvalidArgumentError('--link must be above zero');
  const sampleMs = values.sample !== undefined ? parseDuration(values.sample, '--sample') : DEFAULT_SAMPLE_MS;
  const warmupMs = parseDuration(values.warmup ?? '500ms', '--warmup');
  const guest = await SimulatedGuest.boot(config);
  try {
    await new Promise((resolve) => setTimeout(resolve, warmupMs));
    const estimate = await estimateMigration(guest, {
      bandwidthBytesPerSec: bandwidth,
      sampleMs,
      downtimeBudgetMs: engine.downtimeBudgetMs,
      maxRounds: engine.maxRounds,
    });
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ guest: config, ...estimate }, null, 2)}\n`);
    } else {
      const lines = [
        `estimate for a ${formatBytes(config.memoryBytes)} guest (${config.workload}, ${formatRate(config.dirtyRateBytesPerSec)}) over ${formatRate(bandwidth)}:`,
        `  memory      ${formatBytes(estimate.dataBytes)} of data, ${estimate.zeroPages} zero pages`,
        `  dirtying    ${formatRate(estimate.dirtyRateBytesPerSec)} at first; ${formatBytes(estimate.workingSetBytes)} distinct in ${(estimate.sampleMs / 1000).toFixed(1)} s${estimate.workingSetStillGrowing ? ' and still growing' : ''}`,
        `  rounds      ${roundsLine(estimate.rounds.map((r) => r.bytes))}`,
        `  total       ${(estimate.predictedTotalMs / 1000).toFixed(2)} s, ${formatBytes(estimate.predictedBytes)} of page data`,
        `  pause       ${estimate.predictedDowntimeMs.toFixed(1)} ms (budget ${estimate.downtimeBudgetMs} ms)`,
        `  verdict     ${estimate.advice}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    return estimate.converges ? 0 : 1;
  } finally {
    await guest.destroy();
  }
}

/** `a -> b -> c`, with the middle elided when there are many rounds. */
function roundsLine(bytes: number[]): string {
  const shown = bytes.length <= 8 ? bytes.map(formatBytes) : [...bytes.slice(0, 4).map(formatBytes), `(${bytes.length - 6} more)`, ...bytes.slice(-2).map(formatBytes)];
  return shown.join(' -> ');
}
