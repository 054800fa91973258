// --delta, as a user gives it: the flag parses to the engine's delta mode, anything else is
// refused, and a demo of a busy guest behind a cap with --delta on sends pages again as deltas and
// migrates the guest true to its oracle.
import { spawnSync } from 'node:child_process';
import { expect, test } from 'vitest';
import { engineOptionsFromFlags } from '../dist/cli/options.js';
import { BIN } from './helpers/agent-process.js';

test('--delta takes auto, on and off, and nothing else; left out, the engine decides', () => {
  expect(engineOptionsFromFlags({ delta: 'auto' }).delta).toBe('auto');
  expect(engineOptionsFromFlags({ delta: 'on' }).delta).toBe('on');
  expect(engineOptionsFromFlags({ delta: 'off' }).delta).toBe('off');
  expect(engineOptionsFromFlags({}).delta).toBeUndefined();
  expect(() => engineOptionsFromFlags({ delta: 'yes' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
});

test('demo --delta on --max-bandwidth sends deltas and matches the oracle', () => {
  const r = spawnSync(
    process.execPath,
    [BIN, 'demo', '--memory', '256MiB', '--workload', 'hotset', '--hot-set', '16MiB', '--dirty-rate', '60MB/s', '--delta', 'on', '--max-bandwidth', '2Gbit/s', '--warmup', '200ms', '--run-after', '100ms', '--json'],
    { encoding: 'utf8', timeout: 90_000 },
  );
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const report = JSON.parse(r.stdout);
  expect(report.outcome).toBe('completed');
  expect(report.delta).toMatchObject({ mode: 'on', on: true });
  expect(report.delta.pages).toBeGreaterThan(0);
  expect(report.oracle.matches).toBe(true);
}, 120_000);
