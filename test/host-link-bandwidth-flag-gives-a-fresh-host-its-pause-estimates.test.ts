// `livemig host --link-bandwidth RATE` gives a fresh host the link figure its pause estimates
// need before any migration from it has measured one: parsed like every rate flag, refused when it
// is not a rate, and, handed to the agent, it turns a guest's estimate from unknown to known.
import { afterEach, expect, test } from 'vitest';
import { HostAgent } from '../dist/agent/host-agent.js';
import { parseHostFlags } from '../dist/cli/host-command.js';

const MiB = 1024 * 1024;
const hosts: HostAgent[] = [];
afterEach(async () => {
  while (hosts.length) await hosts.pop()!.close();
});

test('--link-bandwidth takes bytes or bits per second; without it no link figure is set', () => {
  expect(parseHostFlags(['--link-bandwidth', '1GB/s']).linkBytesPerSec).toBe(1_000_000_000);
  expect(parseHostFlags(['--link-bandwidth', '10Gbit/s']).linkBytesPerSec).toBe(1_250_000_000);
  expect(parseHostFlags(['--link-bandwidth', '500MiB/s']).linkBytesPerSec).toBe(500 * MiB);
  expect(parseHostFlags(['--port', '0']).linkBytesPerSec).toBeUndefined();
  expect(parseHostFlags(['--port', '0', '--capacity', '64MiB'])).toMatchObject({ port: 0, capacityBytes: 64 * MiB });
});

test('--link-bandwidth that is not a positive rate is a usage error with its flag named', () => {
  expect(() => parseHostFlags(['--link-bandwidth', 'fast'])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('--link-bandwidth') }));
  expect(() => parseHostFlags(['--link-bandwidth', '0'])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('--link-bandwidth') }));
});

test('a host started with those flags knows a guest\'s pause before its first migration', async () => {
  const fresh = await HostAgent.start({ ...parseHostFlags(['--port', '0', '--name', 'fresh', '--capacity', '64MiB']) });
  hosts.push(fresh);
  const linked = await HostAgent.start({ ...parseHostFlags(['--port', '0', '--name', 'linked', '--capacity', '64MiB', '--link-bandwidth', '1GB/s']) });
  hosts.push(linked);
  const config = { workload: 'hotset', dirtyRateBytesPerSec: 4_000_000 };
  const unknown = await fresh.startGuest({ name: 'g', memoryBytes: 16 * MiB, config });
  const known = await linked.startGuest({ name: 'g', memoryBytes: 16 * MiB, config });
  expect(unknown.pauseEstimate?.state).toBe('unknown');
  expect(known.pauseEstimate).toMatchObject({ state: 'known', linkSource: 'configured' });
  expect(known.pauseEstimate!.linkBytesPerSec).toBeGreaterThan(0);
  expect(known.pauseEstimate!.linkBytesPerSec).toBeLessThanOrEqual(1_000_000_000);
});
