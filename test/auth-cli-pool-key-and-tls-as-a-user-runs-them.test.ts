// The pool key and TLS flags of the livemig command, run as a user runs them: separate
// processes, exit status and messages.
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { BIN, startAgentProcess } from './helpers/agent-process.js';
import { makeLoopbackCertificate, type TestCertificate } from './helpers/tls-cert.js';

let dir: string;
let keyFile: string;
let cert: TestCertificate;

function run(args: string[], timeout = 90_000) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout });
}

/** Runs the command without blocking the test process, so an agent it started can answer. */
function runAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (status) => resolve({ status, stdout, stderr })));
}

const GUEST = ['--memory', '64MiB', '--workload', 'hotset', '--hot-set', '8MiB', '--dirty-rate', '20MB/s', '--warmup', '100ms', '--json'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'livemig-cli-keys-'));
  keyFile = join(dir, 'pool.key');
  cert = await makeLoopbackCertificate();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await cert.remove();
});

test('keygen writes a 0600 hex key and never overwrites one', async () => {
  const r = run(['keygen', keyFile]);
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/wrote a new pool key/);
  expect(((await stat(keyFile)).mode & 0o777).toString(8)).toBe('600');
  const again = run(['keygen', keyFile]);
  expect(again.status).toBe(2);
  expect(again.stderr).toMatch(/^livemig: ERR_INVALID_ARGUMENT: .*already exists/);
});

test('listen --key-file serves migrate and status with the key, and refuses them without it', async () => {
  const agent = await startAgentProcess(['--key-file', keyFile]);
  try {
    expect(agent.events[0]).toMatchObject({ type: 'listening', keyRequired: true });

    const refused = await runAsync(['migrate', '--to', agent.url, ...GUEST]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/ERR_AUTH_FAILED: .*pass the pool key.*--key-file/);
    await agent.waitFor((e) => e.type === 'connection-refused');

    const migrated = await runAsync(['migrate', '--to', agent.url, '--key-file', keyFile, ...GUEST]);
    expect(migrated.stderr).toBe('');
    expect(migrated.status).toBe(0);
    const report = JSON.parse(migrated.stdout) as { outcome: string; migrationId: string };
    expect(report.outcome).toBe('completed');

    const status = await runAsync(['status', '--to', agent.url, '--id', report.migrationId, '--key-file', keyFile, '--json']);
    expect(status.status).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual({ migrationId: report.migrationId, state: 'running' });
    const anonymous = await runAsync(['status', '--to', agent.url, '--id', report.migrationId]);
    expect(anonymous.status).toBe(1);
    expect(anonymous.stderr).toMatch(/ERR_AUTH_FAILED/);
  } finally {
    await agent.stop();
  }
});

test('listen --tls-cert --tls-key serves wss, and migrate --tls-ca trusts it', async () => {
  const agent = await startAgentProcess(['--key-file', keyFile, '--tls-cert', cert.certPath, '--tls-key', cert.keyPath]);
  try {
    expect(agent.url).toMatch(/^wss:\/\//);
    const untrusted = await runAsync(['migrate', '--to', agent.url, '--key-file', keyFile, ...GUEST]);
    expect(untrusted.status).toBe(1);
    expect(untrusted.stderr).toMatch(/ERR_CONNECT_FAILED: .*certificate.*--tls-ca/);
    const migrated = await runAsync(['migrate', '--to', agent.url, '--key-file', keyFile, '--tls-ca', cert.certPath, ...GUEST]);
    expect(migrated.status).toBe(0);
    expect(JSON.parse(migrated.stdout)).toMatchObject({ outcome: 'completed', verified: true });
  } finally {
    await agent.stop();
  }
});

test.each([
  [['listen', '--host', '0.0.0.0', '--port', '0'], /refusing to listen on 0\.0\.0\.0 without a pool key.*--insecure/],
  [['listen', '--port', '0', '--tls-cert', 'agent.crt'], /--tls-cert and --tls-key go together/],
  [['listen', '--port', '0', '--key-file', '/nonexistent/pool.key'], /cannot read the key file .*no such file/],
  [['migrate', '--to', 'ws://127.0.0.1:1', '--key-file', '/nonexistent/pool.key'], /cannot read the key file/],
  [['keygen'], /keygen needs exactly one argument/],
])('%j is refused with a clear error and status 2, before anything listens', (args, message) => {
  const r = run(args as string[], 15_000);
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/^livemig: ERR_INVALID_ARGUMENT: /);
  expect(r.stderr).toMatch(message as RegExp);
  expect(r.stdout).toBe('');
});

test('a key file others can read is refused', async () => {
  const exposed = join(dir, 'exposed.key');
  await writeFile(exposed, 'ab'.repeat(32));
  await chmod(exposed, 0o644);
  const r = run(['listen', '--port', '0', '--key-file', exposed], 15_000);
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/mode 644.*chmod 600/);
});
