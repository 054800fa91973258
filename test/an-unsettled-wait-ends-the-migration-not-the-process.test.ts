// Should the engine ever wait on something nothing can settle, the process runs out of work; the
// migration must then end with a report and a code, the guest running here, not the process
// exiting 0 in the middle of it.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/unsettled-wait.mjs', import.meta.url));

test('a ping that never settles: ERR_UNSETTLED, the guest resumed here', () => {
  const run = spawnSync(process.execPath, [FIXTURE], { encoding: 'utf8', timeout: 60_000 });
  expect(run.status, run.stderr).toBe(0);
  const out = JSON.parse(run.stdout) as { outcome: string; guestRunningOn: string; error?: { code: string }; paused: boolean };
  expect(out).toMatchObject({ outcome: 'failed', guestRunningOn: 'source', error: { code: 'ERR_UNSETTLED' }, paused: false });
});
