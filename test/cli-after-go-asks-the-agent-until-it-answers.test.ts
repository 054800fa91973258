// The CLI's indeterminate path: when the link breaks after "go", `livemig migrate` keeps its copy
// paused and asks the agent what it did, with no deadline: until the agent answers (a restarted
// agent that holds no such migration says "unknown", and the guest resumes here: exit 1) or until
// Ctrl-C (the report says indeterminate, naming the migration: exit 3).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { writeKeyFile } from '../dist/agent/key-file.js';
import { BIN, sleep, startAgentProcess, type AgentProcess } from './helpers/agent-process.js';
import { startTripwireProxy } from './helpers/tripwire-proxy.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** How long the command is watched asking a dead agent: many times its retry interval (500 ms). */
const ASKING_MS = 3000;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function setUp(port: number): Promise<{ keyPath: string; agent: AgentProcess; url: string; struck: () => boolean }> {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-after-go-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const keyPath = join(dir, 'pool.key');
  await writeKeyFile(keyPath);
  const agent = await startAgentProcess(['--key-file', keyPath, '--port', String(port)]);
  cleanups.push(() => agent.stop());
  // The agent dies the moment its "resumed" would leave: the guest ran there, and is gone with it.
  const proxy = await startTripwireProxy(agent.url, {
    at: (p) => p.kind === 'record' && p.from === 'agent' && p.record.type === 'resumed',
    action: 'kill',
    after: false,
    kill: () => agent.child.kill('SIGKILL'),
  });
  cleanups.push(() => proxy.close());
  return { keyPath, agent, url: proxy.url, struck: () => proxy.struck !== undefined };
}

function migrateCommand(url: string, keyPath: string) {
  const child = spawn(process.execPath, [BIN, 'migrate', '--to', url, '--key-file', keyPath, '--json', '--memory', '32MiB', '--dirty-rate', '10MB/s', '--warmup', '100ms'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // A command that outlived its test must not outlive the run.
  cleanups.push(async () => void child.kill('SIGKILL'));
  let exitedYet = false;
  void exited.then(() => (exitedYet = true));
  return { child, exited, exitedYet: () => exitedYet, out: () => ({ stdout, stderr }) };
}

async function until(what: () => boolean, ms = 60_000): Promise<void> {
  for (let waited = 0; !what(); waited += 20) {
    if (waited > ms) throw new Error('timed out waiting');
    await sleep(20);
  }
}

test('the agent dies after "go" and stays dead: the command asks until Ctrl-C, then reports indeterminate and exits 3', async () => {
  const { keyPath, url, struck } = await setUp(await freePort());
  const run = migrateCommand(url, keyPath);
  await until(struck);
  // No deadline: the command is still asking long after the agent died.
  await sleep(ASKING_MS);
  expect(run.exitedYet()).toBe(false);
  run.child.kill('SIGINT');
  const status = await run.exited;
  const { stdout, stderr } = run.out();
  expect(status, stderr).toBe(3);
  const report = JSON.parse(stdout) as { outcome: string; guestRunningOn: string; migrationId: string; error?: { code: string; message: string } };
  expect(report.outcome).toBe('indeterminate');
  expect(report.guestRunningOn).toBe('unknown');
  expect(report.error?.code).toBe('ERR_INDETERMINATE');
  expect(report.error?.message).toContain(report.migrationId);
  expect(report.error?.message).toContain('cancelled');
});

test('the agent dies after "go" and comes back empty: it answers "unknown", and the guest resumes on the source (exit 1)', async () => {
  const port = await freePort();
  const { keyPath, url, struck } = await setUp(port);
  const run = migrateCommand(url, keyPath);
  await until(struck);
  await sleep(ASKING_MS / 2);
  expect(run.exitedYet()).toBe(false);
  // A restarted agent on the same address holds no guests: the source's copy is the only one.
  const restarted = await startAgentProcess(['--key-file', keyPath, '--port', String(port)]);
  cleanups.push(() => restarted.stop());
  // It asks every 500 ms: the answer ends it well within this, and a command that does not take
  // "unknown" for an answer fails here rather than at the test's timeout.
  let timer: NodeJS.Timeout | undefined;
  const stillAsking = new Promise<'still asking'>((resolve) => (timer = setTimeout(() => resolve('still asking'), 30_000)));
  const status = await Promise.race([run.exited, stillAsking]);
  clearTimeout(timer);
  const { stdout, stderr } = run.out();
  expect(status, stderr).toBe(1);
  const report = JSON.parse(stdout) as {
    outcome: string;
    guestRunningOn: string;
    resolvedAfterLinkFailure?: { code: string };
    error?: { code: string; message: string };
  };
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(report.resolvedAfterLinkFailure).toBeDefined();
  expect(report.error?.message).toContain('reported the migration unknown, so the guest resumed here');
});
