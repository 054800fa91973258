// --compress auto, as a user gives it: the flag parses to codec auto, and a demo with it behind a
// cap migrates the guest true to its oracle and reports the codec it was given.
import { spawnSync } from 'node:child_process';
import { expect, test } from 'vitest';
import { engineOptionsFromFlags } from '../dist/cli/options.js';
import { BIN } from './helpers/agent-process.js';

test('--compress takes auto, lz4 and none, and nothing else', () => {
  expect(engineOptionsFromFlags({ compress: 'auto' }).codec).toBe('auto');
  expect(engineOptionsFromFlags({ compress: 'lz4' }).codec).toBe('lz4');
  expect(engineOptionsFromFlags({ compress: 'none' }).codec).toBe('none');
  expect(() => engineOptionsFromFlags({ compress: 'zstd' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
});

test('demo --compress auto --max-bandwidth migrates and matches the oracle', () => {
  const r = spawnSync(
    process.execPath,
    [BIN, 'demo', '--memory', '64MiB', '--workload', 'idle', '--compress', 'auto', '--max-bandwidth', '200Mbit/s', '--warmup', '0ms', '--run-after', '100ms', '--json'],
    { encoding: 'utf8', timeout: 90_000 },
  );
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const report = JSON.parse(r.stdout);
  expect(report.outcome).toBe('completed');
  expect(report.codec).toBe('auto');
  expect(report.oracle.matches).toBe(true);
  // Most of the image went compressed: its data pages shrink to about 0.6 with lz4, and 25 MB/s
  // is far below lz4's pace on one loaded core, so auto chooses it on a busy machine too.
  expect(report.bytesWire).toBeLessThan(0.8 * report.bytesRaw);
}, 120_000);
