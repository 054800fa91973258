// `livemig migrate` as the README's exit-status table says: a completed migration whose outcome
// had to be asked of the agent exits 4 (not 1, "did not complete"); --json prints one report
// whatever failed; bookkeeping (the calibration) never turns a completed migration into a
// failure; bad values are usage errors (exit 2) before anything starts.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { writeKeyFile } from '../dist/agent/key-file.js';
import { queryAgent } from '../dist/agent/agent-client.js';
import { checkAgainstOracle } from '../dist/cli/oracle-check.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { BIN, startAgentProcess, type AgentProcess } from './helpers/agent-process.js';
import { startTripwireProxy } from './helpers/tripwire-proxy.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function livemig(args: string[], onStdoutLine?: (line: string) => void): Promise<Run> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
    if (onStdoutLine) for (const line of c.toString().split('\n')) if (line) onStdoutLine(line);
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('exit', (status) => resolve({ status, stdout, stderr })));
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-exit-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function agentWithKey(): Promise<{ agent: AgentProcess; keyPath: string; key: Uint8Array }> {
  const keyPath = join(await tempDir(), 'pool.key');
  const key = await writeKeyFile(keyPath);
  const agent = await startAgentProcess(['--key-file', keyPath]);
  cleanups.push(() => agent.stop());
  return { agent, keyPath, key };
}

const SMALL = ['--memory', '64MiB', '--dirty-rate', '20MB/s', '--warmup', '100ms'];

test('the link cut instead of "resumed": completed, asked of the agent, unverified: exit 4', async () => {
  const { agent, keyPath, key } = await agentWithKey();
  const proxy = await startTripwireProxy(agent.url, {
    at: (p) => p.kind === 'record' && p.from === 'agent' && p.record.type === 'resumed',
    action: 'cut',
    after: false,
  });
  cleanups.push(() => proxy.close());
  const run = await livemig(['migrate', '--to', proxy.url, '--key-file', keyPath, '--json', ...SMALL]);
  expect(proxy.struck).toBeDefined();
  expect(run.status, run.stderr).toBe(4);
  const report = JSON.parse(run.stdout) as { outcome: string; guestRunningOn: string; verified: boolean; migrationId: string; resolvedAfterLinkFailure?: { code: string } };
  expect(report.outcome).toBe('completed');
  expect(report.guestRunningOn).toBe('target');
  expect(report.verified).toBe(false);
  expect(report.resolvedAfterLinkFailure?.code).toBe('ERR_CONNECTION_CLOSED');
  expect((await queryAgent(agent.url, report.migrationId, { key })).state).toBe('running');
});

