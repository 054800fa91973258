// Should the engine ever wait on something nothing can settle, the process runs out of work; the
// migration must then end with a report and a code, the guest running here, not the process
// exiting 0 in the middle of it. Through `livemig migrate --json` the same holds with exactly one
// report: the migration's own guard answers first, the command's only for what is left.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { BIN, startAgentProcess } from './helpers/agent-process.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/unsettled-wait.mjs', import.meta.url));
const HANG_AT_PAUSE = fileURLToPath(new URL('./fixtures/hang-at-pause.mjs', import.meta.url));
const HANG_AT_BOOT = fileURLToPath(new URL('./fixtures/hang-at-boot.mjs', import.meta.url));
const SMALL = ['--json', '--memory', '32MiB', '--dirty-rate', '10MB/s', '--warmup', '100ms'];

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

test('a ping that never settles: ERR_UNSETTLED, the guest resumed here', () => {
  const run = spawnSync(process.execPath, [FIXTURE], { encoding: 'utf8', timeout: 60_000 });
  expect(run.status, run.stderr).toBe(0);
  const out = JSON.parse(run.stdout) as { outcome: string; guestRunningOn: string; error?: { code: string }; paused: boolean };
  expect(out).toMatchObject({ outcome: 'failed', guestRunningOn: 'source', error: { code: 'ERR_UNSETTLED' }, paused: false });
});

/** `livemig migrate` with a module preloaded that leaves one of its waits unsettled. */
function migrateWith(preload: string, to: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', preload, BIN, 'migrate', '--to', to, ...SMALL], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('exit', (status) => resolve({ status, stdout, stderr })));
}

test('livemig migrate, the pause never settling and the link gone: one report, the migration\'s ERR_UNSETTLED, exit 1', async () => {
  const agent = await startAgentProcess();
  cleanups.push(() => agent.stop());
  const run = await migrateWith(HANG_AT_PAUSE, agent.url);
  expect(run.status, run.stderr).toBe(1);
  // One JSON document: parsing fails if a second report follows the first.
  const report = JSON.parse(run.stdout) as { outcome: string; guestRunningOn: string; error?: { code: string; message: string } };
  expect(report).toMatchObject({ outcome: 'failed', guestRunningOn: 'source', error: { code: 'ERR_UNSETTLED' } });
  expect(report.error!.message).toContain('stop-and-copy');
  expect(run.stderr).not.toContain('the command was left waiting');
});

test('livemig migrate, booting the guest never settling: the command\'s own guard, one report, exit 1', async () => {
  const run = await migrateWith(HANG_AT_BOOT, 'ws://127.0.0.1:1');
  expect(run.status, run.stderr).toBe(1);
  expect(JSON.parse(run.stdout)).toMatchObject({ outcome: 'failed', error: { code: 'ERR_UNSETTLED' } });
});

test('guards take turns: the inner one first, then the outermost, even when the inner one starts no work', () => {
  const guard = new URL('../dist/util/loop-guard.js', import.meta.url).href;
  const script = `
    import { armLoopGuard } from '${guard}';
    armLoopGuard(() => new Error('outermost'), { outermost: true }).emptied.catch((e) => { console.log(e.message); process.exitCode = 1; });
    armLoopGuard(() => new Error('inner')).emptied.catch((e) => console.log(e.message));
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  expect(run.stdout).toBe('inner\noutermost\n');
  expect(run.status).toBe(1);
});
