import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { expect, test } from 'vitest';
import { stopChild } from '../dist/util/child.js';

/** A Node child that prints "up" once its SIGTERM handler (if any) is in place, then idles. */
async function child(ignoreSigterm: boolean) {
  const code = `${ignoreSigterm ? "process.on('SIGTERM', () => {});" : ''} console.log('up'); setInterval(() => {}, 1000);`;
  const c = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(c.stdout!, 'data');
  return c;
}

test('a child that exits on SIGTERM is stopped by it', async () => {
  const c = await child(false);
  await stopChild(c, 10_000);
  expect(c.signalCode).toBe('SIGTERM');
});

test('a child that ignores SIGTERM is killed with SIGKILL after the grace period', async () => {
  const c = await child(true);
  await stopChild(c, 200);
  expect(c.signalCode).toBe('SIGKILL');
});

test('a child that already exited is left alone', async () => {
  const c = await child(false);
  c.kill('SIGTERM');
  await once(c, 'exit');
  await stopChild(c, 10);
  expect(c.signalCode).toBe('SIGTERM');
});
