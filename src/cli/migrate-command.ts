/** `livemig migrate`: boot a guest here and migrate it live to an agent. */

import { InvalidArgumentError } from '../errors.js';
import { SwitchoverCalibration } from '../precopy/switchover-calibration.js';
import { DEFAULT_CODEC, type CodecChoice } from '../precopy/codec-choice.js';
import { agentUrlFlag, CONNECT_FLAGS, CONNECT_HELP, connectOptionsFromFlags, parse } from './args.js';
import { readCalibrations, writeCalibrations } from './calibration-file.js';
import { EXIT_STATUS_HELP, exitCode } from './exit-status.js';
import { engineOptionsFromFlags, GUEST_AND_ENGINE_FLAGS, GUEST_AND_ENGINE_HELP, guestConfigFromFlags } from './options.js';
import { runSource } from './source-run.js';
import { parseDuration } from './units.js';

/** The flags of `demo` and `migrate`. */
export const RUN_FLAGS = {
  ...GUEST_AND_ENGINE_FLAGS,
  ...CONNECT_FLAGS,
  warmup: { type: 'string' },
  'run-after': { type: 'string' },
  to: { type: 'string' },
  calibration: { type: 'string' },
} as const;

export const MIGRATE_HELP = `usage: livemig migrate --to ws://HOST:PORT [flags]

Boots a guest here and migrates it live to the agent at --to; prints the report.

  --to URL               the target agent: ws://HOST:PORT or wss://HOST:PORT
  --warmup DUR           let the guest run this long before migrating (default 1s)
${CONNECT_HELP}
  --calibration PATH     keep the pause prediction's calibration in PATH (JSON, per codec;
                         created if missing): later runs predict their first pause from it
${GUEST_AND_ENGINE_HELP}

${EXIT_STATUS_HELP}
`;

export async function migrateCommand(args: string[]): Promise<number> {
  const { values } = parse(args, RUN_FLAGS);
  const to = agentUrlFlag(values.to, 'migrate');
  if (values['run-after'] !== undefined) {
    throw new InvalidArgumentError('--run-after is for demo, which checks the guest on the target after that long; migrate leaves the guest to the agent');
  }
  const config = guestConfigFromFlags(values);
  const engine = engineOptionsFromFlags(values);
  const warmupMs = parseDuration(values.warmup ?? '1s', '--warmup');
  const json = values.json ?? false;
  const connect = await connectOptionsFromFlags(values, to);
  const codec: CodecChoice = engine.codec ?? DEFAULT_CODEC;
  const saved = values.calibration === undefined ? undefined : await readCalibrations(values.calibration);
  if (saved) engine.calibration = saved.get(codec) ?? new SwitchoverCalibration();
  const report = await runSource(
    config,
    engine,
    to,
    warmupMs,
    (line) => {
      if (!json) process.stdout.write(`${line}\n`);
    },
    connect,
    json,
  );
  if (saved && engine.calibration) {
    saved.set(codec, engine.calibration);
    // Bookkeeping: a calibration that cannot be saved never changes what the migration did.
    try {
      await writeCalibrations(values.calibration!, saved);
    } catch (err) {
      const warning = `the calibration could not be saved to ${values.calibration}: ${(err as Error).message}`;
      (report.warnings ??= []).push(warning);
      process.stderr.write(`livemig: warning: ${warning}\n`);
    }
  }
  if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  return exitCode(report);
}
