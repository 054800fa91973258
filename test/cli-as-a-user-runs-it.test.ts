// The livemig command, run as a user runs it: a separate process, flags, exit status, output.
import { spawnSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { checkAgainstOracle } from '../dist/cli/oracle-check.js';
import { BIN, startAgentProcess } from './helpers/agent-process.js';
import { atTerminal, FIRST_PASS_SENT_PAGES } from './helpers/at-terminal.js';

function run(args: string[], timeout = 90_000) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout });
}

test('demo --json migrates a running guest to a second process and checks it against its oracle', () => {
  const r = run(['demo', '--memory', '64MiB', '--workload', 'hotset', '--dirty-rate', '50MB/s', '--warmup', '200ms', '--run-after', '200ms', '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const report = JSON.parse(r.stdout);
  expect(report.outcome).toBe('completed');
  expect(report.verified).toBe(true);
  expect(report.memoryBytes).toBe(64 * 1024 * 1024);
  expect(report.guest.workload).toBe('hotset');
  expect(report.oracle.matches).toBe(true);
  expect(report.downtimeMs).toBeGreaterThan(0);
  expect(report.rounds.length).toBeGreaterThanOrEqual(2);
});

test('demo without --json prints a report for people', () => {
  const r = run(['demo', '--memory', '64MiB', '--workload', 'idle', '--warmup', '100ms', '--run-after', '100ms', '--compress', 'none']);
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/migrated: the guest now runs on ws:\/\/127\.0\.0\.1:\d+/);
  expect(r.stdout).toMatch(/downtime\s+[0-9.]+ ms/);
  expect(r.stdout).toMatch(/oracle: the guest on the target matches its replay/);
});

test('migrate and listen across two processes, then status', async () => {
  const agent = await startAgentProcess();
  try {
    const child = spawn(process.execPath, [BIN, 'migrate', '--to', agent.url, '--memory', '64MiB', '--warmup', '100ms', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    const report = JSON.parse(out);
    expect(report.outcome).toBe('completed');
    const resumed = await agent.waitFor((e) => e.type === 'migration-resumed');
    expect(resumed.migrationId).toBe(report.migrationId);
    const status = run(['status', '--to', agent.url, '--id', report.migrationId, '--json']);
    expect(status.status).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual({ migrationId: report.migrationId, state: 'running' });
    // The guest the agent runs is the one that left: its memory and registers are its replay's.
    const oracle = await checkAgainstOracle(agent.url, report.migrationId, report.guest);
    expect(oracle).toMatchObject({ state: 'running', memoryMatches: true, registersMatch: true });
  } finally {
    await agent.stop();
  }
});

test('migrate --calibration keeps what each switchover taught for the next run', async () => {
  const agent = await startAgentProcess();
  const dir = mkdtempSync(join(tmpdir(), 'livemig-calibration-'));
  const file = join(dir, 'calibration.json');
  const migrateOnce = async () => {
    const child = spawn(process.execPath, [BIN, 'migrate', '--to', agent.url, '--memory', '64MiB', '--warmup', '100ms', '--calibration', file, '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(0);
    const report = JSON.parse(out);
    expect(report.outcome).toBe('completed');
    const oracle = await checkAgainstOracle(agent.url, report.migrationId, report.guest);
    expect(oracle).toMatchObject({ state: 'running', memoryMatches: true, registersMatch: true });
    return JSON.parse(readFileSync(file, 'utf8'));
  };
  try {
    const first = await migrateOnce();
    expect(Object.keys(first)).toEqual(['auto']);
    expect(first.auto).toHaveLength(1);
    expect(first.auto[0]).toEqual({ roundMs: expect.any(Number), residualMs: expect.any(Number) });
    const second = await migrateOnce();
    expect(second.auto).toHaveLength(2);
    expect(second.auto[0]).toEqual(first.auto[0]);

    writeFileSync(file, '{"lz4": [{"roundMs": "soon"}]}');
    const refused = run(['migrate', '--to', agent.url, '--calibration', file]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/^livemig: ERR_INVALID_ARGUMENT: the calibration file .* is not one livemig wrote/);
  } finally {
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.each([
  [['demo', '--calibration', '/tmp/x.json'], /--calibration is for migrate/],
  [['demo', '--memory', '12XB'], /--memory "12XB" has an unknown unit/],
  [['demo', '--workload', 'busy'], /--workload "busy" is not one of idle, uniform, hotset, sequential/],
  [['demo', '--dirty-rate', 'fast'], /--dirty-rate "fast" is not a number/],
  [['demo', '--compress', 'zstd'], /--compress "zstd" is not auto, lz4 or none/],
  [['migrate', '--memory', '64MiB'], /migrate needs --to/],
  [['demo', '--bogus'], /Unknown option '--bogus'/],
  [['frobnicate'], /unknown command "frobnicate"/],
  [['listen', '--go-timeout', 'soon'], /--go-timeout "soon" is not a number/],
  [['listen', '--record-timeout', '1000h'], /--record-timeout "1000h" is longer than/],
  [['migrate', '--to', 'ws://127.0.0.1:1', '--stall-timeout', '0'], /--stall-timeout "0" must be at least 1ms/],
  [['migrate', '--to', 'ws://127.0.0.1:1', '--run-after', '2s'], /--run-after is for demo/],
  [['estimate', '--compress', 'none', '--max-bandwidth', '1Gbit/s'], /estimate does not take --compress, --max-bandwidth/],
])('%j is refused with a clear error and status 2', (args, message) => {
  const r = run(args as string[]);
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/^livemig: ERR_INVALID_ARGUMENT: /);
  expect(r.stderr).toMatch(message as RegExp);
  expect(r.stdout).toBe('');
});

test.each([
  ['migrate', '--calibration PATH', '--go-timeout'],
  ['listen', '--go-timeout DUR', '--calibration'],
  ['status', '--id ID', '--memory'],
  ['demo', '--run-after DUR', '--key-file'],
  ['estimate', '--link RATE', '--go-timeout'],
  ['keygen', 'PATH', '--memory'],
])('livemig %s --help prints its own flags, not the others\', and exits 0', (command, own, foreign) => {
  const r = run([command, '--help']);
  expect(r.status).toBe(0);
  expect(r.stdout).toContain(own);
  expect(r.stdout).not.toContain(foreign);
  expect(r.stderr).toBe('');
});

test('livemig --help lists the commands and the exit statuses; --version says the version', () => {
  const r = run(['--help']);
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/usage: livemig <command>/);
  for (const command of ['demo', 'listen', 'migrate', 'status', 'keygen', 'estimate', 'bench']) expect(r.stdout).toContain(`  ${command} `);
  const v = run(['--version']);
  expect(v.status).toBe(0);
  expect(v.stdout).toMatch(/^livemig \d+\.\d+\.\d+\n$/);
});

test('migrate to a port where nobody listens fails with ERR_CONNECT_FAILED', () => {
  const r = run(['migrate', '--to', 'ws://127.0.0.1:1', '--memory', '64MiB', '--warmup', '0ms', '--json']);
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/ERR_CONNECT_FAILED/);
});

test('Ctrl-C during a migration cancels it: the report says cancelled and the target discards its copy', async () => {
  const agent = await startAgentProcess();
  try {
    const child = spawn(
      process.execPath,
      [BIN, 'migrate', '--to', agent.url, '--memory', '256MiB', '--max-bandwidth', '40MB/s', '--compress', 'none', '--warmup', '0ms', '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await agent.waitFor((e) => e.type === 'migration-started');
    child.kill('SIGINT');
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    const report = JSON.parse(out);
    expect(report.outcome).toBe('cancelled');
    expect(report.error.code).toBe('ERR_CANCELLED');
    const discarded = await agent.waitFor((e) => e.type === 'migration-discarded');
    expect(discarded.migrationId).toBe(report.migrationId);
  } finally {
    await agent.stop();
  }
});

test('Ctrl-C during the warmup ends it at once: the report says cancelled and the guest never left', async () => {
  const agent = await startAgentProcess();
  let child: ChildProcess | undefined;
  try {
    child = spawn(process.execPath, [BIN, 'migrate', '--to', agent.url, '--memory', '64MiB', '--warmup', '10min'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout!.on('data', (d) => (text += d));
    child.stderr!.on('data', (d) => (text += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    while (!text.includes('booting') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(text).toContain('booting');
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGINT');
    // Within the test's time, far short of the ten-minute warmup.
    expect(await exited).toBe(1);
    expect(text).toMatch(/cancelled: the guest still runs on the source/);
    expect(text).toMatch(/reason\s+ERR_CANCELLED/);
  } finally {
    child?.kill('SIGKILL');
    await agent.stop();
  }
}, 60_000);

/** A child's stdout as it grows, its exit code, and a wait for a piece of text to appear in it. */
function watch(child: ChildProcess) {
  const seen = { out: '' };
  child.stdout!.on('data', (d) => (seen.out += d));
  child.stderr?.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = async (text: string | RegExp, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    const found = (): boolean => (typeof text === 'string' ? seen.out.includes(text) : text.test(seen.out));
    while (!found() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  };
  return { seen, exited, until };
}

test('Ctrl-C at the terminal during a demo cancels the migration; the demo then stops its agent', async () => {
  // At a terminal: the demo shows its progress, and Ctrl-C signals its whole foreground process
  // group, the demo's agent included.
  const demo = atTerminal(['demo', '--memory', '256MiB', '--max-bandwidth', '40MB/s', '--compress', 'none', '--warmup', '0ms']);
  await demo.until('migrating to', 30_000);
  const agentPid = Number(/\(pid (\d+)\)/.exec(demo.output)?.[1]);
  expect(agentPid).toBeGreaterThan(0);
  // 256 MiB at 40 MB/s takes about 6 s: Ctrl-C once the first pass has sent pages.
  await demo.until(FIRST_PASS_SENT_PAGES, 30_000);
  expect(demo.output).toMatch(FIRST_PASS_SENT_PAGES);
  demo.ctrlC();
  expect(await demo.exited).toBe(1);
  // Cancelled by the demo, not cut off by an agent that died under it.
  expect(demo.output).toMatch(/cancelled: the guest still runs on the source/);
  expect(demo.output).toMatch(/reason\s+ERR_CANCELLED/);
  expect(demo.output).not.toMatch(/ERR_CONNECTION_CLOSED/);
  // And the agent did not outlive the demo.
  expect(() => process.kill(agentPid, 0)).toThrow(/ESRCH/);
}, 60_000);

test('listen --supervised leaves Ctrl-C to its parent and stops when its standard input closes', async () => {
  const child = spawn(process.execPath, [BIN, 'listen', '--port', '0', '--json', '--supervised'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const { seen, exited, until } = watch(child);
  await until('"listening"', 15_000);
  const { port } = JSON.parse(seen.out.split('\n')[0]!) as { port: number };
  child.kill('SIGINT');
  // Still serving after the signal: a connection is accepted.
  await new Promise((r) => setTimeout(r, 200));
  const { connect } = await import('node:net');
  await new Promise<void>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve();
    });
    socket.on('error', reject);
  });
  expect(child.exitCode).toBeNull();
  child.stdin.end();
  expect(await exited).toBe(0);
  expect(seen.out).toMatch(/"type":"stopping","signal":"end of standard input"/);
}, 30_000);

test('the livemig command runs Node with NODE_FLAGS, and so do the agents and far ends it starts; glibc tunables are the user\'s', async () => {
  const { HUGE_PAGES_TUNABLE, NODE_FLAGS, missingNodeFlags, spawnLivemig } = await import('../dist/cli/node-flags.js');
  expect(NODE_FLAGS).toContain('--v8-pool-size=1');
  expect(NODE_FLAGS).toContain('--initial-old-space-size=128');
  // Node's own command line, as the kernel has it: the first line of bin/livemig.js for the
  // command run as a program, spawnLivemig for what the demo and the benchmark start.
  // glibc's tunables likewise, from the process's environment.
  const optionsOf = async (child: ChildProcess): Promise<{ node: string[]; tunables: string | undefined }> => {
    const { until } = watch(child);
    await until('"listening"', 15_000);
    const argv = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
    const environ = readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0');
    child.stdin!.end();
    await new Promise((resolve) => child.once('exit', resolve));
    const tunables = environ.find((entry) => entry.startsWith('GLIBC_TUNABLES='))?.slice('GLIBC_TUNABLES='.length);
    return { node: argv.slice(1, argv.indexOf(BIN)), tunables };
  };
  const { GLIBC_TUNABLES: _, ...envWithout } = process.env;
  const asProgram = await optionsOf(spawn(BIN, ['listen', '--port', '0', '--json', '--supervised'], { stdio: ['pipe', 'pipe', 'pipe'], env: envWithout }));
  expect(asProgram.node).toEqual([...NODE_FLAGS]);
  // Huge pages are the operator's choice (src/cli/node-flags.ts): none asked for by livemig itself.
  expect(asProgram.tunables).toBeUndefined();
  // What the demo and the benchmark start gets the user's tunables as they are, the opt-in too.
  const saved = process.env.GLIBC_TUNABLES;
  process.env.GLIBC_TUNABLES = HUGE_PAGES_TUNABLE;
  let started: Awaited<ReturnType<typeof optionsOf>>;
  try {
    started = await optionsOf(spawnLivemig(['listen', '--port', '0', '--json', '--supervised']));
  } finally {
    if (saved === undefined) delete process.env.GLIBC_TUNABLES;
    else process.env.GLIBC_TUNABLES = saved;
  }
  expect(started.node).toEqual([...NODE_FLAGS]);
  expect(started.tunables).toBe(HUGE_PAGES_TUNABLE);
  // An option the user gave another value is left as it is, on the command line or in NODE_OPTIONS.
  expect(missingNodeFlags([], '')).toEqual(['--v8-pool-size=1', '--initial-old-space-size=128']);
  expect(missingNodeFlags(['--v8-pool-size=3'], '')).toEqual(['--initial-old-space-size=128']);
  expect(missingNodeFlags(['--inspect', '--initial-old-space-size=64'], '--max-old-space-size=512 --v8-pool-size=2')).toEqual([]);
}, 40_000);

test('run without its Node options at a terminal, a command that pauses guests says how to run it; in a pipe it does not', async () => {
  const { missingNodeFlagsNote } = await import('../dist/cli/node-flags.js');
  expect(missingNodeFlagsNote('migrate', [])).toEqual([]);
  const note = missingNodeFlagsNote('migrate', ['--v8-pool-size=1']).join('\n');
  expect(note).toMatch(/without --v8-pool-size=1/);
  expect(note).toMatch(/`npx livemig migrate` or `node --v8-pool-size=1 bin\/livemig\.js migrate`/);
  // A migration to a port nobody listens on: it fails at once, and the guest stays on the source.
  const args = ['migrate', '--to', 'ws://127.0.0.1:1', '--memory', '64MiB', '--warmup', '0ms'];
  // `script` gives the command a terminal (util-linux, part of every Debian system).
  const quoted = [process.execPath, BIN, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const atTerminal = spawnSync('script', ['-qec', quoted, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
  expect(atTerminal.stdout).toMatch(/note: Node runs here without --v8-pool-size=1 --initial-old-space-size=128/);
  expect(atTerminal.stdout).toMatch(/ERR_CONNECT_FAILED/);
  const piped = run(args, 60_000);
  expect(piped.stderr).toMatch(/ERR_CONNECT_FAILED/);
  expect(piped.stderr).not.toMatch(/note: Node runs here/);
}, 60_000);