test('demo: the agent gone before the oracle check: completed, the check not made, exit 4 with one report', async () => {
  // The preload kills the demo's agent as the demo begins its --run-after wait of 1234 ms.
  const preload = fileURLToPath(new URL('./fixtures/kill-demo-agent-before-oracle.mjs', import.meta.url));
  const child = spawn(process.execPath, ['--import', preload, BIN, 'demo', '--json', '--run-after', '1234ms', ...SMALL], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const status = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  expect(status, stderr).toBe(4);
  const report = JSON.parse(stdout) as { outcome: string; guestRunningOn: string; oracle?: { matches: boolean; error?: { code: string } } };
  expect(report).toMatchObject({ outcome: 'completed', guestRunningOn: 'target', oracle: { matches: false, error: { code: 'ERR_CONNECT_FAILED' } } });
});

test('a completed and verified migration exits 0; the same with a wrong key exits 1 with a JSON report', async () => {
  const { agent, keyPath, key } = await agentWithKey();
  const ok = await livemig(['migrate', '--to', agent.url, '--key-file', keyPath, '--json', ...SMALL]);
  expect(ok.status, ok.stderr).toBe(0);
  const done = JSON.parse(ok.stdout) as { migrationId: string; guest: SimGuestConfig };
  expect(done).toMatchObject({ outcome: 'completed', verified: true });
  // Exit 0 says the guest runs there: its memory and registers, read on the agent, are its replay's.
  const there = await checkAgainstOracle(agent.url, done.migrationId, done.guest, { key });
  expect(there).toMatchObject({ state: 'running', memoryMatches: true, registersMatch: true });

  const wrongKey = join(await tempDir(), 'other.key');
  await writeKeyFile(wrongKey);
  const refused = await livemig(['migrate', '--to', agent.url, '--key-file', wrongKey, '--json', ...SMALL]);
  expect(refused.status).toBe(1);
  expect(JSON.parse(refused.stdout)).toMatchObject({ outcome: 'failed', guestRunningOn: 'source', error: { code: 'ERR_AUTH_FAILED' } });
});

test('nothing listening: exit 1 and a JSON report saying the guest stayed', async () => {
  const run = await livemig(['migrate', '--to', 'ws://127.0.0.1:1', '--json', ...SMALL]);
  expect(run.status).toBe(1);
  expect(JSON.parse(run.stdout)).toMatchObject({ outcome: 'failed', guestRunningOn: 'source', error: { code: 'ERR_CONNECT_FAILED' } });
});

describe('the calibration is bookkeeping', () => {
  test('a directory that does not exist is a usage error before the guest boots', async () => {
    const { agent } = await agentWithKey();
    const path = join(await tempDir(), 'missing', 'cal.json');
    const run = await livemig(['migrate', '--to', agent.url, '--calibration', path, ...SMALL]);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('ERR_INVALID_ARGUMENT');
    expect(run.stdout).not.toContain('booting');
    expect(agent.events.some((e) => e.type === 'migration-started')).toBe(false);
  });

  test('an empty path is a usage error before the guest boots', async () => {
    const run = await livemig(['migrate', '--to', 'ws://127.0.0.1:1', '--calibration', '', '--json', ...SMALL]);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('--calibration needs a file path');
    expect(run.stderr).not.toContain('booting');
  });

  test('a save whose last step fails leaves no temporary file behind', async () => {
    const { agent, keyPath } = await agentWithKey();
    const dir = await tempDir();
    const path = join(dir, 'cal.json');
    // Once the check before the migration passed, a directory takes the file's name: the new
    // calibration is written beside it and cannot be renamed over it.
    void agent.waitFor((e) => e.type === 'migration-started').then(async () => {
      await mkdir(path);
      await writeFile(join(path, 'keep'), 'x');
    });
    const run = await livemig(['migrate', '--to', agent.url, '--key-file', keyPath, '--calibration', path, '--json', ...SMALL]);
    expect(run.status, run.stderr).toBe(0);
    expect((JSON.parse(run.stdout) as { warnings?: string[] }).warnings?.[0]).toContain('could not be saved');
    expect(await readdir(dir)).toEqual(['cal.json']);
  });

  test('a save that fails after the migration is a warning, and the status stays 0', async () => {
    const { agent, keyPath } = await agentWithKey();
    const dir = join(await tempDir(), 'cal');
    await mkdir(dir);
    const path = join(dir, 'cal.json');
    // The directory goes away once the migration has begun: the check before it passed.
    void agent.waitFor((e) => e.type === 'migration-started').then(() => rm(dir, { recursive: true, force: true }));
    const run = await livemig(['migrate', '--to', agent.url, '--key-file', keyPath, '--calibration', path, '--json', ...SMALL]);
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { outcome: string; warnings?: string[] };
    expect(report.outcome).toBe('completed');
    expect(report.warnings?.[0]).toContain('could not be saved');
    expect(run.stderr).toContain('warning');
  });
});

describe('usage errors: exit 2 before anything starts', () => {
  test.each([
    ['--to', 'ftp://127.0.0.1:7070', 'not a ws:// or wss:// URL'],
    ['--to', 'not a url', 'is not a URL'],
    ['--to', '127.0.0.1:7070', 'give the target agent as ws://HOST:PORT'],
    ['--to', 'http://127.0.0.1:7070', 'not a ws:// or wss:// URL'],
    ['--memory', '-64MiB', 'is negative'],
    ['--warmup', '-1s', 'is negative'],
    ['--seed', '-1', 'is negative'],
    ['--dirty-rate', '-1MB/s', '"-1MB/s" is negative'],
    ['--max-bandwidth', '-1Gbit/s', '"-1Gbit/s" is negative'],
  ])('%s %s', async (flag, value, says) => {
    const args = ['migrate', ...(flag === '--to' ? [] : ['--to', 'ws://127.0.0.1:1']), flag, value, '--json'];
    const run = await livemig(args);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(says);
    expect(run.stderr).not.toContain('ambiguous');
    expect(JSON.parse(run.stdout)).toMatchObject({ outcome: 'failed', error: { code: 'ERR_INVALID_ARGUMENT' } });
  });
});

test.each([
  ['--tls-ca with a ws:// agent', ['--to', 'ws://127.0.0.1:1', '--tls-ca', BIN], 'is for a wss:// agent'],
  ['--tls-ca of a file that does not exist', ['--to', 'wss://127.0.0.1:1', '--tls-ca', '/nonexistent/ca.pem'], 'cannot read the CA certificate'],
])('migrate %s: a usage error before the guest boots', async (_name, args, says) => {
  const run = await livemig(['migrate', ...args, '--json', ...SMALL]);
  expect(run.status).toBe(2);
  expect(run.stderr).toContain(says);
  expect(run.stderr).not.toContain('booting');
  expect(JSON.parse(run.stdout)).toMatchObject({ outcome: 'failed', error: { code: 'ERR_INVALID_ARGUMENT' } });
});

test.each([
  ['--memory', '-64MiB', '"-64MiB" is negative'],
  ['--link', '-1Gbit/s', '"-1Gbit/s" is negative'],
])('estimate %s %s: a usage error that names the value', async (flag, value, says) => {
  const run = await livemig(['estimate', flag, value, '--json']);
  expect(run.status).toBe(2);
  expect(run.stderr).toContain(says);
  expect(run.stderr).not.toContain('ambiguous');
  expect(JSON.parse(run.stdout)).toMatchObject({ outcome: 'failed', error: { code: 'ERR_INVALID_ARGUMENT' } });
});

test.each(['--help', 'migrate --help', 'demo --help'])('livemig %s shows the exit-status table the README shows', async (command) => {
  const run = await livemig(command.split(' '));
  expect(run.status).toBe(0);
  const { readFile } = await import('node:fs/promises');
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  const table = run.stdout.slice(run.stdout.indexOf('Exit status:')).trim();
  expect(table.split('\n').length).toBeGreaterThanOrEqual(6);
  expect(readme).toContain(table);
});
